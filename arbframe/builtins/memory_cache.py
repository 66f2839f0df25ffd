"""In-process cache with the Redis cache's interface and TTL semantics (the default when Redis is disabled)."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from arbframe.core.keys import CacheKeys
from arbframe.core.models import FxRate
from arbframe.kernel.interfaces import Cache, PluginContext


class MemoryCache(Cache):
    """Keys and TTLs as in Redis, values kept as Python objects; visible to this process only."""

    name = "memory"

    def __init__(
        self,
        section: Mapping[str, Any] | None = None,
        context: PluginContext | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        redis = (context.config.get("redis", {}) if context is not None else {}) or {}
        self.keys = CacheKeys(str((section or {}).get("prefix") or redis.get("prefix") or "arb"))
        self._clock = clock
        self._data: dict[str, tuple[float | None, Any]] = {}
        self._lock = threading.Lock()

    def _set(self, key: str, value: Any, ttl_seconds: int | None) -> bool:
        expires = self._clock() + ttl_seconds if ttl_seconds else None
        with self._lock:
            self._data[key] = (expires, value)
        return True

    def _get(self, key: str) -> Any:
        with self._lock:
            found = self._data.get(key)
            if found is None:
                return None
            expires, value = found
            if expires is not None and self._clock() >= expires:
                del self._data[key]
                return None
            return value

    def ttl(self, key: str) -> float | None:
        """Seconds left on ``key`` (None: no such key or no expiry), like Redis ``TTL``."""
        with self._lock:
            found = self._data.get(key)
        if found is None or found[0] is None:
            return None
        return max(0.0, found[0] - self._clock())

    def set_fx_rate(self, fx: FxRate, ttl_seconds: int) -> bool:
        return self._set(self.keys.fx(), fx, ttl_seconds)

    def get_fx_rate(self) -> FxRate | None:
        return self._get(self.keys.fx())

    def set_heartbeat(self, service: str, ts: datetime, ttl_seconds: int) -> bool:
        return self._set(self.keys.heartbeat(service), ts, ttl_seconds)

    def get_heartbeat(self, service: str) -> datetime | None:
        return self._get(self.keys.heartbeat(service))

    def set_spread_snapshot(self, symbol: str, snapshot: Mapping[str, Any], ttl_seconds: int = 60) -> bool:
        return self._set(self.keys.spread(symbol), copy.deepcopy(dict(snapshot)), ttl_seconds)

    def get_spread_snapshot(self, symbol: str) -> dict[str, Any] | None:
        value = self._get(self.keys.spread(symbol))
        return copy.deepcopy(value) if value is not None else None

    def ping(self) -> bool:
        return True

    def describe(self) -> str:
        return "MemoryCache(in-process)"
