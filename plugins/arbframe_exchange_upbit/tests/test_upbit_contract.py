"""The Upbit connector passes the shared exchange contract kit: against the fake server in live mode (REST and
WebSocket), and in mock mode against the kernel's simulated market."""

from __future__ import annotations

import pytest
from arbframe_exchange_upbit import UpbitError

from arbframe.testing.exchange_kit import ExchangeContract


class TestUpbitLiveContract(ExchangeContract):
    symbol = "BTC"
    depth = 15
    error_types = (UpbitError,)

    @pytest.fixture
    async def exchange(self, make_upbit):
        return await make_upbit(mode="live")


class TestUpbitStreamingContract(ExchangeContract):
    """Same contract with ``use_websocket: true``: books come from the stream (REST when it is not fresh)."""

    symbol = "ETH"
    depth = 5
    error_types = (UpbitError,)

    @pytest.fixture
    async def exchange(self, make_upbit):
        return await make_upbit(mode="live", use_websocket=True, symbols=["ETH"])


class TestUpbitMockContract(ExchangeContract):
    symbol = "BTC"
    depth = 10
    error_types = (UpbitError, ValueError, LookupError)

    @pytest.fixture
    async def exchange(self, make_upbit):
        return await make_upbit(mode="paper", mock=True)
