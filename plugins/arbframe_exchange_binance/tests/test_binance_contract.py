"""The shared exchange contract kit, run in live mode (fake Binance), paper mode and mock mode."""

from __future__ import annotations

import pytest
from arbframe_exchange_binance import BinanceError
from arbframe_exchange_binance.exchange import BinanceExchange
from arbframe_exchange_binance.testing.fake_server import FakeBinance

import arbframe
from arbframe.testing.exchange_kit import ExchangeContract

from .conftest import API_KEY, API_SECRET, make_context, section_for


class TestBinanceLiveContract(ExchangeContract):
    """Signed private calls against the fake Binance (verifies signatures, timestamps, recvWindow)."""

    symbol = "BTC"
    depth = 5
    error_types = (BinanceError,)

    @pytest.fixture
    async def exchange(self):
        fake = FakeBinance(api_key=API_KEY, api_secret=API_SECRET, push_interval=0.02)
        await fake.start()
        ex = BinanceExchange(section_for(fake), make_context("live"))
        await ex.connect()
        assert ex.live_private
        yield ex
        await ex.close()
        await fake.stop()


class TestBinancePaperContract(ExchangeContract):
    """Market data from the fake Binance, balances and orders from the kernel's SimulatedAccount."""

    symbol = "ETH"
    depth = 10
    error_types = (BinanceError,)

    @pytest.fixture
    async def exchange(self):
        fake = FakeBinance(api_key=API_KEY, api_secret=API_SECRET, push_interval=0.02)
        await fake.start()
        ex = BinanceExchange(section_for(fake, simulated_balances={"USDT": 100000}), make_context("paper"))
        await ex.connect()
        yield ex
        await ex.close()
        private = [r for r in fake.requests if r["path"] in ("/api/v3/account", "/api/v3/order",
                                                               "/api/v3/openOrders")]
        await fake.stop()
        assert private == [], "paper mode must never send a private request"


class TestBinanceMockContract(ExchangeContract):
    """Mock mode: everything from the kernel's SimulatedExchange."""

    symbol = "BTC"
    depth = 5
    error_types = (BinanceError,)

    @pytest.fixture
    async def exchange(self):
        ctx = make_context("paper", mock=True)
        ctx.market = arbframe.SimulatedMarket(["BTC", "ETH"], seed=11)
        ex = BinanceExchange({"simulated_balances": {"USDT": 100000}}, ctx)
        await ex.connect()
        yield ex
        await ex.close()
