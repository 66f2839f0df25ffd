"""The shared exchange contract kit, run in live mode (fake Binance), paper mode and mock mode; the live run also
has the kit inject every request fault and check the error kind the driver raises for it."""

from __future__ import annotations

import pytest
from arbframe_exchange_binance.exchange import BinanceExchange

from arbframe import SimulatedMarket
from arbframe.testing.exchange_kit import ExchangeContract
from arbframe.testing.fake_venue import EXPECTED_ERRORS

from .conftest import section_for


class TestBinanceLiveContract(ExchangeContract):
    """Signed private calls against the fake Binance (verifies signatures, timestamps, recvWindow)."""

    symbol = "BTC"
    depth = 5
    error_taxonomy = True

    @pytest.fixture
    async def exchange(self, fake, plugin_context):
        # a request timeout below the kit's 1 s ``timeout`` fault, and quick retries
        ex = BinanceExchange(section_for(fake, timeout_seconds=0.3), plugin_context(mode="live"))
        await ex.connect()
        assert ex.live_private
        yield ex
        await ex.close()

    @pytest.fixture
    def venue_faults(self, fake):
        return fake, set(EXPECTED_ERRORS)


class TestBinancePaperContract(ExchangeContract):
    """Market data from the fake Binance, balances and orders from the kernel's SimulatedAccount."""

    symbol = "ETH"
    depth = 10
    error_taxonomy = True

    @pytest.fixture
    async def exchange(self, fake, plugin_context):
        ex = BinanceExchange(section_for(fake, simulated_balances={"USDT": 100000}), plugin_context(mode="paper"))
        await ex.connect()
        yield ex
        await ex.close()
        private = [p for _, p in fake.requests if p in ("/api/v3/account", "/api/v3/order", "/api/v3/openOrders")]
        assert private == [], "paper mode must never send a private request"


class TestBinanceMockContract(ExchangeContract):
    """Mock mode: everything from the kernel's SimulatedExchange."""

    symbol = "BTC"
    depth = 5
    error_taxonomy = True

    @pytest.fixture
    async def exchange(self, plugin_context):
        ctx = plugin_context(mode="paper", mock=True)
        ctx.market = SimulatedMarket(["BTC", "ETH"], seed=11)
        ex = BinanceExchange({"simulated_balances": {"USDT": 100000}}, ctx)
        await ex.connect()
        yield ex
        await ex.close()
