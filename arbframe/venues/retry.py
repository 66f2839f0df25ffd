"""Retries with exponential backoff and jitter that honour the error taxonomy.

:meth:`RetryPolicy.should_retry` is the one rule: an :class:`arbframe.ExchangeError` is retried when it is
``retry_safe`` (the venue did not act: any request may go again), or when it is ``transient`` *and* the request
has no side effects (``idempotent``: reads, cancels by id). An order placement is never resent after a transport
error or a 5xx: the caller reconciles by client order id. A ``retry_after`` the venue asked for is waited out
(when it is longer than ``max_wait`` the error is raised instead). Randomness and sleeping are injectable, so
tests are deterministic and do not wait.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from arbframe.core.errors import ExchangeError

__all__ = ["Backoff", "RetryPolicy"]

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """``initial * factor ** attempt`` seconds, capped at ``maximum``, spread by +/- ``jitter`` (a fraction)."""

    initial: float = 0.2
    maximum: float = 10.0
    factor: float = 2.0
    jitter: float = 0.2

    def delay(self, attempt: int, rng: random.Random) -> float:
        base = min(self.maximum, self.initial * (self.factor ** max(0, attempt)))
        spread = base * self.jitter * (2.0 * rng.random() - 1.0)
        return max(0.0, min(self.maximum, base + spread))


@dataclass
class RetryPolicy:
    """How many times and how long to retry a venue call (``attempts`` counts the first try too)."""

    attempts: int = 4
    backoff: Backoff = field(default_factory=Backoff)
    max_wait: float = 60.0
    rng: random.Random = field(default_factory=random.Random)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    @staticmethod
    def should_retry(exc: BaseException, *, idempotent: bool) -> bool:
        if not isinstance(exc, ExchangeError):
            return False
        return exc.retry_safe or (idempotent and exc.transient)

    def wait_for(self, exc: BaseException, attempt: int) -> float:
        after = getattr(exc, "retry_after", None)
        return float(after) if after is not None else self.backoff.delay(attempt, self.rng)

    async def call(self, fn: Callable[[], Awaitable[T]], *, idempotent: bool,
                   on_retry: Callable[[BaseException, int, float], None] | None = None,
                   failed: ExchangeError | None = None) -> T:
        """Run ``fn`` until it succeeds, the error may not be retried, or the attempts are used up. ``failed``:
        the first attempt was already made (by the caller, outside the policy) and raised this; it counts as
        attempt one and is waited out like any other."""
        attempt = 0
        error = failed
        while True:
            if error is None:
                try:
                    return await fn()
                except ExchangeError as exc:
                    error = exc
            attempt += 1
            if attempt >= self.attempts or not self.should_retry(error, idempotent=idempotent):
                raise error
            wait = self.wait_for(error, attempt - 1)
            if wait > self.max_wait:
                raise error
            if on_retry is not None:
                on_retry(error, attempt, wait)
            error = None
            await self.sleep(wait)
