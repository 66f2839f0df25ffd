"""Start-up without the network: each venue gets ready while the service runs, and trades only once it is.

A venue is ready when it is connected, its market rules for every traded symbol are known, its balances were read
once and a first order book of every symbol arrived. Until then the service keeps ticking: the venue's calls are
retried with exponential backoff (``service.retry_initial_seconds`` doubling up to
``service.retry_max_seconds``), entries that involve it are blocked with one reason line (logged when the reason
changes, not at every retry), and the ``venues`` row of ``/health`` says why. Once ready it stays ready: later
failures are a tick's market-data errors, as before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from arbframe.core.errors import ConfigError
from arbframe.core.mappings import section
from arbframe.kernel.hookspecs import hookimpl
from arbframe.kernel.interfaces import HealthCheck, HealthResult, HealthStatus

if TYPE_CHECKING:
    from arbframe.core.models import MarketRules
    from arbframe.kernel.interfaces import Exchange

log = logging.getLogger("arbframe.runner")

DEFAULT_RETRY_INITIAL = 1.0
DEFAULT_RETRY_MAX = 30.0


def _why(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class VenueReadiness:
    """One venue's way to ready (see the module docstring)."""

    def __init__(self, name: str, exchange: Exchange, symbols: list[str], *, initial: float = DEFAULT_RETRY_INITIAL,
                 maximum: float = DEFAULT_RETRY_MAX, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.exchange = exchange
        self.symbols = list(symbols)
        self.initial = float(initial)
        self.maximum = max(float(maximum), self.initial)
        self.clock = clock
        self.connected = False
        self.balances: dict[str, Decimal] | None = None
        self.rules: dict[str, MarketRules] = {}
        self.books: set[str] = set()
        self.attempts = 0
        self.next_attempt = 0.0
        self.ready = False
        self.reason: str | None = None  # why entries are blocked (None once ready)
        self._logged: str | None = None
        self._failure: str | None = None

    def due(self) -> bool:
        return not self.ready and self.clock() >= self.next_attempt

    async def prepare(self) -> None:
        """Connect (once it works) and read the balances (once); failures stay for :meth:`settle` to report."""
        self._failure = None
        if not self.connected:
            try:
                await self.exchange.connect()
            except ConfigError:
                raise  # a config problem does not go away by retrying
            except Exception as exc:
                self._failure = f"not connected yet ({_why(exc)})"
                return
            self.connected = True
        if self.balances is None:
            try:
                self.balances = dict(await self.exchange.fetch_balances())
            except Exception as exc:
                self._failure = f"balances not loaded yet ({_why(exc)})"
                return
            shown = ", ".join(f"{k}={v}" for k, v in sorted(self.balances.items()) if v) or "empty"
            log.info("[BOT] %s balances: %s", self.name, shown)

    def load_rules(self) -> dict[str, MarketRules]:
        """Rules of the symbols not known yet (a connector may load them with its first books); returns new ones."""
        found = {}
        for symbol in self.symbols:
            if symbol in self.rules:
                continue
            try:
                found[symbol] = self.exchange.market_rules(symbol)
            except Exception:
                continue
        self.rules.update(found)
        return found

    def book_arrived(self, symbol: str) -> None:
        self.books.add(symbol)

    def settle(self, book_errors: Mapping[str, BaseException] | None = None) -> bool:
        """After an attempt: ready, or the reason and the next attempt (backoff). True when it just became ready."""
        self.attempts += 1
        failure = self._failure
        if failure is None:
            missing_rules = [s for s in self.symbols if s not in self.rules]
            missing_books = [s for s in self.symbols if s not in self.books]
            if missing_books:
                errors = book_errors or {}
                cause = next((errors[s] for s in missing_books if s in errors), None)
                failure = f"no order book for {', '.join(missing_books)} yet" + (f" ({_why(cause)})" if cause else "")
            elif missing_rules:
                failure = f"rules for {', '.join(missing_rules)} not loaded yet"
        if failure is None:
            self.ready, self.reason = True, None
            level = logging.INFO if self.attempts > 1 else logging.DEBUG  # a normal start says nothing more
            log.log(level, "[BOT] %s ready (connected, rules, balances and books loaded after %d attempt%s): "
                    "entries allowed", self.name, self.attempts, "" if self.attempts == 1 else "s")
            return True
        self.reason = f"{self.name}: {failure}"
        delay = min(self.initial * 2 ** max(self.attempts - 1, 0), self.maximum)
        self.next_attempt = self.clock() + delay
        headline = self.reason.split(" (", 1)[0]
        if headline != self._logged:  # one line per reason, not one per retry
            self._logged = headline
            log.warning("[BOT] entries blocked: %s; retrying with backoff (next in %.1fs, at most every %gs)",
                        self.reason, delay, self.maximum)
        return False


class Readiness:
    """Every venue's :class:`VenueReadiness`, and the ``venues`` health check of the running service."""

    def __init__(self, venues: Mapping[str, VenueReadiness]) -> None:
        self.venues = dict(venues)

    @classmethod
    def for_exchanges(cls, exchanges: Mapping[str, Exchange], symbols: list[str], config: Mapping[str, Any],
                      clock: Callable[[], float] = time.monotonic) -> Readiness:
        service = section(config, "service")
        initial = float(service.get("retry_initial_seconds", DEFAULT_RETRY_INITIAL))
        maximum = float(service.get("retry_max_seconds", DEFAULT_RETRY_MAX))
        return cls({name: VenueReadiness(name, exchange, symbols, initial=initial, maximum=maximum, clock=clock)
                    for name, exchange in exchanges.items()})

    def unready(self) -> dict[str, str]:
        """venue -> why entries on it are blocked."""
        return {name: v.reason or f"{name}: not ready yet" for name, v in self.venues.items() if not v.ready}

    @hookimpl
    def arbframe_health_checks(self, config: Any, context: Any) -> list[HealthCheck]:
        return [HealthCheck("venues", self.health, timeout_seconds=1.0)]

    def health(self) -> HealthResult:
        blocked = self.unready()
        details = {name: {"ready": v.ready, "attempts": v.attempts, "reason": v.reason}
                   for name, v in self.venues.items()}
        if not blocked:
            return HealthResult("venues", HealthStatus.OK, f"{', '.join(self.venues)} ready", details)
        return HealthResult("venues", HealthStatus.WARN, "entries blocked: " + "; ".join(blocked.values()), details)
