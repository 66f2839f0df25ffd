"""The abstract driver interfaces plugins implement, and the health-check types.

Every driver class is built the same way, ``DriverClass(section, context)``: ``section`` is the driver's own
config section (already validated against the schema fragment it contributed), ``context`` the kernel services.
Drivers are registered with the kernel's pluggy manager once built, so they may also implement hooks.
"""

from __future__ import annotations

import abc
import enum
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from arbframe.core.models import (
    Balance,
    ErrorRecord,
    FxRate,
    MarketRules,
    Order,
    OrderBook,
    OrderRequest,
    Position,
    Quote,
    Side,
    Spread,
    Trade,
)

if TYPE_CHECKING:
    import pluggy
    from prometheus_client import CollectorRegistry

    from arbframe.kernel.book import BookKey, BookLock


#: The kernel plugin API version. Plugins declare the version they target (``api_version`` on a driver class,
#: ``ARBFRAME_API_VERSION`` on a plugin module); a different major version refuses to load.
API_VERSION = 1


@dataclass
class PluginContext:
    """Kernel services handed to every driver and hook."""

    config: Mapping[str, Any]
    pm: pluggy.PluginManager
    registry: CollectorRegistry
    data_dir: Path
    mode: str = "paper"
    mock: bool = False
    #: The kernel's :class:`arbframe.SimulatedMarket` in mock mode (or one a venue made for itself); ``None``
    #: otherwise. Typed loosely because the simulated market sits above the plugin API in the kernel's layers.
    market: Any = None
    service_name: str = "bot_service"
    extras: dict[str, Any] = field(default_factory=dict)

    def logger(self, name: str) -> logging.Logger:
        return logging.getLogger(f"arbframe.{name}")


class Driver(abc.ABC):
    """Common base: a config section name and the API version the driver targets."""

    #: the entry-point name / config value (``csv``, ``postgres``, ``upbit`` ...)
    name: ClassVar[str] = ""
    api_version: ClassVar[int] = API_VERSION

    @classmethod
    def config_schema(cls) -> dict[str, Any] | None:
        """JSON Schema (Draft 2020-12) of this driver's config section, or None if it takes none."""
        return None


