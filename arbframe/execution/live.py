"""Live execution: hedged two-leg IOC orders on real venues, leg risk, residual exposure.

:class:`LiveExecutor` is the deferred :class:`~arbframe.execution.base.Executor`: :meth:`LiveExecutor.execute`
starts a hedge as a task and returns; its :class:`~arbframe.execution.base.HedgeReport` reaches the engine through
:meth:`LiveExecutor.completed` on a later tick. One hedge (:meth:`LiveExecutor.run_hedge`):

1. **Bounds.** Each leg is a limit IOC order at the book VWAP of its quantity moved ``live.max_slippage_bps``
   against us (rounded to the venue's price grid towards the book).
2. **Both legs at once.** Both orders' ``sent`` states are written to storage in one call
   (``Storage.write_order_states``; with the kernel's writer, one journal write on the loop: docs/LIVE.md
   "Durability") before either request leaves; both requests go out concurrently, one task each (with a local
   write, both tasks are started by ``execute`` itself, so both requests are built in the same pass of the event
   loop); every answer is written before the next step. The log lines of that step wait until the requests are
   out (the first answer, or ``ANNOUNCE_AFTER_SECONDS``).
3. **Unknown outcomes.** A timeout, dropped connection or 5xx after sending makes the order ``unknown``: it is
   looked up by client order id until the venue says what happened (``live.lookup_interval_seconds``); a venue
   that still does not know it ``live.not_found_seconds`` after sending means it was never placed. Nothing else
   is sent for that leg meanwhile, and entries on every symbol wait. A refusal before acting (429/418, per the
   error taxonomy's ``retry_safe``) resends the *same* request (same client id) after ``Retry-After`` or a
   growing back-off.
4. **Leg risk.** When one leg filled more than the other, the missing quantity is retried on the lagging venue at
   the decision VWAP moved up to ``live.max_hedge_slippage_bps``, for ``live.hedge_timeout_seconds``; what is still
   unhedged is then unwound on the leading venue (opposite side, same slippage bound from a fresh book) for
   another ``live.hedge_timeout_seconds``. What remains is the residual exposure (``arbframe_residual_exposure_krw``).
   A tripped kill switch skips the retries and unwinds at once.
5. **Report.** Every order's final state, one trade per filled order, the balance changes of all of them (fees in
   the asset the venue charged) and the hedged quantity; the risk guard counts failures and may trip the kill
   switch.

``live.dry_run`` sends every order to the venues' test endpoints (``OrderRequest.test``): signed and checked by
the venue, nothing placed; the hedge reports ``rehearsed``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_DOWN, Decimal
from typing import Any

from arbframe.core.errors import (
    AuthenticationError,
    Banned,
    ExchangeError,
    InvalidRequest,
    OrderRejected,
    RateLimited,
    UnknownOrder,
)
from arbframe.core.models import ZERO, Direction, MarketRules, OrderBook, OrderRequest, OrderType, Side, utcnow
from arbframe.execution.base import (
    Changes,
    Executor,
    HedgeReport,
    InsufficientLiquidity,
    LegSpec,
    Wallet,
    walk_levels,
)
from arbframe.execution.config import LiveConfig
from arbframe.execution.control import KillState, KillSwitch
from arbframe.execution.orders import ManagedOrder, S, status_of
from arbframe.execution.risk import ExecutionMetrics, RiskGuard
from arbframe.kernel.hookspecs import hookimpl
from arbframe.kernel.interfaces import HealthCheck, HealthResult, HealthStatus

log = logging.getLogger("arbframe.execution")

BPS = Decimal(10000)
_DUST = Decimal("0.00000001")


#: the ``sent`` log lines of a hedge's first orders wait for the first answer, at most this long after sending
ANNOUNCE_AFTER_SECONDS = 0.05


class _Once:
    """``fn`` called on the first call only."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn: Callable[[], Any] | None = fn

    def __call__(self) -> None:
        fn, self.fn = self.fn, None
        if fn is not None:
            fn()


def _quiet() -> None:
    """No log line (a hedge that sends nothing announces nothing)."""


class DuplicateClientOrderId(RuntimeError):
    """The executor was about to send a client order id it has sent before (a bug: ids are derived per attempt)."""


@dataclass
class Venue:
    """One venue as the executor uses it: ``trading`` (the kernel's ``Trading`` interface: place, look up and
    cancel orders by client id, balances) and ``market`` (``MarketData``: fresh books, rules, price grid; usually
    the same ``Exchange`` object)."""

    name: str
    trading: Any
    quote_currency: str
    market: Any = None

    def rules(self, symbol: str) -> MarketRules | None:
        market_rules = getattr(self.market, "market_rules", None)
        try:
            return market_rules(symbol) if callable(market_rules) else None
        except (KeyError, ValueError):
            return None

    def bound_price(self, symbol: str, price: Decimal, side: Side) -> Decimal:
        """``price`` on the venue's grid, rounded towards the book (a buy's bound down, a sell's up)."""
        rounder = getattr(self.market, "round_price", None)
        return rounder(symbol, price, side.opposite) if callable(rounder) else price

    def round_qty(self, symbol: str, qty: Decimal, *, up: bool = False) -> Decimal:
        """``qty`` on the venue's lot grid, down (or ``up``: a hedge retry covers the whole gap)."""
        rules = self.rules(symbol)
        step = rules.step_size if rules is not None else _DUST
        return (qty / step).to_integral_value(rounding=ROUND_CEILING if up else ROUND_DOWN) * step

    def tradable(self, symbol: str, qty: Decimal, price: Decimal) -> bool:
        rules = self.rules(symbol)
        if qty <= 0:
            return False
        return rules is None or (qty >= rules.min_qty and qty >= rules.step_size and qty * price >= rules.min_notional)

    async def book(self, symbol: str, depth: int = 30) -> OrderBook | None:
        fetch = getattr(self.market, "fetch_order_book", None)
        if not callable(fetch):
            return None
        try:
            return await fetch(symbol, depth)
        except Exception as exc:  # a retry falls back to the decision's book
            log.warning("[EXEC] %s %s book unavailable for the hedge (%s: %s)", self.name, symbol,
                        type(exc).__name__, exc)
            return None


