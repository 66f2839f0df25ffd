"""Client-side rate limits declared as data, and the limiter that enforces them.

A venue states its limits once::

    LIMITS = RateLimits(
        quotas=(Quota("requests", 10, 1.0), Quota("weight", 6000, 60.0, fixed=True)),
        costs={"depth": {"weight": 5}, "order": {"weight": 1, "orders": 1}},
        default_cost={"requests": 1},
        feedback=(HeaderFeedback("X-MBX-USED-WEIGHT-1M", "weight"),),
    )

``costs[endpoint]`` adds to ``default_cost`` (an endpoint may cost several quotas at once). A quota is a sliding
window (``fixed=False``: at most ``limit`` units in any ``window`` seconds) or a fixed window aligned to the clock
(``fixed=True``, like Binance's minute). :class:`HeaderFeedback` reads a response header: ``used`` units in the
current window (the limiter takes the larger of its count and the venue's, since other clients share the quota),
or ``remaining`` units (``0`` blocks the quota until its window has passed). ``Retry-After`` (:meth:`block`) stops
every quota; a ban (:meth:`ban`) makes :meth:`check_ban` raise :class:`arbframe.Banned` without sending.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from arbframe.core.errors import Banned

__all__ = ["HeaderFeedback", "Quota", "RateLimiter", "RateLimits"]


@dataclass(frozen=True)
class Quota:
    """At most ``limit`` units per ``window`` seconds; ``safety`` (0-1] keeps a margin below the venue's limit."""

    name: str
    limit: float
    window: float = 1.0
    fixed: bool = False
    safety: float = 1.0

    @property
    def capacity(self) -> float:
        return self.limit * self.safety


@dataclass(frozen=True)
class HeaderFeedback:
    """A response header that reports a quota: ``meaning`` is ``used`` or ``remaining``. ``parse`` turns the raw
    value into ``(quota name or None for ``quota``, number)`` (default: the value is the number)."""

    header: str
    quota: str = ""
    meaning: str = "used"
    parse: Callable[[str], tuple[str | None, float] | None] | None = None

    def read(self, value: str) -> tuple[str, float] | None:
        if self.parse is not None:
            parsed = self.parse(value)
            if parsed is None:
                return None
            name, number = parsed
            return (name or self.quota), float(number)
        try:
            return self.quota, float(value)
        except ValueError:
            return None


@dataclass(frozen=True)
class RateLimits:
    """A venue's limits as data: quotas, what each endpoint costs, and the headers that report usage."""

    quotas: tuple[Quota, ...] = ()
    costs: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    default_cost: Mapping[str, float] = field(default_factory=dict)
    feedback: tuple[HeaderFeedback, ...] = ()

    def __post_init__(self) -> None:
        names = {q.name for q in self.quotas}
        for endpoint, cost in {"(default)": self.default_cost, **self.costs}.items():
            unknown = set(cost) - names
            if unknown:
                raise ValueError(f"rate limits: {endpoint} costs unknown quota(s) {sorted(unknown)}")

    def cost(self, endpoint: str) -> dict[str, float]:
        return {**self.default_cost, **self.costs.get(endpoint, {})}

    def with_quota(self, name: str, limit: float) -> RateLimits:
        """The same limits with one quota's ``limit`` replaced (config overrides, exchangeInfo)."""
        quotas = tuple(Quota(q.name, limit, q.window, q.fixed, q.safety) if q.name == name else q
                       for q in self.quotas)
        return RateLimits(quotas, self.costs, self.default_cost, self.feedback)


