"""Cache key names, built in one place so every cache driver and every reader agrees (seed D2)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CacheKeys:
    prefix: str = "arb"

    def fx(self, pair: str = "usdkrw") -> str:
        return f"{self.prefix}:fx:{pair}"

    def heartbeat(self, service: str) -> str:
        return f"{self.prefix}:heartbeat:{service}"

    def spread(self, symbol: str) -> str:
        return f"{self.prefix}:spread:{symbol}"


#: TTL of spread snapshots (seed D2: fixed 60 s)
SPREAD_TTL_SECONDS = 60