@dataclass
class Leg:
    venue: Venue
    role: str  # "domestic" | "foreign"
    side: Side
    qty: Decimal  # the leg's target
    book: OrderBook
    vwap: Decimal = ZERO
    orders: list[ManagedOrder] = field(default_factory=list)

    @property
    def filled(self) -> Decimal:
        return sum((o.filled_qty for o in self.orders if o.kind != "unwind"), ZERO)

    @property
    def unwound(self) -> Decimal:
        return sum((o.filled_qty for o in self.orders if o.kind == "unwind"), ZERO)

    @property
    def frac(self) -> Decimal:
        return (self.filled - self.unwound) / self.qty if self.qty else ZERO

    def avg_price(self) -> Decimal | None:
        from arbframe.execution.orders import filled_quote

        done = [o.venue_order for o in self.orders if o.kind != "unwind" and o.venue_order is not None]
        qty = sum((o.filled_qty for o in done), ZERO)
        return sum((filled_quote(o) for o in done), ZERO) / qty if qty else None


@dataclass
class HedgePlan:
    position_id: str
    purpose: str
    symbol: str
    direction: Direction
    qty: Decimal
    legs: tuple[Leg, Leg]  # domestic, foreign
    ts: datetime
    close_reason: str = ""


@dataclass
class _Opening:
    """What :meth:`LiveExecutor.start` prepared of a hedge (``_open_now``): its first orders, the log line that
    announces them and the send tasks of the orders after the first (``notice`` set once their ``sent`` is
    stored); or the report of a hedge that sends nothing (``early``), or what went wrong."""

    orders: list[ManagedOrder] = field(default_factory=list)
    announce: Callable[[], Any] = _quiet
    sends: list[asyncio.Task[None]] = field(default_factory=list)  # one per order after the first
    notice: _Once | None = None
    early: HedgeReport | None = None
    error: Exception | None = None


def vwap(book: OrderBook, side: Side, qty: Decimal) -> Decimal:
    """Average price of ``qty`` walked through ``book`` (asks for a buy); InsufficientLiquidity when thin."""
    notional, _first = walk_levels(book.asks if side is Side.BUY else book.bids, qty)
    return notional / qty


