"""Client-side rate limiting per Upbit request group, kept in step with the ``Remaining-Req`` header.

Upbit counts requests per group and per second (``market``, ``ticker``, ``orderbook``... per IP; ``default``,
``order``... per account) and reports what is left in every response: ``Remaining-Req: group=default; min=1800;
sec=29`` (``min`` is deprecated and ignored). The limiter keeps a one-second sliding window per group, capped
by the group's documented limit and by the seed's overall ``rate_limit``; when the server says fewer requests
are left than we counted (other clients share the IP or account), the window is filled up to match, and
``sec=0`` blocks the group until the window has passed.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping

__all__ = ["DEFAULT_GROUP_LIMITS", "RateLimiter", "parse_remaining_req"]

#: requests per second per group (Upbit's published limits; config ``upbit.group_limits`` overrides)
DEFAULT_GROUP_LIMITS: dict[str, float] = {
    "market": 10,
    "candle": 10,
    "trade": 10,
    "ticker": 10,
    "orderbook": 10,
    "default": 30,
    "order": 8,
    "order-test": 8,
    "order-cancel-all": 0.5,
}

_WINDOW = 1.0


def parse_remaining_req(value: str | None) -> tuple[str, int] | None:
    """``group=default; min=1800; sec=29`` -> ``("default", 29)``; None when absent or unreadable."""
    if not value:
        return None
    group = None
    sec = None
    for part in value.split(";"):
        key, _, val = part.strip().partition("=")
        if key == "group":
            group = val.strip()
        elif key == "sec":
            try:
                sec = int(val.strip())
            except ValueError:
                return None
    if group is None or sec is None:
        return None
    return group, sec


class _Window:
    __slots__ = ("blocked_until", "limit", "sent")

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.sent: deque[float] = deque()
        self.blocked_until = 0.0


class RateLimiter:
    """``await acquire(group)`` before each request; ``observe(group, header)`` after each response."""

    def __init__(self, rate_limit: float = 10.0, group_limits: Mapping[str, float] | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 on_wait: Callable[[str, float], None] | None = None) -> None:
        self.rate_limit = float(rate_limit)
        self._limits = dict(DEFAULT_GROUP_LIMITS)
        self._limits.update(group_limits or {})
        self._clock = clock
        self._on_wait = on_wait
        self._groups: dict[str, _Window] = {}
        self._global = _Window(self.rate_limit)

    def _window(self, group: str) -> _Window:
        win = self._groups.get(group)
        if win is None:
            limit = min(float(self._limits.get(group, self._limits["default"])), self.rate_limit)
            win = self._groups[group] = _Window(limit)
        return win

    @staticmethod
    def _delay(win: _Window, now: float) -> float:
        sent = win.sent
        while sent and sent[0] <= now - _WINDOW:
            sent.popleft()
        delay = max(0.0, win.blocked_until - now)
        if win.limit < 1:  # slower than one per second: space requests evenly
            if sent:
                delay = max(delay, sent[-1] + 1.0 / win.limit - now)
        elif len(sent) >= win.limit:
            delay = max(delay, sent[len(sent) - int(win.limit)] + _WINDOW - now)
        return delay

    def delay(self, group: str) -> float:
        """Seconds until a request of ``group`` may be sent (0 when it may go now)."""
        now = self._clock()
        return max(self._delay(self._window(group), now), self._delay(self._global, now))

    async def acquire(self, group: str) -> float:
        """Wait for a slot and take it; returns the seconds waited."""
        # no lock needed: between the check and the append there is no await, so it is atomic in asyncio
        waited = 0.0
        win = self._window(group)
        while True:
            now = self._clock()
            delay = max(self._delay(win, now), self._delay(self._global, now))
            if delay <= 0:
                win.sent.append(now)
                self._global.sent.append(now)
                break
            waited += delay
            await asyncio.sleep(delay)
        if waited > 0 and self._on_wait is not None:
            self._on_wait(group, waited)
        return waited

    def observe(self, header: str | None, fallback_group: str | None = None) -> None:
        """Align the group's window with the server's ``Remaining-Req`` count."""
        parsed = parse_remaining_req(header)
        if parsed is None:
            return
        group, remaining = parsed
        win = self._window(group)
        now = self._clock()
        self._delay(win, now)  # drop expired entries
        if remaining <= 0:
            win.blocked_until = max(win.blocked_until, now + _WINDOW)
            return
        local_left = int(win.limit) - len(win.sent)
        for _ in range(max(0, local_left - remaining)):
            win.sent.append(now)

    def block(self, group: str, seconds: float) -> None:
        """Refuse ``group`` for ``seconds`` (after a 429)."""
        win = self._window(group)
        win.blocked_until = max(win.blocked_until, self._clock() + seconds)

    def limit(self, group: str) -> float:
        return self._window(group).limit
