"""The Upbit connector passes the shared exchange contract kit: against the fake server in live mode (REST, with
every injected fault mapped to its error kind, and WebSocket), and in mock mode against the kernel's simulated
market."""

from __future__ import annotations

import pytest

from arbframe.testing.exchange_kit import ExchangeContract
from arbframe.testing.fake_venue import EXPECTED_ERRORS


class TestUpbitLiveContract(ExchangeContract):
    symbol = "BTC"
    depth = 15
    error_taxonomy = True

    @pytest.fixture
    async def exchange(self, make_upbit):
        # shorter than the faults' 1 s delay, so `timeout` and `accept_then_timeout` are timeouts
        return await make_upbit(mode="live", timeout_seconds=0.3, max_retries=1)

    @pytest.fixture
    def venue_faults(self, fake):
        return fake, set(EXPECTED_ERRORS)


class TestUpbitStreamingContract(ExchangeContract):
    """Same contract with ``use_websocket: true``: books come from the stream (REST when it is not fresh)."""

    symbol = "ETH"
    depth = 5
    error_taxonomy = True

    @pytest.fixture
    async def exchange(self, make_upbit):
        return await make_upbit(mode="live", use_websocket=True, symbols=["ETH"])


class TestUpbitMockContract(ExchangeContract):
    symbol = "BTC"
    depth = 10
    error_taxonomy = True

    @pytest.fixture
    async def exchange(self, make_upbit):
        return await make_upbit(mode="paper", mock=True)