class LiveExecutor(Executor):
    """Hedges on live venues (see the module docstring)."""

    deferred = True

    def __init__(self, venues: Mapping[str, Venue], *, domestic: str, foreign: str, storage: Any, cfg: LiveConfig,
                 ids: Callable[[], str], kill_switch: KillSwitch | None = None, registry: Any = None,
                 simulated: bool = False, instance_id: str = "",
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic, now: Callable[[], datetime] = utcnow) -> None:
        self.venues = dict(venues)
        self.domestic, self.foreign = domestic, foreign
        self.storage = storage
        self.cfg = cfg
        self.ids = ids
        self.kill_switch = kill_switch
        self.metrics = ExecutionMetrics.get(registry) if registry is not None else None
        self.risk = RiskGuard(cfg, self.metrics)
        self.simulated = simulated
        self.instance_id = instance_id
        self.sleep, self.clock, self.now = sleep, clock, now
        self.wallets: dict[str, Wallet] = {n: Wallet(n, v.quote_currency) for n, v in self.venues.items()}
        self.used_ids: set[str] = set()
        self.attempts: dict[tuple[str, str, str], int] = {}
        self.live_orders: dict[str, ManagedOrder] = {}  # client id -> orders not final yet
        self._tasks: dict[str, asyncio.Task[HedgeReport]] = {}
        self._busy: dict[str, int] = {}
        self._done: list[HedgeReport] = []
        # a local write (the kernel writer's order journal, in-memory stores): on the loop, no thread hop
        self._inline = bool(getattr(storage, "order_states_local", False))
        self.marks: dict[str, Decimal] = {}  # symbol -> KRW per coin (the decision's domestic VWAP)
        self.on_trip: Callable[[str], None] | None = None
        self.reconciler: Any = None  # set by arbframe.execution.reconcile.Reconciler
        #: where residual exposure is kept (arbframe.execution.residual.ResidualStore; set by the runner)
        self.residual_store: Any = None
        self._residuals_unsaved: set[str] = set()  # symbols whose residual record could not be written yet
        self._background: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------------------------ Executor interface
    def execute(self, legs: tuple[LegSpec, ...], qty: Decimal, ts: datetime, position_id: str | None, *,
                purpose: str = "open", direction: Direction | None = None, reason: str = "") -> None:
        plan = self.plan(legs, qty, ts, position_id or self.ids(), purpose=purpose, direction=direction,
                         close_reason=reason)
        self.start(plan)
        return None

    def plan(self, legs: tuple[LegSpec, ...], qty: Decimal, ts: datetime, position_id: str, *, purpose: str,
             direction: Direction | None, close_reason: str = "") -> HedgePlan:
        built = []
        for spec in legs:
            venue = self.venues[spec.book.exchange]
            role = "domestic" if venue.name == self.domestic else "foreign"
            built.append(Leg(venue, role, spec.side, spec.qty or qty, spec.book))
        built.sort(key=lambda leg: leg.role != "domestic")
        if direction is None:
            direction = Direction.KIMCHI if built[0].side is Side.SELL else Direction.REVERSE
            if purpose == "close":
                direction = Direction.REVERSE if direction is Direction.KIMCHI else Direction.KIMCHI
        return HedgePlan(position_id, purpose, built[0].book.symbol, direction, qty, (built[0], built[1]), ts,
                         close_reason)

    def start(self, plan: HedgePlan) -> asyncio.Task[HedgeReport]:
        loop = asyncio.get_running_loop()
        # with a local state write (the kernel writer's order journal) the first orders are made here and the
        # second one's send task starts with the hedge's: both requests are built in the next pass (_open_now)
        opening = self._open_now(plan) if self._inline else None
        task = loop.create_task(self.run_hedge(plan, opening), name=f"hedge-{plan.position_id}")
        if opening is not None and opening.orders:  # after the hedge's task, whose first step stores their `sent`
            opening.sends = [loop.create_task(self._send_opened(opening, order)) for order in opening.orders[1:]]
        self._tasks[plan.position_id] = task
        self._busy[plan.symbol] = self._busy.get(plan.symbol, 0) + 1

        def finished(t: asyncio.Task[HedgeReport]) -> None:
            self._busy[plan.symbol] -= 1
            self._tasks.pop(plan.position_id, None)
            if t.cancelled():
                if opening is not None:  # cancelled before it ran: the other orders' tasks send nothing
                    for send in opening.sends:
                        send.cancel()
                log.warning("[EXEC] hedge %s on %s stopped before it finished: the reconciliation settles its "
                            "orders at the next start", plan.position_id, plan.symbol)
                return
            exc = t.exception()
            if exc is not None:
                log.error("[EXEC] hedge %s on %s failed: %s: %s", plan.position_id, plan.symbol,
                          type(exc).__name__, exc)
                report = HedgeReport(plan.purpose, plan.position_id, plan.symbol, plan.direction, plan.ts, plan.qty,
                                     status="unresolved", reason=f"{type(exc).__name__}: {exc}")
                self._done.append(report)
                return
            self._done.append(t.result())

        task.add_done_callback(finished)
        return task

    def completed(self) -> list[HedgeReport]:
        out, self._done = self._done, []
        return out

    def adopt(self, reports: list[HedgeReport]) -> None:
        self._done.extend(reports)

    def count_unresolved(self) -> int:
        """Orders whose outcome is not known (``unknown``, or ``sent`` without an answer): entries wait."""
        self.risk.unresolved = sum(1 for o in self.live_orders.values() if o.state in (S.UNKNOWN, S.SENT))
        return self.risk.unresolved

    def settled(self, report: HedgeReport) -> None:
        if report.residual:  # stored before the hedge counts as settled: a restart settles it again or finds it
            self.save_residuals({report.symbol})
        if self.reconciler is not None:
            self.reconciler.mark_settled(report)

    def save_residuals(self, symbols: set[str], *, note: str = "") -> bool:
        """Write the residual records of ``symbols`` (and of any whose last write failed) now; False when one
        failed (retried on the next change or tick)."""
        pending, items = self._residuals_to_save(symbols)
        self._residuals_unsaved |= self._write_residuals(pending, items, note)
        return not self._residuals_unsaved

    async def save_residuals_off_loop(self, symbols: set[str], *, note: str = "") -> bool:
        """:meth:`save_residuals` with the writes in a thread (what is written is taken on the loop)."""
        pending, items = self._residuals_to_save(symbols)
        if pending:
            self._residuals_unsaved |= await asyncio.to_thread(self._write_residuals, pending, items, note)
        return not self._residuals_unsaved

    def _residuals_to_save(self, symbols: set[str]) -> tuple[set[str], list[Any]]:
        if self.residual_store is None:
            return set(), []
        pending, self._residuals_unsaved = self._residuals_unsaved | symbols, set()
        return pending, list(self.risk.residuals.values())

    def _write_residuals(self, symbols: set[str], items: list[Any], note: str) -> set[str]:
        """The symbols whose record could not be written."""
        store, failed = self.residual_store, set()
        for symbol in sorted(symbols):
            try:
                store.save(symbol, items, by=self.instance_id, note=note)
            except Exception as exc:
                failed.add(symbol)
                log.error("[EXEC] residual exposure of %s NOT stored in %s (%s: %s): retried; a restart before it "
                          "is stored would not know it", symbol, store.where, type(exc).__name__, exc)
        return failed

    def busy(self, symbol: str) -> bool:
        return self._busy.get(symbol, 0) > 0

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait for the hedges in flight and the kill switch writes they started (True when none is left)."""
        tasks = [*self._tasks.values(), *self._background]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        return not self._tasks

    async def close(self, timeout: float | None = None) -> None:
        """Let the hedges in flight finish (bounded by ``timeout``), then cancel what is left."""
        if not await self.wait_idle(timeout):
            for task in list(self._tasks.values()):
                task.cancel()
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    @property
    def killed(self) -> bool:
        return self.risk.killed_reason is not None

    def entry_block(self, symbol: str, notional_krw: Decimal | None = None, *, legs: Any = (),
                    positions: Any = ()) -> str | None:
        if self.busy(symbol):
            return f"a hedge on {symbol} is in flight"
        order_legs = []
        for spec in legs:
            venue = self.venues.get(spec.book.exchange)
            if venue is None:
                continue
            try:
                price = vwap(spec.book, spec.side, spec.qty)
            except (InsufficientLiquidity, ZeroDivisionError):
                continue
            order_legs.append((venue.name, spec.side, spec.qty, price, venue.quote_currency))
        return self.risk.entry_block(symbol, notional_krw, positions=positions, legs=order_legs,
                                     wallets=self.wallets)

    # ----------------------------------------------------------------------------------------------- health
    @hookimpl
    def arbframe_health_checks(self, config: Any, context: Any) -> list[HealthCheck]:
        return [HealthCheck("execution", self.health, timeout_seconds=1.0)]

    def health(self) -> HealthResult:
        """ERROR while killed, WARN while entries are paused (drift, unknown orders, residual, reconciling)."""
        risk = self.risk
        details = {"killed": risk.killed_reason, "in_flight": self.in_flight, "unresolved_orders": risk.unresolved,
                   "residual_exposure_krw": str(risk.residual_krw), "consecutive_failures": risk.consecutive_failures,
                   "drift": risk.drift, "dry_run": self.cfg.dry_run, "residual_exposure": risk.residual_text()}
        if risk.killed_reason is not None:
            return HealthResult("execution", HealthStatus.ERROR, f"kill switch: {risk.killed_reason}", details)
        why = risk.pause_reason()
        if why is not None:
            return HealthResult("execution", HealthStatus.WARN, f"entries paused: {why}", details)
        mode = "dry run (test endpoints)" if self.cfg.dry_run else "live orders"
        residual = f"; residual exposure {risk.residual_text()} (under live.max_residual_krw)" if risk.residuals else ""
        return HealthResult("execution", HealthStatus.OK, f"{mode}; {self.in_flight} hedge(s) in flight{residual}",
                            details)

    # ------------------------------------------------------------------------------------------ kill switch
    async def apply_kill(self, state: KillState) -> None:
        """Take the stored kill switch state: killed -> cancel every open order (entries are blocked by the
        risk guard); resumed -> entries allowed again (failure count reset)."""
        was = self.risk.killed_reason
        if state.killed:
            self.risk.killed_reason = state.reason or "kill switch tripped"
            if was is None:
                log.error("[EXEC] kill switch tripped (%s): no new entries; canceling open orders%s",
                          state.describe(), "; closing every position" if state.flatten else "")
                await self.cancel_open_orders()
        elif was is not None:
            self.risk.killed_reason = None
            self.risk.consecutive_failures = 0
            log.warning("[EXEC] kill switch released (%s): entries allowed again", state.by or "resume")
            if self.risk.residuals and not set(self.risk.residuals) <= set(state.flattened):
                log.warning("[EXEC] residual exposure still recorded: %s; %s", self.risk.residual_text(),
                            "entries stay blocked while it is over live.max_residual_krw" if self.risk.residual_over()
                            else "under live.max_residual_krw")
        await self.apply_flattened(state)
        self.risk.publish()

    async def apply_flattened(self, state: KillState) -> list[Any]:
        """Drop the residuals ``arbframe resume --flattened`` named (flattened by hand) and store that; the ones
        dropped (none once applied: the kill switch record keeps naming them)."""
        if self._residuals_unsaved:
            await self.save_residuals_off_loop(set())
        if not state.flattened or not self.risk.residuals:
            return []
        cleared = self.risk.clear_residuals(state.flattened)
        for r in cleared:
            log.warning("[EXEC] residual exposure %s cleared: flattened by hand (arbframe resume --flattened, %s)",
                        r.describe(), state.by or "?")
        if cleared:
            log.warning("[EXEC] residual exposure now %s KRW (%s)", f"{self.risk.residual_krw.quantize(Decimal(1)):,}",
                        self.risk.residual_text())
            await self.save_residuals_off_loop({r.symbol for r in cleared},
                                               note=f"flattened by hand: arbframe resume --flattened by {state.by}")
        return cleared

    def trip(self, reason: str) -> None:
        """Trip the kill switch automatically (stored, so every runner and a restart see it)."""
        if self.risk.killed_reason is not None:
            return
        self.risk.killed_reason = f"auto: {reason}"
        log.error("[EXEC] kill switch tripped automatically: %s", reason)
        if self.kill_switch is not None:
            switch = self.kill_switch

            def store() -> None:
                try:
                    switch.trip(f"auto: {reason}", by="auto")
                except Exception as exc:
                    log.error("[EXEC] the tripped kill switch could not be stored (%s: %s); it holds in this "
                              "process only", type(exc).__name__, exc)

            try:  # off the event loop: a slow store must not stall the hedges in flight
                loop = asyncio.get_running_loop()
            except RuntimeError:
                store()
            else:
                self._background.add(task := loop.create_task(asyncio.to_thread(store)))
                task.add_done_callback(self._background.discard)
        if self.on_trip is not None:
            self.on_trip(reason)
        self.risk.publish()

    async def cancel_open_orders(self) -> int:
        """Cancel every order of ours still open at a venue (not the unknown ones: they are being looked up)."""
        count = 0
        for order in list(self.live_orders.values()):
            if order.state in (S.OPEN, S.PARTIALLY_FILLED):
                await self._cancel(order, "kill switch")
                count += 1
        return count

    # ---------------------------------------------------------------------------------------------- hedging
    async def run_hedge(self, plan: HedgePlan, opening: _Opening | None = None) -> HedgeReport:
        """One hedge (the module docstring); ``opening``: its first orders already made and their send tasks
        started by :meth:`start` (:meth:`_open_now`)."""
        cfg = self.cfg
        if opening is None:
            opening = self._open_now(plan)
        if opening.error is not None:
            raise opening.error
        if opening.early is not None:
            return self._finish(plan, opening.early)
        first = opening.orders
        await self._open(first, opening)
        report = self._report(plan)  # made once the requests are out: nothing before them that need not be
        if cfg.dry_run:
            report.status = "rehearsed"
            return self._finish(plan, report)
        await asyncio.gather(*(self._settle(order) for order in first))
        await self._balance_legs(plan)
        return self._finish(plan, report)

    def _first_orders(self, plan: HedgePlan) -> tuple[HedgeReport | None, list[ManagedOrder], Callable[[], Any]]:
        """The hedge's first orders at their bounds and the log line announcing them; a report instead when a
        book is too thin for its leg (nothing sent)."""
        cfg = self.cfg
        d, f = plan.legs
        bounds = []
        for leg in plan.legs:
            try:
                leg.vwap = vwap(leg.book, leg.side, leg.qty)
            except InsufficientLiquidity:
                report = self._report(plan)
                report.reason = f"{leg.venue.name} {plan.symbol} book too thin for {leg.qty}: nothing sent"
                log.warning("[EXEC] %s %s %s: %s", plan.purpose, plan.direction.value, plan.symbol, report.reason)
                return report, [], _quiet
            bounds.append(self._bound(leg, leg.vwap, leg.side, cfg.max_slippage_bps))
        self.marks[plan.symbol] = d.vwap
        announce = functools.partial(
            log.info, "[EXEC] %s %s %s %s qty=%s: %s %s %s @ <=%s, %s %s %s @ <=%s (VWAP %s / %s, %s bps)%s",
            plan.purpose, plan.direction.value, plan.symbol, plan.position_id, plan.qty,
            d.venue.name, d.side.value, d.qty, bounds[0], f.venue.name, f.side.value, f.qty, bounds[1],
            d.vwap, f.vwap, cfg.max_slippage_bps, " [dry run]" if cfg.dry_run else "")
        first = [self._new(plan, leg, "first", leg.side, leg.qty, bound) for leg, bound in zip(plan.legs, bounds,
                                                                                               strict=True)]
        return None, first, announce

    def _open_now(self, plan: HedgePlan) -> _Opening:
        """:meth:`run_hedge`'s first orders made at once (by :meth:`start`, which then starts a send task for each
        order after the first, right after the hedge's task). The hedge's first step stores ``sent`` for all of
        them (one write) and sends the first; the other tasks, started in the same pass of the loop after it, send
        theirs once that write is done. So both requests are built in one pass, side by side, rather than the
        second one pass after the first. What went wrong here is handed to the hedge's task, which raises it."""
        try:
            early, first, announce = self._first_orders(plan)
        except Exception as exc:
            return _Opening(error=exc)
        if early is not None:
            return _Opening(early=early)
        return _Opening(orders=first, announce=announce)

    async def _open(self, first: list[ManagedOrder], opening: _Opening) -> None:
        """Both legs' ``sent`` stored in one write, then both requests: the first sent here, the others by
        ``opening.sends`` when :meth:`start` started them (they send only once ``opening.notice`` is set: the write
        is done), else by :meth:`_send_all`; every send task waited for, or cancelled with us. The log lines and
        metrics of that step come once the requests are out: before the first answer is taken (or
        ``ANNOUNCE_AFTER_SECONDS`` after sending when no answer comes): formatting them first would hold the orders
        back."""
        sends = opening.sends
        try:
            if await self._mark_sent(first, announce=opening.announce):
                notice = opening.notice = _Once(functools.partial(self._announce_sent, first, opening.announce))
                timer = asyncio.get_running_loop().call_later(ANNOUNCE_AFTER_SECONDS, notice)
                try:
                    if sends:
                        await self._send(first[0], marked=True, answered=notice)
                        await asyncio.gather(*sends)
                    else:
                        await self._send_all(first, notice)
                finally:
                    timer.cancel()
                    notice()
            else:
                await asyncio.gather(*sends)  # nothing stored: they send nothing
        except BaseException:
            for task in sends:
                task.cancel()
            await asyncio.gather(*sends, return_exceptions=True)
            raise

    async def _send_opened(self, opening: _Opening, order: ManagedOrder) -> None:
        notice = opening.notice
        if notice is None:  # ``sent`` not stored (refused, or the hedge's task did not get that far): not sent
            return
        await self._send(order, marked=True, answered=notice)

    @staticmethod
    def _report(plan: HedgePlan) -> HedgeReport:
        return HedgeReport(plan.purpose, plan.position_id, plan.symbol, plan.direction, plan.ts, plan.qty,
                           close_reason=plan.close_reason)

    async def _send_all(self, orders: list[ManagedOrder], answered: Callable[[], None]) -> None:
        """Send ``orders`` (``sent`` stored) concurrently: the first in this task at once, the others as tasks
        that start when it first waits (as ``asyncio.gather`` would, one loop pass earlier for the first)."""
        rest = [asyncio.get_running_loop().create_task(self._send(order, marked=True, answered=answered))
                for order in orders[1:]]
        try:
            await self._send(orders[0], marked=True, answered=answered)
        except BaseException:
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)
            raise
        await asyncio.gather(*rest)

    def _bound(self, leg: Leg, reference: Decimal, side: Side, bps: Decimal) -> Decimal:
        move = reference * bps / BPS
        raw = reference + move if side is Side.BUY else reference - move
        return leg.venue.bound_price(leg.book.symbol, raw, side)

    def _new(self, plan: HedgePlan, leg: Leg, kind: str, side: Side, qty: Decimal, price: Decimal) -> ManagedOrder:
        key = (plan.position_id, plan.purpose, leg.role)
        attempt = self.attempts.get(key, -1) + 1
        self.attempts[key] = attempt
        order = ManagedOrder(exchange=leg.venue.name, symbol=plan.symbol, side=side, qty=qty, price=price,
                             position_id=plan.position_id, purpose=plan.purpose, leg=leg.role, kind=kind,
                             attempt=attempt, quote_currency=leg.venue.quote_currency)
        leg.orders.append(order)
        return order

    async def _balance_legs(self, plan: HedgePlan) -> None:
        """Leg risk: bring the lagging leg up to the leading one, then unwind what could not be hedged."""
        cfg = self.cfg
        d, f = plan.legs
        lead, lag = (d, f) if d.frac >= f.frac else (f, d)
        gap = lead.frac - lag.frac
        if not self._significant(plan, lead, lag, gap):
            return
        log.warning("[EXEC] %s %s leg risk: %s filled %s of %s, %s filled %s of %s: hedging the rest on %s "
                    "(up to %s bps for %gs)", plan.purpose, plan.symbol, lead.venue.name, lead.filled, lead.qty,
                    lag.venue.name, lag.filled, lag.qty, lag.venue.name, cfg.max_hedge_slippage_bps,
                    cfg.hedge_timeout_seconds)
        deadline = self.clock() + cfg.hedge_timeout_seconds
        while not self.killed and self.clock() < deadline:
            missing = lag.venue.round_qty(plan.symbol, gap * lag.qty, up=True)
            bound = self._bound(lag, lag.vwap, lag.side, cfg.max_hedge_slippage_bps)
            if not lag.venue.tradable(plan.symbol, missing, bound):
                log.warning("[EXEC] %s %s: the missing %s on %s is below the venue's minimum order",
                            plan.purpose, plan.symbol, gap * lag.qty, lag.venue.name)
                break
            order = self._new(plan, lag, "hedge", lag.side, missing, bound)
            await self._send(order)
            await self._settle(order)
            gap = lead.frac - lag.frac
            if not self._significant(plan, lead, lag, gap):
                return
            await self.sleep(cfg.hedge_retry_interval_seconds)
        if self.killed:
            log.warning("[EXEC] %s %s: kill switch tripped: no more hedge orders, unwinding the excess on %s",
                        plan.purpose, plan.symbol, lead.venue.name)
        await self._unwind(plan, lead, lag)

    async def _unwind(self, plan: HedgePlan, lead: Leg, lag: Leg) -> None:
        cfg = self.cfg
        gap = lead.frac - lag.frac
        deadline = self.clock() + cfg.hedge_timeout_seconds
        side = lead.side.opposite
        while self._significant(plan, lead, lag, gap) and self.clock() < deadline:
            excess = lead.venue.round_qty(plan.symbol, gap * lead.qty)
            book = await lead.venue.book(plan.symbol) or lead.book
            try:
                reference = vwap(book, side, excess)
            except (InsufficientLiquidity, ZeroDivisionError):
                levels = book.bids if side is Side.SELL else book.asks
                reference = levels[-1].price if levels else lead.vwap
            bound = self._bound(lead, reference, side, cfg.max_hedge_slippage_bps)
            if not lead.venue.tradable(plan.symbol, excess, bound):
                log.warning("[EXEC] %s %s: the unhedged %s on %s is below the venue's minimum order: left as "
                            "residual", plan.purpose, plan.symbol, gap * lead.qty, lead.venue.name)
                return
            log.warning("[EXEC] %s %s: unwinding %s on %s (%s @ %s)", plan.purpose, plan.symbol, excess,
                        lead.venue.name, side.value, bound)
            order = self._new(plan, lead, "unwind", side, excess, bound)
            await self._send(order)
            await self._settle(order)
            gap = lead.frac - lag.frac
            if self._significant(plan, lead, lag, gap):
                await self.sleep(cfg.hedge_retry_interval_seconds)

    def _significant(self, plan: HedgePlan, lead: Leg, lag: Leg, gap: Decimal) -> bool:
        """Is ``gap`` (a fraction of the hedge) more than one lot step on either venue?"""
        if gap <= 0:
            return False
        steps = [r.step_size for r in (lead.venue.rules(plan.symbol), lag.venue.rules(plan.symbol)) if r]
        dust = min(steps) if steps else _DUST
        return gap * plan.qty >= dust

    # ---------------------------------------------------------------------------------------------- orders
    async def _persist(self, *orders: ManagedOrder, count: bool = True) -> None:
        """The current state of ``orders``, durable before returning: one ``write_order_states`` for all of them
        (docs/LIVE.md, "Durability"). A local write (``storage.order_states_local``: the kernel writer's order
        journal) runs on the loop; anything else in a worker thread, bounded by ``live.persist_timeout_seconds``."""
        now = self.now()
        records = [order.record(now, self.simulated, self.instance_id) for order in orders]
        if self._inline:
            self.storage.write_order_states(records)
        else:
            await asyncio.wait_for(asyncio.to_thread(self.storage.write_order_states, records),
                                   self.cfg.persist_timeout_seconds)
        if count and self.metrics is not None:
            for order in orders:
                self.metrics.orders.labels(exchange=order.exchange, status=order.state.value).inc()

    async def _move(self, order: ManagedOrder, state: S, venue_order: Any = None, note: str = "") -> None:
        """One state change: applied, written to storage, logged (one line)."""
        was = order.state
        order.move(state, venue_order, note)
        if order.final:
            self.live_orders.pop(order.client_order_id, None)
        else:
            self.live_orders[order.client_order_id] = order
        before = self.risk.unresolved
        if self.count_unresolved() != before:
            self.risk.publish()
        try:
            await self._persist(order)
        except Exception as exc:
            log.error("[EXEC] %s: state %s NOT stored (%s: %s)", order.describe(), state.value,
                      type(exc).__name__, exc)
            if was is S.NEW:
                raise
        v = order.venue_order
        fills = ""
        if v is not None and v.filled_qty:
            fee = f", fee {v.fee} {v.fee_currency}" if v.fee else ""
            fills = f" {v.filled_qty} @ {v.avg_price}{fee}" if state is S.FILLED else \
                f", filled {v.filled_qty} @ {v.avg_price}{fee}"
        log.info("[EXEC] %s: %s%s%s", order.describe(), state.value, fills, f" ({note})" if note else "")

    async def _mark_sent(self, orders: list[ManagedOrder], *,
                         announce: Callable[[], None] | None = None) -> bool:
        """Move ``orders`` to ``sent`` and store it (one write) before any request leaves; False (and the orders
        ``rejected``, never sent) when the storage does not take it. ``announce`` (a log line): the caller calls
        :meth:`_announce_sent` once the requests are on their way; else the ``sent`` lines are logged here."""
        for order in orders:
            cid = order.client_order_id
            if cid in self.used_ids:
                raise DuplicateClientOrderId(f"client order id {cid} was sent before")
            self.used_ids.add(cid)
            order.move(S.SENT)
            self.live_orders[cid] = order
        self.count_unresolved()
        try:
            await self._persist(*orders, count=announce is None)
        except Exception as exc:
            if announce is not None:
                announce()
            for order in orders:
                order.move(S.REJECTED, note=f"not sent: storage did not take its state ({type(exc).__name__})")
                self.live_orders.pop(order.client_order_id, None)
                log.error("[EXEC] %s: not sent: its state could not be stored (%s: %s)", order.describe(),
                          type(exc).__name__, exc)
            self.count_unresolved()
            self.risk.publish()
            return False
        if announce is None:
            self._announce_sent(orders, None)
        return True

    def _announce_sent(self, orders: list[ManagedOrder], announce: Callable[[], None] | None) -> None:
        """The log lines, counters and gauges of ``orders`` going out (after ``announce``, the hedge's line)."""
        if announce is not None:
            announce()
            if self.metrics is not None:
                for order in orders:
                    self.metrics.orders.labels(exchange=order.exchange, status=S.SENT.value).inc()
        self.risk.publish()
        for order in orders:
            log.info("[EXEC] %s: sent", order.describe())

    async def _send(self, order: ManagedOrder, *, marked: bool = False,
                    answered: Callable[[], None] | None = None) -> None:
        """``sent`` written (unless ``marked`` already), then the request; the answer (or ``unknown``, or
        ``rejected``) written. ``answered`` is called first thing when the venue's answer (or error) is in."""
        cid = order.client_order_id
        venue = self.venues[order.exchange]
        if not marked and not await self._mark_sent([order]):
            return
        request = OrderRequest(order.symbol, order.side, OrderType.LIMIT, cid, qty=order.qty, price=order.price,
                               time_in_force="IOC", test=self.cfg.dry_run)
        deadline = self.clock() + self.cfg.hedge_timeout_seconds
        backoff = self.cfg.rate_limit_backoff_seconds
        order.sent_at = self.clock()
        while True:
            try:
                try:
                    answer = await venue.trading.place_order(request)
                finally:
                    if answered is not None:
                        answered()
            except (OrderRejected, InvalidRequest, AuthenticationError) as exc:
                await self._move(order, S.REJECTED, note=f"{exc.kind}: {exc}")
                return
            except (RateLimited, Banned) as exc:  # refused before acting: the same request may go again
                wait = exc.retry_after if exc.retry_after is not None else backoff
                backoff = min(backoff * 2, 30.0)
                if self.clock() + wait > deadline:
                    await self._move(order, S.REJECTED, note=f"{exc.kind}: not placed; no time left to resend")
                    return
                log.warning("[EXEC] %s: %s (%s): not placed; the same request goes again in %.2fs",
                            order.describe(), exc.kind, exc, wait)
                await self.sleep(wait)
                order.sent_at = self.clock()
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # sent, answer lost: unknown until a lookup says
                kind = exc.kind if isinstance(exc, ExchangeError) else type(exc).__name__
                await self._move(order, S.UNKNOWN, note=f"{kind}: {exc}; looking it up by client id")
                return
            if self.cfg.dry_run:
                await self._move(order, S.CANCELED, answer,
                                 note="dry run: the venue's test endpoint accepted it; nothing placed")
                return
            await self._move(order, status_of(answer), answer)
            return

    async def _settle(self, order: ManagedOrder) -> None:
        """Look ``order`` up by client id until it is final (cancel it if the venue keeps an IOC open)."""
        cfg = self.cfg
        venue = self.venues[order.exchange]
        interval = cfg.lookup_interval_seconds
        open_since: float | None = None
        canceled = False
        while not order.final:
            await self.sleep(interval)
            try:
                answer = await venue.trading.fetch_order(order.symbol, order.client_order_id)
            except UnknownOrder:
                waited = self.clock() - order.sent_at
                if waited < cfg.not_found_seconds:
                    continue
                if order.state is S.UNKNOWN:
                    await self._move(order, S.REJECTED,
                                     note=f"the venue does not know it {waited:.1f}s after sending: never placed")
                else:  # shown open before, now forgotten: closed with what it had filled
                    await self._move(order, S.CANCELED, note="the venue no longer knows it: closed as last seen")
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("[EXEC] %s: lookup failed (%s: %s); trying again", order.describe(),
                            type(exc).__name__, exc)
                interval = min(interval * 2, 5.0)
                continue
            state = status_of(answer)
            if state != order.state or answer.filled_qty != order.filled_qty:
                await self._move(order, state, answer)
            if order.final:
                return
            if open_since is None:
                open_since = self.clock()
            elif not canceled and self.clock() - open_since >= cfg.not_found_seconds:
                canceled = True
                await self._cancel(order, "an IOC order the venue still shows open")

    async def _cancel(self, order: ManagedOrder, why: str) -> None:
        venue = self.venues[order.exchange]
        try:
            answer = await venue.trading.cancel_order(order.symbol, order.client_order_id)
        except UnknownOrder:
            log.info("[EXEC] %s: cancel (%s): the venue no longer has it open", order.describe(), why)
            return
        except Exception as exc:
            log.warning("[EXEC] %s: cancel (%s) failed (%s: %s)", order.describe(), why, type(exc).__name__, exc)
            return
        state = status_of(answer)
        if state != order.state or answer.filled_qty != order.filled_qty:
            await self._move(order, state, answer, note=f"canceled: {why}")

    # ---------------------------------------------------------------------------------------------- report
    def _finish(self, plan: HedgePlan, report: HedgeReport) -> HedgeReport:
        d, f = plan.legs
        now = self.now()
        changes: Changes = {}
        for leg in plan.legs:
            for order in leg.orders:
                report.orders.append(order.record(now, self.simulated, self.instance_id))
                trade = order.trade(self.ids(), now)
                if trade is not None:
                    report.trades.append(trade)
                for key, amount in order.changes().items():
                    changes[key] = changes.get(key, ZERO) + amount
        report.changes = changes
        report.finished_at = now
        steps = [r.step_size for r in (d.venue.rules(plan.symbol), f.venue.rules(plan.symbol)) if r]
        step = max(steps) if steps else _DUST
        hedged = max(min(d.frac, f.frac), ZERO) * plan.qty
        # within one lot step of the whole: nothing finer can be traded, the rest is coin residue
        report.hedged_qty = plan.qty if plan.qty - hedged < step else \
            (hedged / step).to_integral_value(rounding=ROUND_DOWN) * step
        report.domestic_price, report.foreign_price = d.avg_price(), f.avg_price()
        lead, lag = (d, f) if d.frac >= f.frac else (f, d)
        gap = lead.frac - lag.frac
        if self._significant(plan, lead, lag, gap):
            sign = Decimal(1) if lead.side is Side.BUY else Decimal(-1)
            report.residual = sign * gap * plan.qty
            report.residual_venue = lead.venue.name
        if report.status != "rehearsed":
            filled_any = any(o.filled_qty for leg in plan.legs for o in leg.orders)
            if any(not o.final for leg in plan.legs for o in leg.orders):
                report.status = "unresolved"
            elif not filled_any:
                report.status = "rejected"
            elif report.hedged_qty >= plan.qty:
                report.status = "filled"
            elif report.hedged_qty > 0:
                report.status = "partial"
            else:
                report.status = "unwound"
        if not report.reason:
            notes = [o.note for leg in plan.legs for o in leg.orders if o.note]
            report.reason = "; ".join(notes[-2:])
        for (venue, asset), amount in changes.items():
            wallet = self.wallets.get(venue)
            if wallet is not None:
                wallet.balances[asset] = wallet.get(asset) + amount
        # ":f": plain decimal text whatever the exponent arithmetic left ("0", not "0E+3")
        residual = f" residual {report.residual:f} {plan.symbol} on {report.residual_venue}" if report.residual else ""
        line = (f"[EXEC] {plan.purpose} {plan.direction.value} {plan.symbol} {plan.position_id}: {report.status}, "
                f"hedged {report.hedged_qty:f} of {plan.qty:f} ({d.venue.name} {d.filled - d.unwound:f}, "
                f"{f.venue.name} {f.filled - f.unwound:f}){residual}")
        (log.info if report.status in ("filled", "rehearsed") else log.warning)(line)
        # the decision's domestic VWAP; a hedge the reconciliation settled has the domestic order's price bound
        book = d.book
        mid = (book.bids[0].price + book.asks[0].price) / 2 if book.bids and book.asks else None
        mark = self.marks.get(plan.symbol) or d.vwap or report.domestic_price or mid
        trip = self.risk.after_hedge(report, mark)
        if trip is not None:
            self.trip(trip)
        return report
