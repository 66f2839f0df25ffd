"""Fixtures of the forex plugin tests: the fake quotation server on 127.0.0.1 and sources pointed at it."""

from __future__ import annotations

from typing import Any

import pytest
from arbframe_fx_forex import ForexFxSource
from arbframe_fx_forex.testing.fake_server import FakeForex


@pytest.fixture
async def fake():
    server = FakeForex()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def make_source(fake):
    built: list[ForexFxSource] = []

    def factory(providers: list[dict[str, Any]] | None = None, **forex: Any) -> ForexFxSource:
        forex.setdefault("timeout_seconds", 1.0)
        source = ForexFxSource({"providers": providers or fake.provider_config(), **forex})
        built.append(source)
        return source

    yield factory
    for source in built:
        await source.close()
