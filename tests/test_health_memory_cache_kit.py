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
        self.clock = _Clock()
        return MemoryCache({"prefix": prefix}, None, clock=self.clock)

    def advance(self, cache, seconds):
        self.clock.now += seconds
