"""The execution interface: what the engine hands an executor, and what comes back.

The engine decides; an :class:`Executor` turns a decision (two legs of a hedge) into fills. Paper and replay use
:class:`arbframe.trading.paper.PaperExecutor` (immediate: the fills come back from :meth:`Executor.execute`);
live trading uses :class:`arbframe.execution.live.LiveExecutor` (deferred: :meth:`Executor.execute` starts the
hedge and its :class:`HedgeReport` comes back from :meth:`Executor.completed` on a later tick). The engine records
both the same way, so paper, replay and live share one path above this interface.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from arbframe.core.models import ZERO, BookLevel, Direction, Fill, Order, OrderBook, Side, Trade

Changes = dict[tuple[str, str], Decimal]  # (venue, asset) -> amount, fees included


class InsufficientLiquidity(ValueError):
    """The book (after what this tick already consumed) cannot fill the whole quantity."""


def walk_levels(levels: Iterable[BookLevel], qty: Decimal, offset: Decimal = ZERO) -> tuple[Decimal, Decimal]:
    """(notional, first price touched) for ``qty`` taken from ``levels`` after skipping ``offset`` quantity.

    Raises :class:`InsufficientLiquidity` when the levels run out.
    """
    remaining = qty
    skip = offset
    notional = ZERO
    first: Decimal | None = None
    for level in levels:
        available = level.qty
        if skip > 0:
            if skip >= available:
                skip -= available
                continue
            available -= skip
            skip = ZERO
        if first is None:
            first = level.price
        if available >= remaining:
            notional += remaining * level.price
            return notional, first
        notional += available * level.price
        remaining -= available
    raise InsufficientLiquidity(f"book too thin for {qty} (after {offset} consumed)")


class Wallet:
    """Balances of one venue (``{"KRW": ..., "BTC": ...}``) as the engine sizes entries against them: the paper
    wallet's own, or a live venue's free balances as the executor last knew them."""

    __slots__ = ("balances", "exchange", "quote_currency")

    def __init__(self, exchange: str, quote_currency: str, balances: Mapping[str, Decimal | str | int] | None = None):
        self.exchange = exchange
        self.quote_currency = quote_currency
        self.balances: dict[str, Decimal] = {k: Decimal(str(v)) for k, v in (balances or {}).items()}

    def get(self, asset: str) -> Decimal:
        return self.balances.get(asset, ZERO)

    def snapshot(self) -> dict[str, Decimal]:
        return dict(self.balances)


@dataclass(frozen=True, slots=True)
class LegSpec:
    """One leg to execute: a book, a side, the fee of that venue and side (a
    :class:`arbframe.trading.accounting.SideFee`), the venue's quote currency and the quantity (None: the hedge's
    quantity)."""

    book: OrderBook
    side: Side
    fee: Any
    quote_currency: str
    qty: Decimal | None = None


@dataclass(frozen=True, slots=True)
class LegResult:
    """One executed leg: the fill, its Order and Trade records, and what it changed in its wallet."""

    fill: Fill
    order: Order
    trade: Trade
    changes: dict[tuple[str, str], Decimal]  # (venue, asset) -> amount, fee included


#: :attr:`HedgeReport.status` values
HEDGE_STATUSES = ("filled", "partial", "unwound", "rejected", "unresolved", "rehearsed")


@dataclass
class HedgeReport:
    """What a deferred executor did for one decision (an entry or a close of ``position_id``).

    ``status``: ``filled`` (both legs for the whole quantity), ``partial`` (an entry hedged for less:
    ``hedged_qty``), ``unwound`` (one leg filled, the other could not be completed: the excess was sold back;
    nothing hedged), ``rejected`` (nothing filled), ``unresolved`` (an order's outcome is still unknown: the
    reconciliation settles it), ``rehearsed`` (``live.dry_run``: the venues' test endpoints accepted both
    orders). ``changes`` is what every order of the hedge changed in the venues' balances, fees included;
    ``residual`` the net coin it left (bought minus sold across both venues), zero when hedged.
    ``domestic_price``/``foreign_price`` are the average prices of the hedged quantity on each venue.
    """

    purpose: str  # "open" | "close"
    position_id: str
    symbol: str
    direction: Direction
    requested_at: datetime
    qty: Decimal
    status: str = "rejected"
    hedged_qty: Decimal = ZERO
    domestic_price: Decimal | None = None
    foreign_price: Decimal | None = None
    changes: Changes = field(default_factory=dict)
    orders: list[Order] = field(default_factory=list)
    trades: list[Trade] = field(default_factory=list)
    residual: Decimal = ZERO
    residual_venue: str = ""
    reason: str = ""
    finished_at: datetime | None = None
    close_reason: str = ""

    @property
    def complete(self) -> bool:
        return self.status == "filled"


class Executor(abc.ABC):
    """Turns the engine's hedges into fills (see the module docstring)."""

    #: False: :meth:`execute` returns the legs' results at once (paper); True: it returns None and the
    #: :class:`HedgeReport` arrives through :meth:`completed` (live)
    deferred: ClassVar[bool] = False
    #: venue -> the balances entries are sized against
    wallets: dict[str, Any]

    def begin_tick(self) -> None:  # noqa: B027 - optional, a no-op by default
        """A new tick starts (the paper executor forgets the liquidity the last one consumed)."""

    @abc.abstractmethod
    def execute(self, legs: tuple[LegSpec, ...], qty: Decimal, ts: datetime, position_id: str | None, *,
                purpose: str = "open", direction: Direction | None = None, reason: str = "",
                ) -> tuple[LegResult, ...] | None:
        """Execute both legs of a hedge of ``qty``: their results (immediate executors), or None when the
        outcome arrives later through :meth:`completed`. An immediate executor fills both legs or neither and
        raises :class:`arbframe.InsufficientFunds` / :class:`InsufficientLiquidity` for neither."""

    def completed(self) -> list[HedgeReport]:
        """Hedges finished since the last call (deferred executors)."""
        return []

    def adopt(self, reports: list[HedgeReport]) -> None:
        """Deferred executors: queue ``reports`` for :meth:`completed` (the reconciliation's, or reports the engine
        could not record yet). Immediate executors have none."""
        if reports:
            raise TypeError(f"{type(self).__name__} is not a deferred executor")

    def settled(self, report: HedgeReport) -> None:  # noqa: B027 - optional, a no-op by default
        """The engine is about to record ``report`` (a deferred executor remembers it is in the books)."""

    def busy(self, symbol: str) -> bool:
        """A hedge on ``symbol`` is still in flight (no other decision on it meanwhile)."""
        return False

    def entry_block(self, symbol: str, notional_krw: Decimal | None = None) -> str | None:
        """Why no new entry may start now (kill switch, risk limits, residual exposure), or None."""
        return None

    @property
    def killed(self) -> bool:
        return False