# --------------------------------------------------------------------------------------------------- storage
class Storage(Driver):
    """Where every event is recorded. Writes may be buffered; ``flush`` makes them durable."""

    @abc.abstractmethod
    def log_spread(self, spread: Spread) -> None: ...

    @abc.abstractmethod
    def log_position_open(self, position: Position) -> None: ...

    @abc.abstractmethod
    def log_position_close(self, position: Position) -> None: ...

    @abc.abstractmethod
    def log_order(self, order: Order) -> None: ...

    @abc.abstractmethod
    def log_trade(self, trade: Trade) -> None: ...

    @abc.abstractmethod
    def log_fx_rate(self, fx: FxRate) -> None: ...

    @abc.abstractmethod
    def log_error(self, error: ErrorRecord) -> None: ...

    @abc.abstractmethod
    def load_positions(self) -> list[Position]:
        """Positions still open (latest state of each id), for resuming after a restart."""

    def load_closed_positions(self) -> list[Position] | None:
        """Closed positions (latest state of each id), so PnL totals, win rate, trade count and the daily loss
        limit survive a restart. Optional: the default ``None`` says this backend keeps no history, and totals
        then start at zero each run."""
        return None

    def load_last_fx_rate(self) -> FxRate | None:
        """Optional read for the operator commands (``arbframe status``, ``arbframe profit``): the newest FX rate
        recorded (largest ``ts``; ties broken by ``id``). ``None`` when none is stored or when the backend keeps
        no history (the default); the commands then say they have no rate. Reads may raise when the backend is
        unreachable: the commands report that reason."""
        return None

    def load_last_spreads(self, symbols: Sequence[str]) -> list[Spread] | None:
        """Optional read for ``arbframe status``: the newest recorded spread of each (symbol, direction) for
        ``symbols`` (at most two per symbol), any order. ``[]`` when none is stored; ``None`` when the backend
        keeps no history (the default). Status marks open positions with them when no market is reachable, and
        says so with the spreads' age. Reads may raise when the backend is unreachable."""
        return None

    #: True when :meth:`write_order_states` returns after a short local write (no server round trip, no other
    #: thread): the execution layer then calls it on its event loop instead of in a worker thread. The kernel's
    #: writer sets it with its order journal (``storage.writer.order_journal: os``); the in-memory drivers too.
    order_states_local: bool = False

    def write_order_states(self, orders: Sequence[Order]) -> None:
        """Record these states of orders durably before returning, in one round trip: the execution layer writes
        each state change (a new ``orders`` row per state, see :mod:`arbframe.execution.orders`) before its next
        step, both legs' ``sent`` in one call before either request leaves. Raises when they are not stored (the
        caller then sends nothing). The default logs each and flushes (every record logged before them is then
        durable too). The kernel's writer appends them to its order journal and hands them to the driver
        without waiting (``storage.writer.order_journal``; docs/LIVE.md, "Durability")."""
        for order in orders:
            self.log_order(order)
        self.flush()

    def write_order_state(self, order: Order) -> None:
        """One order state, durable before returning: :meth:`write_order_states` of ``[order]``."""
        self.write_order_states((order,))

    def load_orders(self, since: datetime | None = None) -> list[Order] | None:
        """Every ``orders`` row written at or after ``since`` (all when None), for the reconciliation after a
        restart. Optional: the default ``None`` says this backend keeps no orders to read back."""
        return None

    def read_control(self, name: str) -> dict[str, Any] | None:
        """A small control record shared by every runner on this store (the kill switch, the residual exposure
        of live hedges, ...), None when never written. Names are ``[A-Za-z0-9_.+-]``. Optional: the default raises
        ``NotImplementedError`` and the kernel keeps them in local files."""
        raise NotImplementedError

    def write_control(self, name: str, value: Mapping[str, Any]) -> None:
        """Store a control record (a JSON-able mapping) durably, replacing the previous one. Optional: see
        :meth:`read_control`."""
        raise NotImplementedError

    @abc.abstractmethod
    def flush(self) -> None: ...

    @abc.abstractmethod
    def close(self) -> None:
        """Flush and release resources; calling it twice is harmless."""

    def describe(self) -> str:
        """A short human description for logs (``CsvStorage(data)``); never contains secrets."""
        return type(self).__name__

    def active_backend(self) -> str:
        """What really takes the records right now (the heartbeat line and health say it): the driver's name,
        or e.g. ``spool(...)`` while its server is away."""
        return self.name

    def lock_book(self, book: BookKey) -> BookLock | None:
        """Take the one-writer-per-book lock for ``book`` in this store, or raise
        :class:`arbframe.BookLocked` naming the holder. ``None``: this store needs none (in-memory)."""
        return None

    def abandon(self) -> None:
        """The kernel's writer gave up waiting for a stuck call at shutdown: let go without blocking (the
        kernel kept the records in flight in its own spool)."""


# ----------------------------------------------------------------------------------------------------- cache
class Cache(Driver):
    """Live state shared between processes (FX rate, heartbeats, spread snapshots).

    Keys are built by :class:`arbframe.core.keys.CacheKeys`. Failures never raise into the tick: a cache that cannot
    write returns False and counts the failure.
    """

    @abc.abstractmethod
    def set_fx_rate(self, fx: FxRate, ttl_seconds: int) -> bool: ...

    @abc.abstractmethod
    def get_fx_rate(self) -> FxRate | None: ...

    @abc.abstractmethod
    def set_heartbeat(self, service: str, ts: datetime, ttl_seconds: int) -> bool: ...

    @abc.abstractmethod
    def get_heartbeat(self, service: str) -> datetime | None: ...

    @abc.abstractmethod
    def set_spread_snapshot(self, symbol: str, snapshot: Mapping[str, Any], ttl_seconds: int = 60) -> bool: ...

    @abc.abstractmethod
    def get_spread_snapshot(self, symbol: str) -> dict[str, Any] | None: ...

    def write_tick(
        self,
        *,
        fx: tuple[FxRate, int] | None = None,
        heartbeat: tuple[str, datetime, int] | None = None,
        spreads: Mapping[str, Mapping[str, Any]] | None = None,
        spread_ttl_seconds: int = 60,
    ) -> bool:
        """Write everything a tick publishes; network caches override this to send one pipeline."""
        ok = True
        if fx is not None:
            ok &= self.set_fx_rate(*fx)
        if heartbeat is not None:
            ok &= self.set_heartbeat(*heartbeat)
        for symbol, snapshot in (spreads or {}).items():
            ok &= self.set_spread_snapshot(symbol, snapshot, spread_ttl_seconds)
        return ok

    @abc.abstractmethod
    def ping(self) -> bool: ...

    def close(self) -> None:
        """Release connections."""

    @property
    def available(self) -> bool:
        """False when the backing service or library is missing; the service still runs."""
        return True

    def describe(self) -> str:
        return type(self).__name__


