"""Fixtures of the Binance plugin tests: a fake Binance on 127.0.0.1 and connectors pointed at it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from arbframe_exchange_binance.exchange import BinanceExchange
from arbframe_exchange_binance.testing.fake_server import FakeBinance
from prometheus_client import CollectorRegistry

from arbframe import PluginContext

API_KEY = "test-binance-key"
API_SECRET = "test-binance-secret-do-not-log"


def make_context(mode: str = "live", mock: bool = False, config: dict | None = None) -> PluginContext:
    return PluginContext(config=config or {}, pm=None, registry=CollectorRegistry(), data_dir=Path("."),
                         mode=mode, mock=mock)


def section_for(fake: FakeBinance, **overrides: Any) -> dict[str, Any]:
    section: dict[str, Any] = {
        "api_key": API_KEY, "api_secret": API_SECRET, "base_url": fake.base_url, "ws_url": fake.ws_url,
        "rate_limit": 1000, "retry_backoff_seconds": 0.01, "retry_backoff_max_seconds": 0.05,
        "timeout_seconds": 2.0, "connect_timeout_seconds": 1.0, "order_lookup_interval_seconds": 0.01,
        "ws_reconnect_initial_seconds": 0.02, "ws_reconnect_max_seconds": 0.1, "ws_silence_timeout_seconds": 2.0,
        "rest_poll_interval_seconds": 0.05, "symbols": ["BTC", "ETH"],
    }
    section.update(overrides)
    return section


@pytest.fixture
async def fake():
    server = FakeBinance(api_key=API_KEY, api_secret=API_SECRET, push_interval=0.02)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def make_binance(fake):
    built: list[BinanceExchange] = []

    async def factory(mode: str = "live", mock: bool = False, connect: bool = True, context=None,
                      **overrides: Any) -> BinanceExchange:
        ctx = context or make_context(mode, mock)
        ex = BinanceExchange(section_for(fake, **overrides), ctx)
        built.append(ex)
        if connect:
            await ex.connect()
        return ex

    yield factory
    for ex in built:
        await ex.close()
