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
    __slots__ = ("blocked_until", "capacity", "fixed", "fixed_start", "fixed_used", "quota", "sent", "sent_total",
                 "span")

    def __init__(self, quota: Quota) -> None:
        self.set_quota(quota)
        self.sent: deque[tuple[float, float]] = deque()
        self.sent_total = 0.0  # the units in ``sent`` (kept as they come and go: no sum per request)
        self.fixed_start = -math.inf
        self.fixed_used = 0.0
        self.blocked_until = 0.0

    def set_quota(self, quota: Quota) -> None:
        self.quota = quota
        self.capacity, self.fixed, self.span = quota.capacity, quota.fixed, quota.window

    def used(self, now: float) -> float:
        if self.fixed:
            start = (now // self.span) * self.span
            if start != self.fixed_start:
                self.fixed_start, self.fixed_used = start, 0.0
            return self.fixed_used
        sent = self.sent
        if sent:
            expired = now - self.span
            while sent and sent[0][0] <= expired:
                self.sent_total -= sent.popleft()[1]
            if not sent:
                self.sent_total = 0.0
        return self.sent_total

    def room(self, units: float, now: float) -> bool:
        """``units`` fit now (the fast path of :meth:`RateLimiter.acquire`; :meth:`put` then counts them)."""
        if self.blocked_until > now:
            return False
        used = self.used(now)
        return used + units <= self.capacity or used == 0

    def put(self, units: float, now: float) -> None:
        """Count ``units`` right after :meth:`room` said yes at the same ``now`` (the window is up to date)."""
        if self.fixed:
            self.fixed_used += units
        else:
            self.sent.append((now, units))
            self.sent_total += units

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
            self.used(now)
            self.sent.append((now, units))
            self.sent_total += units

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
        self.feedback = limits.feedback
        self.blocked_until = 0.0
        self.banned_until = 0.0
        self._lock: asyncio.Lock | None = None
        self._queued = 0  # callers inside the slow path of acquire (waiting, or about to)
        self._plans: dict[str, tuple[tuple[_Window, float], ...]] = {}  # endpoint -> (window, units) it costs

    def _plan(self, endpoint: str) -> tuple[tuple[_Window, float], ...]:
        """What ``endpoint`` costs, as (window, units) pairs, worked out once per endpoint."""
        plan = self._plans.get(endpoint)
        if plan is None:
            plan = self._plans[endpoint] = tuple((self._windows[name], units)
                                                 for name, units in self.limits.cost(endpoint).items() if units > 0)
        return plan

    # ------------------------------------------------------------------------------------------ queries
    def delay(self, endpoint: str) -> tuple[str, float]:
        """(quota that holds it back, seconds) before a request to ``endpoint`` may go; ``("", 0.0)`` if now."""
        now = self.clock()
        worst = ("retry_after", self.blocked_until - now) if self.blocked_until > now else ("", 0.0)
        for window, units in self._plan(endpoint):
            wait = window.delay(units, now)
            if wait > worst[1]:
                worst = (window.quota.name, wait)
        return worst

    def used(self, quota: str) -> float:
        return self._windows[quota].used(self.clock())

    def set_limit(self, quota: str, limit: float) -> None:
        window = self._windows[quota]
        q = window.quota
        window.set_quota(Quota(q.name, limit, q.window, q.fixed, q.safety))

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
    def try_acquire(self, endpoint: str) -> bool:
        """Count ``endpoint``'s cost and return True if it fits every quota now and nobody is queued; otherwise
        take nothing and return False (then ``await acquire(endpoint)``). The no-wait path, without a coroutine."""
        if self._queued:
            return False
        now = self.clock()
        if self.blocked_until > now:
            return False
        plan = self._plans.get(endpoint) or self._plan(endpoint)
        for window, units in plan:
            if not window.room(units, now):
                return False
        for window, units in plan:
            window.put(units, now)
        return True

    async def acquire(self, endpoint: str) -> float:
        """Wait until ``endpoint``'s cost fits every quota, then count it; returns the seconds waited.

        Nobody waiting and room in every quota (the usual case) is settled at once, without the lock; otherwise
        callers queue on the lock, one waiter at a time, which keeps the order of requests fair."""
        if self.try_acquire(endpoint):
            return 0.0
        plan = self._plan(endpoint)
        if self._lock is None:
            self._lock = asyncio.Lock()
        waited = 0.0
        self._queued += 1
        try:
            async with self._lock:
                while True:
                    quota, wait = self.delay(endpoint)
                    if wait <= 0:
                        break
                    if self.on_wait is not None:
                        self.on_wait(quota, wait)
                    waited += wait
                    await self._sleep(wait)
                now = self.clock()
                for window, units in plan:
                    window.take(units, now)
        finally:
            self._queued -= 1
        return waited

    async def wait_free(self, endpoint: str, *, reserve: float = 0.0) -> float:
        """Wait, without queueing and without taking anything, until ``endpoint``'s cost fits every quota with
        ``reserve`` (a fraction of each quota's capacity) still left over and nobody is queued in
        :meth:`acquire`; returns the seconds waited. For background work (a REST fallback polling books) that
        should only use room other calls do not need: it then calls :meth:`acquire` (through the venue's
        client), which finds the room there."""
        waited = 0.0
        while True:
            now = self.clock()
            wait = max(0.0, self.blocked_until - now)
            for window, units in self._plan(endpoint):
                wait = max(wait, window.delay(units + reserve * window.quota.capacity, now))
            if self._queued and wait <= 0:
                wait = 0.05  # someone is waiting for room: let them have it first
            if wait <= 0:
                return waited
            waited += wait
            await self._sleep(wait)

    def observe(self, headers: Mapping[str, str] | None) -> None:
        """Align the quotas with what the venue's response headers report."""
        if not headers or not self.feedback:
            return
        now: float | None = None
        plain = type(headers) is dict  # plain dicts are case-sensitive, aiohttp's headers are not
        for fb in self.feedback:
            raw = headers.get(fb.header)
            if raw is None and plain:
                lowered = fb.header.lower()
                raw = next((v for k, v in headers.items() if k.lower() == lowered), None)
            if raw is None:
                continue
            read = fb.read(str(raw))
            if read is None:
                continue
            name, value = read
            window = self._windows.get(name)
            if window is not None:
                if now is None:
                    now = self.clock()
                window.observe(fb.meaning, value, now)
