"""The Bithumb example passes arbframe's exchange contract kit, over REST (a local fake) and in mock mode."""

from __future__ import annotations

import pytest
from arbframe_exchange_bithumb.client import BithumbError
from arbframe_exchange_bithumb.exchange import BithumbExchange

from arbframe import SimulatedMarket
from arbframe.testing.exchange_kit import ExchangeContract
from arbframe.testing.plugin_harness import PluginHarness


class TestBithumbRestContract(ExchangeContract):
    """Public order books from the fake REST API; orders on the simulated account (a far limit order rests)."""

    symbol = "BTC"
    error_types = (BithumbError, KeyError, ValueError)

    @pytest.fixture
    async def exchange(self, fake_bithumb):
        ex = BithumbExchange({"market_data": "rest", "base_url": fake_bithumb.url}, None)
        await ex.connect()
        yield ex
        await ex.close()


class TestBithumbSimulatedContract(ExchangeContract):
    """Mock mode: quotes and orders from the kernel's simulated market."""

    symbol = "ETH"
    error_types = (KeyError, ValueError)

    @pytest.fixture
    async def exchange(self):
        ex = BithumbExchange({"market_data": "simulated"}, None)
        await ex.connect()
        yield ex
        await ex.close()


def test_auto_mode_follows_mock_mode_and_quotes_from_the_runner_market() -> None:
    market = SimulatedMarket(("BTC",), seed=3)
    harness = PluginHarness(mock=True, market=market)
    ex = harness.build(BithumbExchange, {})
    assert ex.simulated
    assert ex._simulated_exchange().market is market
    assert market.quote_currency("bithumb") == "KRW"


def test_auto_mode_without_mock_reads_rest() -> None:
    harness = PluginHarness(mock=False)
    assert not harness.build(BithumbExchange, {}).simulated
