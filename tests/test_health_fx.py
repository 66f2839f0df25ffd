"""FxService: refresh from the source, publish to the cache, read back through the cache (seed D2 §5)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from arbframe import Cache, FxRate, FxSource
from arbframe.trading.fx import FxService, FxUnavailable

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.now = T0
        self.mono = 1000.0

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.mono += seconds


class DictCache(Cache):
    """A shared dict stands in for a cache two processes both see; ``down`` makes every call fail."""

    name = "dict"

    def __init__(self, store: dict | None = None) -> None:
        self.store = {} if store is None else store
        self.down = False
        self.ttls: dict[str, int] = {}

    def set_fx_rate(self, fx, ttl_seconds):
        if self.down:
            return False
        self.store["fx"] = fx
        self.ttls["fx"] = ttl_seconds
        return True

    def get_fx_rate(self):
        return None if self.down else self.store.get("fx")

    def set_heartbeat(self, service, ts, ttl_seconds):
        return False

    def get_heartbeat(self, service):
        return None

    def set_spread_snapshot(self, symbol, snapshot, ttl_seconds=60):
        return False

    def get_spread_snapshot(self, symbol):
        return None

    def ping(self):
        return not self.down


class Source(FxSource):
    name = "fake"

    def __init__(self, clock: Clock, rate: str = "1350.0") -> None:
        self.clock = clock
        self.rate = Decimal(rate)
        self.calls = 0
        self.fail = False

    async def fetch(self) -> FxRate:
        self.calls += 1
        if self.fail:
            raise ConnectionError("source down")
        return FxRate(id=f"fx{self.calls}", ts=self.clock.now, rate=self.rate, source="fake")


def make(clock: Clock, cache: Cache, source: FxSource | None, **kw) -> FxService:
    kw.setdefault("ttl_seconds", 60)
    kw.setdefault("max_age_seconds", 120)
    return FxService(source, cache, clock=lambda: clock.now, monotonic=lambda: clock.mono, **kw)


async def test_refresh_publishes_and_second_reader_sees_same_rate():
    clock = Clock()
    shared: dict = {}
    writer = make(clock, DictCache(shared), Source(clock))
    rate = await writer.current()
    assert rate.rate == Decimal("1350.0")
    assert writer.last_source == "cache"
    reader = make(clock, DictCache(shared), None)
    seen = reader.read()
    assert seen == rate  # same id, ts, source
    assert (await reader.current()).id == rate.id


async def test_publishes_with_configured_ttl_on_every_refresh():
    clock = Clock()
    cache = DictCache()
    src = Source(clock)
    fx = make(clock, cache, src, ttl_seconds=40)
    assert fx.refresh_seconds == 20
    await fx.current()
    await fx.current()
    assert src.calls == 1  # not due yet
    clock.advance(20)
    await fx.current()
    assert src.calls == 2
    assert cache.ttls["fx"] == 40
    assert cache.store["fx"].id == "fx2"


async def test_reads_through_cache_not_local_copy():
    clock = Clock()
    cache = DictCache()
    fx = make(clock, cache, Source(clock))
    await fx.current()
    # another process publishes a newer rate: the reader must see it
    other = FxRate(id="other", ts=clock.now, rate=Decimal("1400.5"), source="exchange")
    cache.store["fx"] = other
    assert (await fx.current()) is other


async def test_cache_down_falls_back_to_local_rate():
    clock = Clock()
    cache = DictCache()
    cache.down = True
    fx = make(clock, cache, Source(clock))
    rate = await fx.current()
    assert rate.rate == Decimal("1350.0")
    assert fx.last_source == "local"
    assert fx.publish_failures == 1


async def test_source_failure_uses_last_rate_until_max_age():
    clock = Clock()
    cache = DictCache()
    src = Source(clock)
    fx = make(clock, cache, src, ttl_seconds=60, max_age_seconds=90)
    first = await fx.current()
    src.fail = True
    clock.advance(60)
    assert (await fx.current()).id == first.id
    clock.advance(31)
    with pytest.raises(FxUnavailable):
        await fx.current()
    assert fx.fetch_failures >= 2


async def test_reader_without_source_raises_when_nothing_published():
    clock = Clock()
    fx = make(clock, DictCache(), None)
    assert fx.read() is None
    with pytest.raises(FxUnavailable):
        await fx.current()


async def test_slow_source_is_bounded():
    import asyncio

    class Slow(FxSource):
        name = "slow"

        async def fetch(self):
            await asyncio.sleep(10)

    clock = Clock()
    fx = make(clock, DictCache(), Slow(), fetch_timeout_seconds=0.05)
    with pytest.raises(FxUnavailable):
        await fx.current()


async def test_rate_lost_by_the_cache_is_republished_on_the_next_tick():
    clock = Clock()
    cache = DictCache()
    src = Source(clock)
    fx = make(clock, cache, src)
    await fx.current()
    cache.down = True
    clock.advance(1)
    assert (await fx.current()).id == "fx1"  # served from the local copy, republish failed
    cache.down = False
    cache.store.clear()  # the server came back empty
    clock.advance(1)
    assert (await fx.current()).id == "fx1"
    assert cache.store["fx"].id == "fx1"  # visible to other processes again
    assert src.calls == 1  # without asking the source early
