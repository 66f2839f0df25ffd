"""Fixtures of the Binance plugin tests: a fake Binance on 127.0.0.1 and connectors pointed at it (public API
only: ``arbframe`` names, ``arbframe.testing`` and the plugin's own package; arbframe's pytest plugin brings
``plugin_context`` / ``plugin_harness`` and the asyncio mode)."""

from __future__ import annotations

from typing import Any

import pytest
from arbframe_exchange_binance.exchange import BinanceExchange
from arbframe_exchange_binance.testing.fake_server import FakeBinance

API_KEY = "test-binance-key"
API_SECRET = "test-binance-secret-do-not-log"


def section_for(fake: FakeBinance, **overrides: Any) -> dict[str, Any]:
    section: dict[str, Any] = {
        "api_key": API_KEY, "api_secret": API_SECRET, "base_url": fake.base_url, "ws_url": fake.ws_url,
        "rate_limit": 1000, "retry_backoff_seconds": 0.01, "retry_backoff_max_seconds": 0.05,
        "timeout_seconds": 2.0, "connect_timeout_seconds": 1.0, "order_lookup_interval_seconds": 0.01,
        "ws_reconnect_initial_seconds": 0.02, "ws_reconnect_max_seconds": 0.1, "ws_silence_timeout_seconds": 2.0,
        "symbols": ["BTC", "ETH"],
    }
    section.update(overrides)
    return section


def sent(fake: FakeBinance, path: str, method: str = "GET") -> int:
    """How many requests ``method path`` reached the fake (faults included)."""
    return sum(1 for m, p in fake.requests if p == path and m == method)


@pytest.fixture
async def fake():
    server = FakeBinance(api_key=API_KEY, api_secret=API_SECRET, push_interval=0.02)
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def make_binance(fake, plugin_context):
    built: list[BinanceExchange] = []

    async def factory(mode: str = "live", mock: bool = False, connect: bool = True, context=None,
                      **overrides: Any) -> BinanceExchange:
        ex = BinanceExchange(section_for(fake, **overrides), context or plugin_context(mode=mode, mock=mock))
        built.append(ex)
        if connect:
            await ex.connect()
        return ex

    yield factory
    for ex in built:
        await ex.close()
