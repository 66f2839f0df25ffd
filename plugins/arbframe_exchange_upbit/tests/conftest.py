"""Fixtures of the Upbit plugin tests: a fake Upbit on 127.0.0.1 and connectors pointed at it (public API only:
``arbframe`` names, ``arbframe.testing`` and the plugin itself; arbframe's pytest plugin runs the async tests)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from arbframe_exchange_upbit import UpbitExchange
from arbframe_exchange_upbit.testing.fake_server import FakeUpbit
from prometheus_client import CollectorRegistry

from arbframe import PluginContext

ACCESS = "test-access-key"
SECRET = "test-secret-key"


def make_context(mode: str = "live", mock: bool = False, config: dict | None = None,
                 tmp: Path | None = None) -> PluginContext:
    return PluginContext(config=config or {}, pm=None, registry=CollectorRegistry(), data_dir=tmp or Path("."),
                         mode=mode, mock=mock)


def section_for(fake: FakeUpbit, **overrides: Any) -> dict[str, Any]:
    section = {
        "api_key": ACCESS, "api_secret": SECRET, "base_url": fake.base_url, "ws_url": fake.ws_url,
        "rate_limit": 1000, "group_limits": {g: 1000 for g in ("market", "ticker", "orderbook", "default", "order")},
        "retry_backoff_seconds": 0.01, "retry_backoff_max_seconds": 0.05, "timeout_seconds": 2.0,
        "ws_reconnect_initial_seconds": 0.02, "ws_reconnect_max_seconds": 0.1, "ws_silence_timeout_seconds": 2.0,
        "ws_ping_interval_seconds": 0.5, "order_lookup_delay_seconds": 0.05,
    }
    section.update(overrides)
    return section


@pytest.fixture
async def fake():
    async with FakeUpbit(ws_interval=0.01) as server:
        yield server


@pytest.fixture
async def make_upbit(fake):
    built: list[UpbitExchange] = []

    async def factory(mode: str = "live", mock: bool = False, connect: bool = True, context=None,
                      **overrides: Any) -> UpbitExchange:
        ex = UpbitExchange(section_for(fake, **overrides), context or make_context(mode, mock))
        built.append(ex)
        if connect:
            await ex.connect()
        return ex

    yield factory
    for ex in built:
        await ex.close()


@pytest.fixture
async def upbit(make_upbit):
    """A live-mode connector with keys, pointed at the fake server."""
    return await make_upbit()


@pytest.fixture
def context_factory():
    return make_context


@pytest.fixture
def sample():
    """``sample(ex, name, **labels)``: a metric sample of the connector's registry (0 when absent)."""

    def read(ex: UpbitExchange, name: str, **labels: str) -> float:
        value = ex.context.registry.get_sample_value(name, {"exchange": "upbit", **labels})
        return 0.0 if value is None else value

    return read


@pytest.fixture
def until():
    """``await until(predicate, timeout=5)``: poll the loop until ``predicate()`` holds."""

    async def wait_for(predicate, timeout: float = 5.0) -> None:
        async def poll() -> None:
            while not predicate():
                await asyncio.sleep(0.01)

        await asyncio.wait_for(poll(), timeout)

    return wait_for
