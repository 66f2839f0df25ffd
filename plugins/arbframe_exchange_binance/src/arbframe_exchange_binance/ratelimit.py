"""Client-side rate limiting for Binance: requests per second, request weight per minute, orders per 10 s.

* ``rate_limit`` (the seed's setting, requests per second) is a token bucket over every REST call.
* Request weight: Binance counts weight per IP in fixed one-minute windows and reports the running total in
  ``X-MBX-USED-WEIGHT-1M``. The limiter adds each request's documented weight before sending and takes the
  header's figure when it is higher (other processes on the same IP use weight too); a request that would cross
  ``weight_limit * safety`` waits for the next minute.
* Orders: ``ORDERS`` per 10 s (``X-MBX-ORDER-COUNT-10S``), counted the same way.
* ``Retry-After`` from a 429 blocks everything until it passes; a 418 (IP ban) blocks too, and the driver
  raises instead of waiting.

Every wait is reported through ``on_wait(group, seconds)`` (metrics) with ``group`` one of ``requests``,
``weight``, ``orders``, ``retry_after``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class _Window:
    """A count in fixed windows of ``length`` seconds (aligned like Binance's, on the server clock)."""

    __slots__ = ("length", "limit", "used", "window")

    def __init__(self, length: float, limit: int) -> None:
        self.length = length
        self.limit = limit
        self.used = 0
        self.window = -1

    def _roll(self, now: float) -> None:
        w = int(now // self.length)
        if w != self.window:
            self.window = w
            self.used = 0

    def wait_for(self, amount: int, now: float) -> float:
        """Seconds to wait before ``amount`` more fits (0 if it fits now)."""
        self._roll(now)
        if self.limit <= 0 or self.used + amount <= self.limit:
            return 0.0
        return (self.window + 1) * self.length - now + 0.001

    def add(self, amount: int, now: float) -> None:
        self._roll(now)
        self.used += amount

    def observe(self, used: int, now: float) -> None:
        self._roll(now)
        if used > self.used:
            self.used = used


class RateLimiter:
    def __init__(
        self,
        *,
        requests_per_second: float = 10.0,
        weight_per_minute: int = 6000,
        orders_per_10s: int = 100,
        safety: float = 0.9,
        clock: Callable[[], float] = time.time,
        on_wait: Callable[[str, float], None] | None = None,
    ) -> None:
        self.rate = float(requests_per_second)
        self.safety = safety
        self._tokens = max(1.0, self.rate)
        self._capacity = max(1.0, self.rate)
        self._last = time.monotonic()
        self.clock = clock  # server-aligned wall clock (seconds)
        self.weight = _Window(60.0, int(weight_per_minute * safety))
        self.orders = _Window(10.0, int(orders_per_10s * safety))
        self.blocked_until = 0.0  # monotonic
        self.on_wait = on_wait
        self._lock = asyncio.Lock()

    def set_limits(self, *, weight_per_minute: int | None = None, orders_per_10s: int | None = None) -> None:
        if weight_per_minute:
            self.weight.limit = int(weight_per_minute * self.safety)
        if orders_per_10s:
            self.orders.limit = int(orders_per_10s * self.safety)

    @property
    def used_weight(self) -> int:
        self.weight._roll(self.clock())
        return self.weight.used

    def block(self, seconds: float) -> None:
        """Stop all requests for ``seconds`` (a 429's or 418's ``Retry-After``)."""
        self.blocked_until = max(self.blocked_until, time.monotonic() + max(0.0, seconds))

    def blocked_for(self) -> float:
        return max(0.0, self.blocked_until - time.monotonic())

    async def _sleep(self, group: str, seconds: float) -> None:
        if self.on_wait is not None:
            self.on_wait(group, seconds)
        await asyncio.sleep(seconds)

    async def acquire(self, weight: int = 1, *, order: bool = False) -> None:
        """Wait until a request of ``weight`` (and one order if ``order``) may be sent, then count it."""
        async with self._lock:
            blocked = self.blocked_for()
            if blocked > 0:
                await self._sleep("retry_after", blocked)
            if self.rate > 0:
                now = time.monotonic()
                self._tokens = min(self._capacity, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens < 1.0:
                    wait = (1.0 - self._tokens) / self.rate
                    await self._sleep("requests", wait)
                    self._tokens = 1.0
                    self._last = time.monotonic()
                self._tokens -= 1.0
            wait = self.weight.wait_for(weight, self.clock())
            if wait > 0:
                await self._sleep("weight", wait)
            if order:
                wait = self.orders.wait_for(1, self.clock())
                if wait > 0:
                    await self._sleep("orders", wait)
                self.orders.add(1, self.clock())
            self.weight.add(weight, self.clock())

    def observe_headers(self, headers: object) -> None:
        """Take ``X-MBX-USED-WEIGHT-1M`` / ``X-MBX-ORDER-COUNT-10S`` from a response."""
        get = getattr(headers, "get", None)
        if get is None:
            return
        used = get("X-MBX-USED-WEIGHT-1M")
        orders = get("X-MBX-ORDER-COUNT-10S")
        if used is None and orders is None and not isinstance(headers, dict):
            return
        if isinstance(headers, dict):  # plain dicts are case-sensitive (aiohttp's headers are not)
            used = used if used is not None else get("x-mbx-used-weight-1m")
            orders = orders if orders is not None else get("x-mbx-order-count-10s")
        now = self.clock()
        if used is not None:
            try:
                self.weight.observe(int(used), now)
            except ValueError:
                pass
        if orders is not None:
            try:
                self.orders.observe(int(orders), now)
            except ValueError:
                pass
