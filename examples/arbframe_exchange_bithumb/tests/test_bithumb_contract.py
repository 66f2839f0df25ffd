"""The Bithumb example passes arbframe's exchange contract kit, over REST (a local fake) and in mock mode."""

from __future__ import annotations

import pytest
from arbframe_exchange_bithumb.exchange import BithumbExchange

from arbframe import SimulatedMarket
from arbframe.testing.exchange_kit import ExchangeContract
from arbframe.testing.fake_venue import EXPECTED_ERRORS


class TestBithumbRestContract(ExchangeContract):
    """Public order books from the fake REST API; orders on the simulated account (a far limit order rests)."""

    symbol = "BTC"
    error_taxonomy = True

    @pytest.fixture
    async def exchange(self, fake_bithumb):
        ex = BithumbExchange({"market_data": "rest", "base_url": fake_bithumb.url, "timeout_seconds": 0.3,
                              "max_retries": 1}, None)
        await ex.connect()
        yield ex
        await ex.close()

    @pytest.fixture
    def venue_faults(self, fake_bithumb):
        return fake_bithumb, set(EXPECTED_ERRORS) - {"auth"}  # a public API has no authentication to fail


class TestBithumbSimulatedContract(ExchangeContract):
    """Mock mode: quotes and orders from the kernel's simulated market."""

    symbol = "ETH"
    error_taxonomy = True

    @pytest.fixture
    async def exchange(self):
        ex = BithumbExchange({"market_data": "simulated"}, None)
        await ex.connect()
        yield ex
        await ex.close()


def test_auto_mode_follows_mock_mode_and_quotes_from_the_runner_market(plugin_harness) -> None:
    market = SimulatedMarket(("BTC",), seed=3)
    ex = plugin_harness(mock=True, market=market).build(BithumbExchange, {})
    assert ex.simulated
    assert ex.routing.simulated_exchange().market is market
    assert market.quote_currency("bithumb") == "KRW"


def test_auto_mode_without_mock_reads_rest(plugin_harness) -> None:
    assert not plugin_harness(mock=False).build(BithumbExchange, {}).simulated