# --------------------------------------------------------------------------------------------------- fx source
class FxSource(Driver):
    """Where the USD/KRW rate comes from."""

    @abc.abstractmethod
    async def fetch(self) -> FxRate: ...

    async def close(self) -> None:
        """Release connections."""


# -------------------------------------------------------------------------------------------------- exchange
def round_to_step(value: Decimal, step: Decimal, *, down: bool = True) -> Decimal:
    """``value`` on the ``step`` grid (down for quantities; half-up for prices when ``down`` is False)."""
    if step <= 0:
        return value
    units = (value / step).to_integral_value(rounding=ROUND_DOWN if down else ROUND_HALF_UP)
    return (units * step).quantize(step)


class MarketData(Driver):
    """A venue's public side: books, rules, streams. This alone is a complete exchange plugin for ``mode: paper``
    and mock mode, where the engine fills orders on paper wallets; ``mode: live`` also needs :class:`Trading`.

    ``quote_currency`` is the currency its books are priced in (``KRW``, ``USDT``); ``fee_rate`` the taker fee as
    a fraction. Symbols are base assets (``BTC``); the driver maps them to its own market names. Every method
    raises :class:`arbframe.ExchangeError` kinds for venue failures (never a bare library exception).
    """

    quote_currency: ClassVar[str] = ""

    @property
    @abc.abstractmethod
    def fee_rate(self) -> Decimal:
        """Required. The taker fee as a fraction (``Decimal``), from config; never blocks."""

    @property
    def simulated(self) -> bool:
        """Optional. True when market data comes from the kernel's simulated market (mock mode)."""
        return False

    async def connect(self) -> None:
        """Optional. Open sessions and load market rules. Raises an ``ExchangeError`` kind when the venue cannot
        be reached; the service then stops before its first tick. Bounded by the driver's timeouts."""

    async def close(self) -> None:
        """Optional. Close sessions and streams. Never raises; calling it twice is harmless."""

    @abc.abstractmethod
    async def fetch_order_book(self, symbol: str, depth: int = 15) -> OrderBook:
        """Required. At most ``depth`` levels per side, best first, exact ``Decimal`` prices, ``ts`` aware UTC.
        Raises: ``InvalidRequest`` (unknown symbol), ``RateLimited``, ``Banned``, ``TransportError`` /
        ``RequestTimeout``, ``VenueUnavailable``, ``ProtocolError``. A read: safe to retry on ``transient``
        kinds. Blocks at most the driver's request timeout times its retries."""

    async def fetch_ticker(self, symbol: str) -> Quote:
        """Optional. Best bid and ask; by default from a depth-1 book (same errors as ``fetch_order_book``)."""
        book = await self.fetch_order_book(symbol, depth=1)
        quote = book.quote()
        if quote is None:
            raise ValueError(f"{self.name}: empty order book for {symbol}")
        return quote

    def stream_order_books(self, symbols: list[str], depth: int = 15) -> AsyncIterator[OrderBook] | None:
        """Optional. An endless stream of books (reconnecting by itself), or None if the venue cannot stream.
        Iterating never raises for a dropped connection; closing the iterator stops it."""
        return None

    @abc.abstractmethod
    def market_rules(self, symbol: str) -> MarketRules:
        """Required. Tick size, step size and minimums of ``symbol``. Never blocks (rules are loaded by
        ``connect``); ``InvalidRequest`` (a ``ValueError``) or ``KeyError`` for an unknown symbol."""

    def price_step(self, symbol: str, price: Decimal) -> Decimal:
        """Optional. The price increment at ``price``; venues with price bands (Upbit) override this."""
        tick = self.market_rules(symbol).tick_size
        return tick if tick is not None else Decimal("0.00000001")

    def round_price(self, symbol: str, price: Decimal, side: Side) -> Decimal:
        """Optional. A valid price no better for us than ``price`` would be: buys round up, sells round down."""
        step = self.price_step(symbol, price)
        units = (price / step).to_integral_value(rounding=ROUND_DOWN)
        rounded = units * step
        if side is Side.BUY and rounded < price:
            rounded += step
        exponent = step.as_tuple().exponent
        return rounded.quantize(step) if isinstance(exponent, int) and exponent < 0 else rounded

    def round_qty(self, symbol: str, qty: Decimal) -> Decimal:
        """Optional. ``qty`` rounded down to the venue's step size."""
        return round_to_step(qty, self.market_rules(symbol).step_size)


