"""The USD/KRW rate the engine prices with: fetched from an :class:`~arbframe.FxSource`, published to the
cache on every refresh, and read back *through the cache* (seed D2 §5, closing its "FX read not
implemented" gap).

Reading through the cache means every process sharing the cache (the runner, ``arbframe health``, a second
runner without a source of its own) sees the same rate, with the same id, timestamp and source. When the cache
cannot be read (Redis down, memory cache in another process), the service falls back to the rate it fetched
itself, so ticks continue; a rate older than ``max_age_seconds`` is never used.

Typical use in the engine, once per tick::

    fx = FxService(source, cache, ttl_seconds=config["redis"]["health_ttl_seconds"])
    rate = await fx.current()          # refreshes when due, publishes, reads back through the cache

A reader without a source (another process)::

    FxService(None, cache).read()      # FxRate | None, straight from the cache
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime

from arbframe.core.errors import ArbframeError
from arbframe.core.models import FxRate, utcnow
from arbframe.kernel.interfaces import Cache, FxSource

log = logging.getLogger("arbframe.fx")

#: how often a failing source is reported in the log (the failures themselves are all counted)
_WARN_INTERVAL_SECONDS = 30.0


class FxUnavailable(ArbframeError):
    """No usable USD/KRW rate: the source failed and nothing fresh enough is cached."""


class FxService:
    """Refresh from ``source``, publish to ``cache``, serve the rate read back through the cache.

    ``ttl_seconds``: TTL of the published key (seed: ``redis.health_ttl_seconds``).
    ``max_age_seconds``: a rate older than this (by its own timestamp) is not used.
    ``refresh_seconds``: how often the source is asked; defaults to half the TTL (and never more than half of
    it), so the key is republished before it expires.
    ``fetch_timeout_seconds``: bound on one ``source.fetch()``.
    ``source`` may be None: a read-only consumer of the rate another process publishes.
    """

    def __init__(
        self,
        source: FxSource | None,
        cache: Cache,
        ttl_seconds: int = 60,
        max_age_seconds: float = 300.0,
        *,
        refresh_seconds: float | None = None,
        fetch_timeout_seconds: float = 5.0,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self.source = source
        self.cache = cache
        self.ttl_seconds = int(ttl_seconds)
        self.max_age_seconds = float(max_age_seconds)
        half_ttl = self.ttl_seconds / 2
        self.refresh_seconds = half_ttl if refresh_seconds is None else min(float(refresh_seconds), half_ttl)
        self.fetch_timeout_seconds = fetch_timeout_seconds
        self._clock = clock
        self._monotonic = monotonic
        self._local: FxRate | None = None  # last rate fetched by this process
        self._last_refresh: float | None = None  # monotonic time of the last attempt
        self._last_warn = float("-inf")
        self.refreshes = 0
        self.publish_failures = 0
        self.fetch_failures = 0
        self.last_source: str = ""  # "cache" or "local": where the last current() answer came from

    # ------------------------------------------------------------------------------------------------ refresh
    def refresh_due(self) -> bool:
        if self.source is None:
            return False
        if self._last_refresh is None:
            return True
        return self._monotonic() - self._last_refresh >= self.refresh_seconds

    async def refresh(self) -> FxRate:
        """Fetch from the source and publish to the cache; raises what the source raised (or TimeoutError)."""
        if self.source is None:
            raise FxUnavailable("no FX source configured: this FxService only reads the cache")
        self._last_refresh = self._monotonic()
        try:
            fx = await asyncio.wait_for(self.source.fetch(), self.fetch_timeout_seconds)
        except Exception:
            self.fetch_failures += 1
            raise
        self._local = fx
        self.refreshes += 1
        self.publish(fx)
        return fx

    def publish(self, fx: FxRate) -> bool:
        """Write ``fx`` to the cache with the TTL; never raises (a failed write is counted by the cache)."""
        try:
            ok = bool(self.cache.set_fx_rate(fx, self.ttl_seconds))
        except Exception as exc:  # a misbehaving third-party cache must not stop the tick
            log.debug("cache.set_fx_rate raised: %r", exc)
            ok = False
        if not ok:
            self.publish_failures += 1
        return ok

    # --------------------------------------------------------------------------------------------------- read
    def read(self) -> FxRate | None:
        """The rate currently in the cache (any process may have published it), or None."""
        try:
            return self.cache.get_fx_rate()
        except Exception as exc:
            log.debug("cache.get_fx_rate raised: %r", exc)
            return None

    def _usable(self, fx: FxRate | None) -> bool:
        return fx is not None and fx.age_seconds(self._clock()) <= self.max_age_seconds

    async def current(self) -> FxRate:
        """The rate to price this tick with: refresh when due, then read back through the cache.

        Falls back to this process's own last fetch when the cache has nothing usable (cache down, or a
        cache that is not shared). Raises :class:`FxUnavailable` when no rate younger than
        ``max_age_seconds`` exists.
        """
        attempted = False
        if self.refresh_due():
            attempted = True
            try:
                await self.refresh()
            except Exception as exc:
                self._warn(f"FX source {self._source_name()} failed: {exc!r}; using the last known rate")
        cached = self.read()
        if self._usable(cached):
            self.last_source = "cache"
            return cached  # type: ignore[return-value]
        if self._usable(self._local):
            if cached is None and not attempted:
                # the cache lost the key (Redis restarted empty, or it was down at the last refresh):
                # republish so other processes see the rate again without waiting for the next refresh
                self.publish(self._local)  # type: ignore[arg-type]
            self.last_source = "local"
            return self._local  # type: ignore[return-value]
        if self.source is not None and not attempted:
            # nothing usable although a refresh is not due yet: ask the source right away
            try:
                fx = await self.refresh()
            except Exception as exc:
                name = self._source_name()
                raise FxUnavailable(f"no usable USD/KRW rate: {name} failed ({exc!r})") from exc
            cached = self.read()
            if self._usable(cached):
                self.last_source = "cache"
                return cached  # type: ignore[return-value]
            self.last_source = "local"
            return fx
        raise FxUnavailable(
            f"no USD/KRW rate younger than {self.max_age_seconds:g}s "
            f"(source: {self._source_name()}, cache: {self.cache.describe()})"
        )

    # --------------------------------------------------------------------------------------------------- misc
    def _source_name(self) -> str:
        if self.source is None:
            return "none"
        return getattr(self.source, "name", "") or type(self.source).__name__

    def _warn(self, message: str) -> None:
        now = self._monotonic()
        if now - self._last_warn >= _WARN_INTERVAL_SECONDS:
            self._last_warn = now
            log.warning(message)
        else:
            log.debug(message)

    async def close(self) -> None:
        if self.source is not None:
            await self.source.close()