class _Window:
    __slots__ = ("blocked_until", "fixed_start", "fixed_used", "quota", "sent", "sent_units")

    def __init__(self, quota: Quota) -> None:
        self.quota = quota
        self.sent: deque[tuple[float, float]] = deque()
        self.sent_units = 0.0  # the sum of ``sent``'s units, kept as they come and go (not summed per request)
        self.fixed_start = -math.inf
        self.fixed_used = 0.0
        self.blocked_until = 0.0

    def used(self, now: float) -> float:
        q = self.quota
        if q.fixed:
            start = (now // q.window) * q.window
            if start != self.fixed_start:
                self.fixed_start, self.fixed_used = start, 0.0
            return self.fixed_used
        sent = self.sent
        expired = now - q.window
        while sent and sent[0][0] <= expired:
            self.sent_units -= sent.popleft()[1]
        if not sent:
            self.sent_units = 0.0  # no rounding drift survives an empty window
        return self.sent_units

    def delay(self, units: float, now: float) -> float:
        wait = max(0.0, self.blocked_until - now)
        used = self.used(now)
        q = self.quota
        if units <= 0 or used + units <= q.capacity or used == 0:
            return wait
        if q.fixed:
            return max(wait, self.fixed_start + q.window - now + 1e-3)
        need = used + units - q.capacity  # drop the oldest entries until this many units have expired
        for ts, amount in self.sent:
            need -= amount
            if need <= 0:
                return max(wait, ts + q.window - now)
        return max(wait, q.window)

    def take(self, units: float, now: float) -> None:
        if units <= 0:
            return
        if self.quota.fixed:
            self.used(now)
            self.fixed_used += units
        else:
            self.sent.append((now, units))
            self.sent_units += units

    def observe(self, meaning: str, value: float, now: float) -> None:
        used = self.used(now)
        if meaning == "remaining":
            if value <= 0:
                self.blocked_until = max(self.blocked_until, now + self.quota.window)
                return
            value = self.quota.limit - value
        if value > used:
            self.take(value - used, now)


class RateLimiter:
    """``await acquire(endpoint)`` before each request; ``observe(headers)`` after each response.

    ``clock`` (monotonic seconds; a venue with clock-aligned windows passes its server clock) and ``sleep`` are
    injectable so tests run without waiting. ``on_wait(quota, seconds)`` reports each wait (metrics).
    """

    def __init__(self, limits: RateLimits, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 on_wait: Callable[[str, float], None] | None = None) -> None:
        self.limits = limits
        self.clock = clock
        self._sleep = sleep
        self.on_wait = on_wait
        self._windows = {q.name: _Window(q) for q in limits.quotas}
        self.blocked_until = 0.0
        self.banned_until = 0.0
        self._lock: asyncio.Lock | None = None

    # ------------------------------------------------------------------------------------------ queries
    def delay(self, endpoint: str) -> tuple[str, float]:
        """(quota that holds it back, seconds) before a request to ``endpoint`` may go; ``("", 0.0)`` if now."""
        now = self.clock()
        worst = ("retry_after", self.blocked_until - now) if self.blocked_until > now else ("", 0.0)
        for name, units in self.limits.cost(endpoint).items():
            wait = self._windows[name].delay(units, now)
            if wait > worst[1]:
                worst = (name, wait)
        return worst

    def used(self, quota: str) -> float:
        return self._windows[quota].used(self.clock())

    def set_limit(self, quota: str, limit: float) -> None:
        window = self._windows[quota]
        q = window.quota
        window.quota = Quota(q.name, limit, q.window, q.fixed, q.safety)

    # ----------------------------------------------------------------------------------------- blocking
    def block(self, seconds: float) -> None:
        """Hold every request for ``seconds`` (a 429's ``Retry-After``)."""
        self.blocked_until = max(self.blocked_until, self.clock() + max(0.0, seconds))

    def ban(self, seconds: float) -> None:
        """The venue banned us for ``seconds`` (HTTP 418): :meth:`check_ban` raises until then."""
        self.banned_until = max(self.banned_until, self.clock() + max(0.0, seconds))
        self.block(seconds)

    def banned_for(self) -> float:
        return max(0.0, self.banned_until - self.clock())

    def check_ban(self, exchange: str = "", endpoint: str = "") -> None:
        """Raise :class:`arbframe.Banned` (nothing is sent) while a ban lasts."""
        left = self.banned_for()
        if left > 0:
            raise Banned(f"{exchange or 'venue'}: banned for another {left:.0f}s; {endpoint or 'request'} not sent",
                         exchange=exchange, endpoint=endpoint, status=418, retry_after=left)

    # ---------------------------------------------------------------------------------------- acquiring
    async def acquire(self, endpoint: str) -> float:
        """Wait until ``endpoint``'s cost fits every quota, then count it; returns the seconds waited."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        waited = 0.0
        async with self._lock:  # one waiter at a time keeps the order of requests fair
            while True:
                quota, wait = self.delay(endpoint)
                if wait <= 0:
                    break
                if self.on_wait is not None:
                    self.on_wait(quota, wait)
                waited += wait
                await self._sleep(wait)
            now = self.clock()
            for name, units in self.limits.cost(endpoint).items():
                self._windows[name].take(units, now)
        return waited

    def observe(self, headers: Mapping[str, str] | None) -> None:
        """Align the quotas with what the venue's response headers report."""
        if not headers or not self.limits.feedback:
            return
        now = self.clock()
        for fb in self.limits.feedback:
            raw = headers.get(fb.header)
            if raw is None and isinstance(headers, dict):  # plain dicts are case-sensitive, aiohttp's are not
                raw = next((v for k, v in headers.items() if k.lower() == fb.header.lower()), None)
            if raw is None:
                continue
            read = fb.read(str(raw))
            if read is None:
                continue
            name, value = read
            window = self._windows.get(name)
            if window is not None:
                window.observe(fb.meaning, value, now)