class Trading(abc.ABC):
    """A venue's private side: balances and orders. Needed for ``mode: live`` only. Order ids: ``Order.id`` is
    the venue's id or the client order id; every method accepts either where it takes ``order_id``."""

    #: The :class:`OrderRequest` options :meth:`place_order` honors: ``"time_in_force"`` (IOC/FOK limit orders:
    #: live execution sends nothing else, so ``--mode live`` refuses a driver without it) and ``"test"`` (the
    #: venue's test endpoint: ``live.dry_run`` refuses a driver without it).
    order_options: ClassVar[frozenset[str]] = frozenset()

    @abc.abstractmethod
    async def fetch_balances(self) -> dict[str, Decimal]:
        """Required. Free balance per asset (upper-case names, ``Decimal`` >= 0). A read: safe to retry on
        ``transient`` kinds. Raises ``AuthenticationError``, ``RateLimited``, ``TransportError`` ..."""

    async def fetch_balance_details(self) -> dict[str, Balance]:
        """Optional. Free and locked (held by open orders) amount per asset. The default wraps
        :meth:`fetch_balances` with ``locked`` 0; a venue that reports locked amounts overrides it, so nothing it
        says is dropped. Raises as :meth:`fetch_balances`."""
        return {asset: Balance(free) for asset, free in (await self.fetch_balances()).items()}

    @abc.abstractmethod
    async def place_order(self, request: OrderRequest) -> Order:
        """Required. Send one order carrying ``request.client_order_id``; returns it as the venue accepted it.
        Raises ``OrderRejected`` / ``InsufficientFunds`` (no order exists), ``OrderStatusUnknown`` (sent, outcome
        unknown: reconcile with ``fetch_order(symbol, client_order_id)``, never resend), ``RateLimited`` (refused
        before acting: ``retry_safe``). Never retried by the driver after a transport error or a 5xx."""

    @abc.abstractmethod
    async def cancel_order(self, symbol: str, order_id: str) -> Order:
        """Required. Cancel and return the order's state (``CANCELED``, or filled if it filled first). Raises
        ``UnknownOrder``. Idempotent: safe to retry on ``transient`` kinds."""

    @abc.abstractmethod
    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        """Required. Orders still open (every symbol when ``symbol`` is None). A read: safe to retry."""

    @abc.abstractmethod
    async def fetch_order(self, symbol: str, order_id: str) -> Order:
        """Required. One order by venue id or client order id. Raises ``UnknownOrder``. A read: safe to retry."""


class Exchange(MarketData, Trading):
    """One venue: market data and trading (the union of :class:`MarketData` and :class:`Trading`). Existing
    drivers subclass this; a read-only venue may subclass :class:`MarketData` alone."""


# ---------------------------------------------------------------------------------------------------- health
class HealthStatus(str, enum.Enum):
    OK = "OK"
    WARN = "WARN"
    ERROR = "ERROR"
    SKIP = "SKIP"
    DISABLED = "DISABLED"

    @property
    def icon(self) -> str:
        return _ICONS[self]


_ICONS = {
    HealthStatus.OK: "✅",
    HealthStatus.WARN: "⚠️",
    HealthStatus.ERROR: "❌",
    HealthStatus.SKIP: "⏭️",
    HealthStatus.DISABLED: "⏸️",
}


@dataclass(frozen=True)
class HealthResult:
    component: str
    status: HealthStatus
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HealthCheck:
    """A named, bounded probe. ``probe`` may be sync (run in a daemon thread) or async."""

    component: str
    probe: Callable[[], HealthResult | Awaitable[HealthResult]]
    timeout_seconds: float = 2.0
