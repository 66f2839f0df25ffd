"""Contract tests every :class:`arbframe.Cache` driver must pass (the memory cache and Redis pass them).

Use it from a plugin's tests in a couple of lines::

    from arbframe.testing.cache_kit import CacheContract

    class TestMyCache(CacheContract):
        def make_cache(self, prefix):
            return MyCache({"prefix": prefix}, None)

Optional hooks a harness may override:

* ``advance(cache, seconds)``: let ``seconds`` pass for the cache's TTL clock (default: really sleep, so the
  expiry test takes about a second; a cache with an injectable clock advances it instead).
* ``make_unreachable_cache(prefix)``: a cache whose backend is down; the degradation tests then check that
  nothing raises, writes return False, reads return None and nothing waits longer than ``max_wait_seconds``.

The kit reads remaining TTLs through ``cache.ttl(key)`` (seconds or None, like Redis ``TTL``) when the driver
offers it, with keys from :class:`arbframe.CacheKeys`, which also checks the driver names its keys correctly.

Values: a spread snapshot may come back with its values JSON-normalised (``Decimal`` and ``datetime`` as
strings, enums as their values) and with extra ``ts``/``source`` entries; everything else round-trips exactly
(FX rates as equal :class:`arbframe.FxRate` values, heartbeats as equal aware datetimes).
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from arbframe.core.keys import SPREAD_TTL_SECONDS, CacheKeys
from arbframe.core.models import FxRate
from arbframe.kernel.interfaces import Cache

__all__ = ["CacheContract", "normalise"]

T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)


def normalise(value: Any) -> Any:
    """The JSON form a shared cache stores a snapshot value in (Decimal/datetime as strings, enums by value)."""
    if isinstance(value, enum.Enum):
        return normalise(value.value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalise(v) for v in value]
    return value


def _fx(rate: str = "1350.0", *, id: str = "fx-1", ts: datetime = T0, source: str = "static", **kw: Any) -> FxRate:
    return FxRate(id=id, ts=ts, rate=Decimal(rate), source=source, **kw)


class CacheContract:
    """Subclass with ``make_cache(prefix)``; every ``test_*`` method here then runs against your cache."""

    #: key prefix the kit asks for (a non-default one, so a driver ignoring it is caught)
    prefix = "kit"
    #: bound on any single call against an unreachable backend
    max_wait_seconds = 3.0

    # ------------------------------------------------------------------------------------------ harness
    def make_cache(self, prefix: str) -> Cache:
        raise NotImplementedError("return a new, empty cache using key prefix `prefix`")

    def make_unreachable_cache(self, prefix: str) -> Cache | None:
        return None

    def advance(self, cache: Cache, seconds: float) -> None:
        time.sleep(seconds)

    @pytest.fixture
    def cache(self) -> Iterator[Cache]:
        c = self.make_cache(self.prefix)
        try:
            yield c
        finally:
            c.close()

    @property
    def keys(self) -> CacheKeys:
        return CacheKeys(self.prefix)

    def ttl_of(self, cache: Cache, key: str) -> float | None:
        ttl = getattr(cache, "ttl", None)
        if ttl is None:
            pytest.skip(f"{type(cache).__name__} has no ttl(key); TTLs not checked")
        return ttl(key)

    def snapshot_of(self, cache: Cache, symbol: str) -> dict[str, Any]:
        """The cached spread snapshot of ``symbol``, failing the test when there is none."""
        got = cache.get_spread_snapshot(symbol)
        assert got is not None, f"no spread snapshot cached for {symbol}"
        return got

    def remaining_ttl(self, cache: Cache, key: str) -> float:
        """Seconds ``key`` has left, failing the test when it has no expiry."""
        ttl = self.ttl_of(cache, key)
        assert ttl is not None, f"{key} has no expiry"
        return ttl

    # -------------------------------------------------------------------------------------------- basics
    def test_is_a_cache(self, cache: Cache) -> None:
        assert isinstance(cache, Cache)
        assert cache.name
        assert cache.available is True
        assert cache.ping() is True
        assert isinstance(cache.describe(), str) and cache.describe()

    def test_empty_reads_are_none(self, cache: Cache) -> None:
        assert cache.get_fx_rate() is None
        assert cache.get_heartbeat("nobody") is None
        assert cache.get_spread_snapshot("NOPE") is None

    def test_close_twice_is_harmless(self) -> None:
        c = self.make_cache(self.prefix)
        c.close()
        c.close()

    # ------------------------------------------------------------------------------------------------ fx
    def test_fx_round_trip(self, cache: Cache) -> None:
        fx = _fx("1350.0", simulated=True)
        assert cache.set_fx_rate(fx, 60) is True
        got = cache.get_fx_rate()
        assert got == fx
        assert isinstance(got.rate, Decimal) and str(got.rate) == "1350.0"
        assert got.ts.utcoffset() == timedelta(0)

    def test_fx_exact_decimal_and_latest_wins(self, cache: Cache) -> None:
        cache.set_fx_rate(_fx("1350.0"), 60)
        later = _fx("1387.123456789", id="fx-2", ts=T0 + timedelta(seconds=5), source="exchange")
        assert cache.set_fx_rate(later, 60) is True
        assert cache.get_fx_rate() == later

    def test_fx_ttl(self, cache: Cache) -> None:
        cache.set_fx_rate(_fx(), 45)
        ttl = self.ttl_of(cache, self.keys.fx())
        assert ttl is not None and 40 <= ttl <= 45

    # ----------------------------------------------------------------------------------------- heartbeat
    def test_heartbeat_round_trip_per_service(self, cache: Cache) -> None:
        assert cache.set_heartbeat("bot_service", T0, 60) is True
        assert cache.set_heartbeat("paper_runner", T0 + timedelta(seconds=1), 60) is True
        got = cache.get_heartbeat("bot_service")
        assert got == T0 and got.utcoffset() == timedelta(0)
        assert cache.get_heartbeat("paper_runner") == T0 + timedelta(seconds=1)
        assert cache.get_heartbeat("other") is None

    def test_heartbeat_non_utc_input_is_same_instant(self, cache: Cache) -> None:
        kst = T0.astimezone(timezone(timedelta(hours=9)))
        cache.set_heartbeat("bot_service", kst, 60)
        got = cache.get_heartbeat("bot_service")
        assert got == T0 and got.tzinfo is not None

    def test_heartbeat_ttl(self, cache: Cache) -> None:
        cache.set_heartbeat("bot_service", T0, 30)
        ttl = self.ttl_of(cache, self.keys.heartbeat("bot_service"))
        assert ttl is not None and 25 <= ttl <= 30

    # -------------------------------------------------------------------------------------------- spread
    def test_spread_round_trip(self, cache: Cache) -> None:
        snapshot = {
            "symbol": "BTC",
            "premium": Decimal("0.0312"),
            "net_premium": 0.0262,
            "qty": 1,
            "simulated": False,
            "fx_source": None,
            "levels": [1, 2, 3],
            "nested": {"direction": "kimchi"},
        }
        assert cache.set_spread_snapshot("BTC", snapshot) is True
        got = cache.get_spread_snapshot("BTC")
        assert isinstance(got, dict)
        for key, value in snapshot.items():
            assert normalise(got[key]) == normalise(value), key
        assert cache.get_spread_snapshot("ETH") is None

    def test_spread_snapshot_is_a_copy(self, cache: Cache) -> None:
        levels = [1]
        cache.set_spread_snapshot("ETH", {"symbol": "ETH", "levels": levels})
        levels.append(2)
        got = self.snapshot_of(cache, "ETH")
        assert got["levels"] == [1]
        got["levels"].append(3)
        assert self.snapshot_of(cache, "ETH")["levels"] == [1]

    def test_spread_default_ttl_is_60s(self, cache: Cache) -> None:
        cache.set_spread_snapshot("BTC", {"symbol": "BTC"})
        ttl = self.ttl_of(cache, self.keys.spread("BTC"))
        assert ttl is not None and SPREAD_TTL_SECONDS - 5 <= ttl <= SPREAD_TTL_SECONDS

    # ----------------------------------------------------------------------------------------- expiry
    def test_values_expire_after_ttl(self, cache: Cache) -> None:
        cache.set_fx_rate(_fx(), 1)
        cache.set_heartbeat("bot_service", T0, 1)
        cache.set_spread_snapshot("BTC", {"symbol": "BTC"}, 1)
        cache.set_heartbeat("long", T0, 60)
        self.advance(cache, 1.1)
        assert cache.get_fx_rate() is None
        assert cache.get_heartbeat("bot_service") is None
        assert cache.get_spread_snapshot("BTC") is None
        assert cache.get_heartbeat("long") == T0

    # ------------------------------------------------------------------------------------------- tick
    def test_write_tick_writes_everything_with_its_ttl(self, cache: Cache) -> None:
        fx = _fx("1351.5")
        ok = cache.write_tick(
            fx=(fx, 50),
            heartbeat=("bot_service", T0, 40),
            spreads={"BTC": {"symbol": "BTC", "premium": "0.03"}, "ETH": {"symbol": "ETH", "premium": "0.01"}},
            spread_ttl_seconds=30,
        )
        assert ok is True
        assert cache.get_fx_rate() == fx
        assert cache.get_heartbeat("bot_service") == T0
        assert self.snapshot_of(cache, "BTC")["premium"] == "0.03"
        assert self.snapshot_of(cache, "ETH")["symbol"] == "ETH"
        if getattr(cache, "ttl", None) is not None:
            assert 45 <= self.remaining_ttl(cache, self.keys.fx()) <= 50
            assert 35 <= self.remaining_ttl(cache, self.keys.heartbeat("bot_service")) <= 40
            assert 25 <= self.remaining_ttl(cache, self.keys.spread("ETH")) <= 30

    def test_write_tick_with_nothing_is_true(self, cache: Cache) -> None:
        assert cache.write_tick() is True

    def test_concurrent_writers(self, cache: Cache) -> None:
        errors: list[BaseException] = []

        def work(n: int) -> None:
            try:
                for i in range(25):
                    assert cache.set_heartbeat(f"svc{n}", T0 + timedelta(seconds=i), 60)
                    cache.get_fx_rate()
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert not errors
        for n in range(4):
            assert cache.get_heartbeat(f"svc{n}") == T0 + timedelta(seconds=24)

    # ----------------------------------------------------------------------------------- degradation
    @pytest.fixture
    def down(self) -> Iterator[Cache]:
        c = self.make_unreachable_cache(self.prefix)
        if c is None:
            pytest.skip("this cache has no unreachable backend to test")
        try:
            yield c
        finally:
            c.close()

    def test_unreachable_never_raises_or_hangs(self, down: Cache) -> None:
        calls = [
            lambda: down.set_fx_rate(_fx(), 60),
            lambda: down.set_heartbeat("bot_service", T0, 60),
            lambda: down.set_spread_snapshot("BTC", {"symbol": "BTC"}),
            lambda: down.write_tick(fx=(_fx(), 60), heartbeat=("bot_service", T0, 60), spreads={"BTC": {}}),
        ]
        for call in calls:
            started = time.monotonic()
            assert call() is False
            assert time.monotonic() - started < self.max_wait_seconds
        for read in (down.get_fx_rate, lambda: down.get_heartbeat("bot_service"),
                     lambda: down.get_spread_snapshot("BTC")):
            started = time.monotonic()
            assert read() is None
            assert time.monotonic() - started < self.max_wait_seconds
        started = time.monotonic()
        assert down.ping() is False
        assert time.monotonic() - started < self.max_wait_seconds
