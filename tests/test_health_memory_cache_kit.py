"""The built-in memory cache passes the cache contract kit."""

from __future__ import annotations

from arbframe.builtins.memory_cache import MemoryCache
from arbframe.testing.cache_kit import CacheContract


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestMemoryCacheContract(CacheContract):
    def make_cache(self, prefix):
        return MemoryCache({"prefix": prefix}, None, clock=_Clock())

    def advance(self, cache, seconds):
        cache._clock.now += seconds
