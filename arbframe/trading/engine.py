"""One engine tick: quotes -> spreads -> decisions -> fills -> storage, cache, metrics, plugin events.

The engine is synchronous and does no network I/O: the runner (live/paper) or the backtest replayer gathers a
:class:`MarketSnapshot` (books of both venues for every symbol, the domestic KRW-USDT book when known, the
USD/KRW rate) and hands it to :meth:`Engine.process`. Inside, :meth:`Engine.decide_symbol` is the pure decision
path (premium math + strategy on plain objects); fills go through :class:`arbframe.trading.paper.PaperExecutor`; records
go to the :class:`~arbframe.Storage` (buffered), the tick's live state to the :class:`~arbframe.Cache` in one
``write_tick`` call, numbers to :class:`arbframe.trading.statistics.TradingMetrics`, and events to plugins through the
kernel's isolated ``notify``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import ROUND_CEILING, Decimal
from typing import Any

from arbframe.core.errors import InsufficientFunds
from arbframe.core.models import (
    ZERO,
    Direction,
    ErrorRecord,
    FxRate,
    MarketRules,
    OrderBook,
    Position,
    PositionStatus,
    Side,
    Spread,
)
from arbframe.execution.base import Executor, HedgeReport
from arbframe.kernel.interfaces import Cache, Storage
from arbframe.trading.accounting import (
    Changes,
    EquityBreakdown,
    FeeSchedule,
    Ledger,
    Valuation,
    decode_changes,
    encode_changes,
    merge,
    value_of,
    wallet_balances,
)
from arbframe.trading.marketdata import MarketDataGuard
from arbframe.trading.paper import InsufficientLiquidity, LegResult, LegSpec, PaperExecutor, PaperWallet
from arbframe.trading.premium import (
    PREMIUM_QUANTUM,
    PremiumCalculator,
    PremiumQuote,
    exit_prices,
    fx_age,
    penalized_vwap,
    premium_at,
    top_price,
    usdt_mid,
)
from arbframe.trading.statistics import TradingMetrics, TradingStats
from arbframe.trading.strategy import CloseDecision, OpenDecision, PortfolioView, Strategy, StrategyConfig

log = logging.getLogger("arbframe.engine")

ONE = Decimal(1)
TWO = Decimal(2)
_STEP = Decimal("0.00000001")
BookKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class MarketSnapshot:
    """Everything one tick looks at. ``books`` maps (exchange, symbol) -> book; KRW-USDT is (domestic, "USDT")."""

    ts: datetime
    books: Mapping[BookKey, OrderBook]
    fx: FxRate | None
    simulated: bool = False


class SymbolDecision:
    """What the decision path concluded for one symbol in one tick."""

    __slots__ = ("blocked", "closes", "marks", "open", "quotes", "symbol")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.quotes: list[PremiumQuote] = _EMPTY
        self.closes: list[CloseDecision] = _EMPTY
        self.open: OpenDecision | None = None
        self.blocked: str | None = None
        self.marks: dict[str, Decimal] = _NO_MARKS  # position id -> unrealized PnL (KRW); replaced when set


_EMPTY: list[Any] = []  # shared, never mutated: SymbolDecision lists are replaced, not appended to
_NO_MARKS: dict[str, Decimal] = {}  # shared, never mutated (pop on it finds nothing)
_UNSEEN = object()  # a symbol whose entry state was never noted
_perf_counter = time.perf_counter


@dataclass
class TickResult:
    ts: datetime
    quotes: list[PremiumQuote] = field(default_factory=list)  # every symbol and direction, every tick
    spreads: list[Spread] = field(default_factory=list)  # the records made from them (when materialized)
    opened: list[Position] = field(default_factory=list)
    closed: list[Position] = field(default_factory=list)
    errors: list[ErrorRecord] = field(default_factory=list)
    duration_seconds: float = 0.0


def entry_changes(position: Position, quotes: Mapping[str, str]) -> Changes:
    """The balance changes of a position's entry legs: its ``balance_changes`` column, or (a record written before
    that column existed) rebuilt from its prices with fees in the quote currencies."""
    if position.balance_changes:
        return decode_changes(position.balance_changes)
    q = position.qty
    sign = 1 if position.direction is Direction.KIMCHI else -1  # kimchi sold domestic, bought foreign
    d, f = position.domestic_exchange, position.foreign_exchange
    fee_f = position.entry_fees_krw / position.entry_fx_rate / 2 if position.entry_fx_rate else ZERO
    return {
        (d, position.symbol): -sign * q,
        (d, quotes.get(d, "KRW")): sign * q * position.entry_domestic_price - position.entry_fees_krw / 2,
        (f, position.symbol): sign * q,
        (f, quotes.get(f, "USDT")): -sign * q * position.entry_foreign_price - fee_f,
    }


def _sums(changes: Mapping[tuple[str, str], Decimal], symbol: str, priced: Mapping[str, Decimal]
          ) -> tuple[Decimal, Decimal, Decimal]:
    """(KRW, USD units, coin) of ``changes``: the three buckets a valuation multiplies by 1, the rate, the mark."""
    krw = usd = coin = ZERO
    for (_venue, asset), amount in changes.items():
        if asset == "KRW":
            krw += amount
        elif asset == "USDT" or asset == "USD":
            usd += amount
        elif asset == symbol:
            coin += amount
        elif asset in priced:
            usd += amount * priced[asset]
    return krw, usd, coin


def _coin(changes: Mapping[tuple[str, str], Decimal], symbol: str) -> Decimal:
    return sum((amount for (_venue, asset), amount in changes.items() if asset == symbol), ZERO)


@dataclass
class _Pending:
    """An entry or a close handed to a deferred executor, until its report arrives (counts for the limits)."""

    symbol: str
    qty: Decimal
    price: Decimal
    purpose: str = "open"
    net_premium: Decimal | None = None

    @property
    def entry_domestic_price(self) -> Decimal:
        return self.price


class Engine:
    """The trading core for one venue pair (see the module docstring)."""

    def __init__(
        self,
        cfg: StrategyConfig,
        *,
        storage: Storage,
        fee_domestic: Decimal,
        fee_foreign: Decimal,
        rules: Mapping[BookKey, MarketRules],
        quote_currencies: Mapping[str, str],
        wallets: Mapping[str, PaperWallet],
        ids: Callable[[], str],
        cache: Cache | None = None,
        service_name: str = "bot_service",
        cache_ttl_seconds: int = 60,
        spread_ttl_seconds: int = 60,
        publish_fx: bool = True,
        metrics: TradingMetrics | None = None,
        notify: Callable[..., Any] | None = None,
        simulated: bool = False,
        log_spreads: bool = True,
        spread_log_interval_seconds: float = 0.0,
        spread_listeners: bool = True,
        observe_tick_seconds: bool = True,
        fees: Mapping[str, FeeSchedule] | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.cfg = cfg
        self.strategy = Strategy(cfg)
        self.storage = storage
        self.cache = cache
        self.service_name = service_name
        self.cache_ttl = cache_ttl_seconds
        self.spread_ttl = spread_ttl_seconds
        self.publish_fx = publish_fx
        self.metrics = metrics
        self.notify = notify
        self.simulated = simulated
        self.log_spreads = log_spreads
        self.spread_log_interval = float(spread_log_interval_seconds)
        self.spread_listeners = spread_listeners
        # False when the caller times the whole tick itself (the service adds the storage flush to it)
        self.observe_tick_seconds = observe_tick_seconds
        self._last_spread_log: datetime | None = None
        self.spread_logs = 0  # ticks that recorded their spreads (a replay logs the FX rate they used)
        self.domestic = cfg.domestic
        self.foreign = cfg.foreign
        fees = dict(fees or {})
        self.fees = {
            self.domestic: fees.get(self.domestic) or FeeSchedule.flat(fee_domestic),
            self.foreign: fees.get(self.foreign) or FeeSchedule.flat(fee_foreign),
        }
        # the premium math charges each venue its average side rate twice (open and close)
        self.fee_domestic = self.fees[self.domestic].round_trip / 2
        self.fee_foreign = self.fees[self.foreign].round_trip / 2
        self.rules = dict(rules)
        self.quote = dict(quote_currencies)
        self.ids = ids
        self.calc = PremiumCalculator(
            self.domestic, self.foreign, self.fee_domestic, self.fee_foreign, ids,
            safety_margin=cfg.safety_margin, directions=cfg.directions,
        )
        # paper fills unless another executor is given (live: arbframe.execution.live.LiveExecutor)
        self.executor: Any = executor if executor is not None else PaperExecutor(wallets, ids, simulated=simulated)
        self._pending: dict[str, _Pending] = {}  # position id -> entry or close a deferred executor is working on
        self.stats = TradingStats(cfg.timezone)
        self.positions: dict[str, Position] = {}
        self._history_ids: set[str] = set()
        self._changes: dict[str, Changes] = {}  # open position id -> what its entry legs changed
        self._entry_sums: dict[str, tuple[Decimal, Decimal, Decimal]] = {}  # id -> _sums of those changes
        self.priced: dict[str, Decimal] = {}  # fee assets priced in USDT (BNB) -> price
        for venue, schedule in self.fees.items():
            for side_fee in (schedule.buy, schedule.sell):
                if side_fee.asset not in ("quote", "base"):
                    if self.quote.get(venue) != "USDT":
                        raise ValueError(f"{venue}: a fee paid in {side_fee.asset} needs a USDT venue")
                    self.priced[side_fee.asset] = side_fee.asset_price  # type: ignore[assignment]
        self.ledger = Ledger(self.priced)
        self._marks: dict[str, Decimal] = {}  # symbol -> coin mark in KRW (mid of the domestic book)
        self._mark_books: dict[str, OrderBook] = {}  # symbol -> domestic book whose mid is the newer mark
        self.guard = MarketDataGuard(cfg.max_book_age_seconds)
        self._data_blocked: dict[str, str | None] = {}  # symbol -> reason of the last tick (logged on change)
        self.data_blocked_symbols = 0  # how many symbols the last tick blocked
        self._last_marks: dict[str, Decimal] = {}  # position id -> last unrealized PnL (kept while blocked)
        self._close_failed: dict[str, str] = {}  # position id -> last close failure (recorded once per change)
        self._close_waits: dict[str, tuple[str, str]] = {}  # position id -> (close reason, block) logged
        # a replay that skipped snapshots brings marks up to date through this, when a tick needs the old ones
        self.sync_hook: Callable[[], None] | None = None
        # (venue, side) -> (KRW per notional, USD per notional, coin per quantity) of a fill, fee included
        self._leg_coef = {(venue, side): self._coefficients(venue, side)
                          for venue in (self.domestic, self.foreign) for side in (Side.BUY, Side.SELL)}
        self.last_entry: dict[str, datetime] = {}
        self.ticks = 0
        self.event_ticks = 0  # event-driven evaluations of some symbols (process(snap, symbols))
        self.last_fx: FxRate | None = None
        self._blocked: dict[str, str | None] = {}
        #: venue -> why it cannot trade yet (rules, balances or books still loading); the service keeps it current
        #: and logs the reason itself, so the per-symbol block lines leave it out
        self.unready: dict[str, str] = {}
        self._fx_stale_logged = False
        self._last_fresh: bool | None = None  # FX freshness of the previous tick (_note_fx acts on changes)
        self._step: dict[str, Decimal] = {}
        for sym in cfg.symbols:
            steps = [r.step_size for (venue, s), r in self.rules.items() if s == sym]
            self._step[sym] = max(steps) if steps else Decimal("0.00000001")
        self._premium_children: dict[tuple[str, Direction], tuple[Any, Any]] = {}
        if metrics is not None:
            metrics.simulated.set(1 if simulated else 0)

    # --------------------------------------------------------------------------------------------- state
    @property
    def open_notional_krw(self) -> Decimal:
        return sum((p.qty * p.entry_domestic_price for p in self.positions.values()), ZERO)

    def view(self) -> PortfolioView:
        return PortfolioView(self.positions, None, self.last_entry, self.stats.daily_pnl())

    def resume(self, positions: list[Position]) -> list[Position]:
        """Take over open positions loaded from storage (each id once); what their entry legs changed is re-applied
        to the paper wallets, so the wallets hold what they held before the stop. Returns the positions taken over."""
        taken = []
        for position in positions:
            if not position.is_open or position.id in self.positions:
                continue
            if position.domestic_exchange != self.domestic or position.foreign_exchange != self.foreign:
                log.warning("[BOT] not resuming position %s: venues %s/%s are not configured",
                            position.id, position.domestic_exchange, position.foreign_exchange)
                continue
            self.positions[position.id] = position
            changes = entry_changes(position, self.quote)
            self._track_open(position, changes)
            self._apply_changes(changes)
            last = self.last_entry.get(position.symbol)
            if last is None or position.opened_at > last:
                self.last_entry[position.symbol] = position.opened_at
            taken.append(position)
        self.stats.open_positions = len(self.positions)
        return taken

    def restore_history(self, positions: list[Position]) -> int:
        """Feed closed positions loaded from storage into the PnL totals and their balance changes (cash and fees
        of both legs, open and close) into the paper wallets, each id once; returns how many."""
        seen = self._history_ids
        count = 0
        for p in positions:
            if p.is_open or p.realized_pnl_krw is None or p.id in seen:
                continue
            seen.add(p.id)
            self.stats.record_close(p)
            if p.balance_changes:
                self._apply_changes(decode_changes(p.balance_changes))
            if p.close_reason == "stop" and p.closed_at is not None:
                last = self.last_entry.get(p.symbol)
                if last is None or p.closed_at > last:
                    self.last_entry[p.symbol] = p.closed_at
            count += 1
        if count and self.metrics is not None:
            self.metrics.trades.inc(count)
        return count

    def _apply_changes(self, changes: Mapping[tuple[str, str], Decimal]) -> None:
        if self.executor.deferred:  # live: the wallets are the venues' own balances, history included
            return
        wallets = self.executor.wallets
        for (venue, asset), amount in changes.items():
            wallet = wallets.get(venue)
            if wallet is not None:
                wallet.balances[asset] = wallet.get(asset) + amount

    def _track_open(self, position: Position, changes: Changes) -> None:
        self._changes[position.id] = changes
        self._entry_sums[position.id] = _sums(changes, position.symbol, self.priced)

    # ------------------------------------------------------------------------------------------ decisions
    def fx_fresh(self, fx: FxRate | None, now: datetime) -> bool:
        return fx is not None and fx.age_seconds(now) <= self.cfg.max_fx_age_seconds

    def _book_fresh(self, book: OrderBook, now: datetime) -> bool:
        limit = self.cfg.max_book_age_seconds
        return limit is None or (now - book.ts).total_seconds() <= limit

    def decide_symbol(
        self,
        symbol: str,
        snap: MarketSnapshot,
        *,
        fx_fresh: bool | None = None,
        usdt: Decimal | bool | None = False,
    ) -> SymbolDecision:
        """The pure decision path for one symbol: spreads, closes, at most one open. No state changes.

        ``usdt`` is the KRW-USDT mid when the caller already knows it (``False``: read it from ``snap``). The books
        are taken as checked (:class:`~arbframe.trading.marketdata.MarketDataGuard`, in :meth:`process`).
        """
        out = SymbolDecision(symbol)
        fx = snap.fx
        books = snap.books
        dom = books.get((self.domestic, symbol))
        fgn = books.get((self.foreign, symbol))
        if fx is None or dom is None or fgn is None:
            out.blocked = self._venue_block() or "missing book or FX rate"
            return out
        d_bids = dom.bids
        if not d_bids or not dom.asks or not fgn.bids or not fgn.asks:
            out.blocked = "missing book or FX rate"
            return out
        now = snap.ts
        rate = fx.rate
        if fx_fresh is None:
            fx_fresh = self.fx_fresh(fx, now)
        if usdt is False:
            usdt = usdt_mid(books.get((self.domestic, "USDT"))) if self.cfg.use_tether else None
        strategy = self.strategy
        best_bid = top_price(d_bids)
        qty = strategy.order_qty(best_bid, self._step.get(symbol) or _STEP)  # type: ignore[arg-type]
        if qty > 0:
            out.quotes = quotes = self.calc.quotes(symbol, dom, fgn, qty, rate, usdt)  # type: ignore[arg-type]
        else:
            quotes = _EMPTY
        # closes and marks of the open positions on this symbol
        if self.positions:
            closes = []
            marks = None
            mark = ZERO
            for position in self.positions.values():
                if position.symbol != symbol:
                    continue
                prices = exit_prices(position.direction, dom, fgn, position.qty)
                close_prem = None
                if marks is None:
                    marks = out.marks = {}
                    mark = (best_bid + top_price(dom.asks)) / TWO  # type: ignore[operator]
                if prices is not None:
                    close_prem = premium_at(position.direction, prices[0], prices[1], rate)
                    marks[position.id] = self._mark(position, prices, rate, mark)
                else:  # too thin to close: the depth there is, plus a penalty for the rest
                    marks[position.id] = self._mark(position, self._thin_prices(position, dom, fgn), rate, mark)
                reason = strategy.close_reason(position, close_prem, now)
                if reason is not None:
                    closes.append(CloseDecision(position, reason, close_prem))
            if closes:
                out.closes = closes
        # entry: only a net premium at or above the threshold can open (best_entry would return None otherwise)
        if quotes:
            threshold = strategy.cfg.entry_threshold
            if quotes[0].net_premium >= threshold or (len(quotes) > 1 and quotes[1].net_premium >= threshold) \
                    or len(quotes) > 2:
                best = strategy.best_entry(quotes)
                if best is not None:
                    block = strategy.entry_block(best, self.view(), now, fx_fresh=fx_fresh)
                    if block is None and self.unready:
                        block = self._venue_block()
                    if block is None and self.executor.deferred:  # live: kill switch, risk limits, hedges
                        block = self.executor.entry_block(symbol)
                    if block is None:
                        out.open = OpenDecision(symbol, best.direction, best.qty, best)
                    else:
                        out.blocked = block
        return out

    def _thin_prices(self, p: Position, dom: OrderBook, fgn: OrderBook) -> tuple[Decimal, Decimal]:
        """Close prices of ``p`` on books too thin for its quantity (see :func:`penalized_vwap`)."""
        d_side = p.direction.domestic_side.opposite
        penalty = self.cfg.thin_book_penalty
        return (penalized_vwap(dom, d_side, p.qty, penalty), penalized_vwap(fgn, d_side.opposite, p.qty, penalty))

    def _coefficients(self, venue: str, side: Side) -> tuple[Decimal, Decimal, Decimal]:
        """(KRW per unit of notional, USD per unit of notional, coin per unit of quantity) a fill on ``venue`` of
        ``side`` changes, fee included: a priced fee asset (BNB) counts at its notional in USDT."""
        fee = self.fees[venue].side(side)
        quote = ONE if side is Side.SELL else -ONE
        coin = ONE if side is Side.BUY else -ONE
        usd_fee = ZERO
        if fee.asset == "quote":
            quote -= fee.rate
        elif fee.asset == "base":
            coin -= fee.rate
        else:
            usd_fee = -fee.rate
        if self.quote.get(venue) == "KRW":
            return quote, usd_fee, coin
        return ZERO, quote + usd_fee, coin

    def _mark(self, p: Position, prices: tuple[Decimal, Decimal], rate: Decimal, mark: Decimal) -> Decimal:
        """Unrealized PnL in KRW: the balance changes of the entry legs and of a close of ``p`` at ``prices`` now
        (fees in their assets, no lot rounding), valued at ``rate`` and the coin ``mark``."""
        krw, usd, coin = self._entry_sums[p.id]
        d_side = p.direction.domestic_side.opposite
        q = p.qty
        dk, du, dc = self._leg_coef[(self.domestic, d_side)]
        fk, fu, fc = self._leg_coef[(self.foreign, d_side.opposite)]
        d_notional = q * prices[0]
        f_notional = q * prices[1]
        return (krw + d_notional * dk + f_notional * fk + (usd + d_notional * du + f_notional * fu) * rate
                + (coin + q * (dc + fc)) * mark)

    # ----------------------------------------------------------------------------------------------- tick
    def process(self, snap: MarketSnapshot, symbols: Collection[str] | None = None) -> TickResult:
        """One tick over every configured symbol, or (``symbols``: an event-driven evaluation, see
        ``docs/ARCHITECTURE.md``) over those symbols only: decisions, fills and stats as in a full tick; open
        positions on the other symbols keep their last marks; no spread records, cache write or metrics publish
        (the interval tick does that housekeeping)."""
        t0 = _perf_counter()
        partial = symbols is not None
        now = snap.ts
        result = TickResult(now)
        executor = self.executor
        if not partial:  # paper: the liquidity consumed stays consumed until the next full tick (conservative)
            executor.begin_tick()
        if executor.deferred:  # live: what finished since the last tick goes into the books first
            self.settle_reports(snap, result)
        stats = self.stats
        stats.now = now
        fx = snap.fx
        if fx is not None and not self.ledger.started:
            self.ledger.start(wallet_balances(self.executor.wallets), fx.rate, self.marks, self._changes.values())
        fresh = fx is not None and fx.age_seconds(now) <= self.cfg.max_fx_age_seconds  # self.fx_fresh(fx, now)
        if fresh is not self._last_fresh or not fresh:
            self._note_fx(fx, now, fresh)
            self._last_fresh = fresh
        fx_problem = self.guard.check_fx(fx)
        unrealized = ZERO
        storage = self.storage
        usdt = self._usdt(snap) if self.cfg.use_tether else None
        quotes = result.quotes
        decide = self.decide_symbol
        blocked = self._blocked
        books = snap.books
        check = self.guard.check
        data_blocked = self._data_blocked
        last_marks = self._last_marks
        hook, self.sync_hook = self.sync_hook, None
        mark_books = self._mark_books
        if partial:
            wanted = symbols
            symbols = [s for s in self.cfg.symbols if s in wanted]  # type: ignore[operator]
            for position in self.positions.values():
                if position.symbol not in wanted:  # type: ignore[operator]
                    unrealized += last_marks.get(position.id, ZERO)
        else:
            symbols = self.cfg.symbols
        for symbol in symbols:
            dom = books.get((self.domestic, symbol))
            fgn = books.get((self.foreign, symbol))
            problem = fx_problem
            if dom is not None and fgn is not None:
                problem = check((dom, fgn), now) or problem
            if hook is not None and (problem is not None or dom is None or fgn is None):
                hook()  # this tick keeps marks of earlier ones: bring them up to date first
                hook = None
            if problem is not None or data_blocked.get(symbol) is not None:
                self._note_data(symbol, problem)
            if problem is not None:  # never traded on, not even to close: open positions keep their last mark
                for position in self.positions.values():
                    if position.symbol == symbol:
                        unrealized += last_marks.get(position.id, ZERO)
                        self._close_waits_for_data(position, problem[0], now)
                continue
            decision = decide(symbol, snap, fx_fresh=fresh, usdt=usdt)
            if dom is not None and dom.bids and dom.asks:
                mark_books[symbol] = dom  # the coin mark is its mid, computed when something reads it
            quotes.extend(decision.quotes)
            if decision.closes:
                for close in decision.closes:
                    if close.position.id in self._pending:  # its close is still with the executor
                        continue
                    closed = self._close(close, snap, result)
                    if closed is not None:
                        decision.marks.pop(closed.id, None)
                        last_marks.pop(closed.id, None)
            if decision.open is not None:
                opened = self._open(decision.open, snap, result)
                if opened is not None:  # marked at once, on the books it opened on (like the others this tick)
                    mark = last_marks[opened.id] = self._mark_on(opened, dom, fgn, fx.rate)  # type: ignore[arg-type,union-attr]
                    unrealized += mark
            if blocked.get(symbol, _UNSEEN) != decision.blocked:
                self._note_block(symbol, decision.blocked)
            marks = decision.marks
            if marks:
                for pid, mark in marks.items():
                    unrealized += mark
                    last_marks[pid] = mark
        if self.ledger._unmarked:  # coins get their starting mark on the first tick that marks them
            self.ledger.see_marks(self.marks)
        last_log = self._last_spread_log
        log_due = self.log_spreads and (
            last_log is None
            or self.spread_log_interval <= 0
            or (now - last_log).total_seconds() >= self.spread_log_interval
        )
        if partial:
            log_due = False
        if fx is not None and not partial and (log_due or self.spread_listeners or self.cache is not None):
            age = fx_age(fx, now)
            simulated = self.simulated or snap.simulated
            to_spread = self.calc.to_spread
            result.spreads = [to_spread(q, fx, now, simulated=simulated, age=age) for q in quotes]
            if log_due and quotes:
                self._last_spread_log = now
                self.spread_logs += 1
                for spread in result.spreads:
                    storage.log_spread(spread)
        if partial:
            self.event_ticks += 1
        else:
            self.ticks += 1
        stats.open_positions = len(self.positions)
        stats.unrealized_pnl_krw = unrealized
        if fx is not None:
            self.last_fx = fx
        if not partial and (self.metrics is not None or self.cache is not None
                            or (self.notify is not None and self.spread_listeners)):
            self._publish(snap, result, fresh)
        result.duration_seconds = _perf_counter() - t0
        if self.metrics is not None and self.observe_tick_seconds:
            self.metrics.tick_seconds.observe(result.duration_seconds)
        return result

    def _usdt(self, snap: MarketSnapshot) -> Decimal | None:
        """Mid of the domestic KRW-USDT book; None when it is missing, crossed or not positive at the top."""
        book = snap.books.get((self.domestic, "USDT"))
        if book is None:
            return None
        bid, ask = top_price(book.bids), top_price(book.asks)
        if bid is None or ask is None or not ZERO < bid < ask:
            return None
        return (bid + ask) / TWO

    # ------------------------------------------------------------------------------------------ accounting
    @property
    def marks(self) -> dict[str, Decimal]:
        """Symbol -> coin mark in KRW: the mid of the newest domestic book of each symbol that passed the checks."""
        pending = self._mark_books
        if pending:
            marks = self._marks
            for symbol, book in pending.items():
                marks[symbol] = (top_price(book.bids) + top_price(book.asks)) / TWO  # type: ignore[operator]
            pending.clear()
        return self._marks

    def valuation(self) -> Valuation | None:
        """The current FX rate and coin marks (None before the first FX rate)."""
        if self.last_fx is None:
            return None
        return self.ledger.valuation(self.last_fx.rate, self.marks)

    def breakdown(self) -> EquityBreakdown | None:
        """Equity now and its decomposition since the engine started (:class:`arbframe.trading.accounting.Ledger`)."""
        if self.sync_hook is not None:
            self.sync_hook()
            self.sync_hook = None
        if self.last_fx is None or not self.ledger.started:
            return None
        return self.ledger.breakdown(wallet_balances(self.executor.wallets), self.last_fx.rate, self.marks,
                                     self._changes.values(), self.stats.unrealized_pnl_krw)

    # ------------------------------------------------------------------------------------------ execution
    def _legs(self, direction: Direction, snap: MarketSnapshot, symbol: str, closing: bool, qty: Decimal
              ) -> tuple[LegSpec, LegSpec]:
        """Both legs of a hedge of ``qty``; a buy whose fee is taken from the coin is grossed up (to its venue's lot
        step, upwards) so that the coin it delivers covers what the other leg sells."""
        d_side = direction.domestic_side.opposite if closing else direction.domestic_side
        out = []
        for venue, side in ((self.domestic, d_side), (self.foreign, d_side.opposite)):
            fee = self.fees[venue].side(side)
            leg_qty = qty
            if side is Side.BUY and fee.asset == "base" and fee.rate:
                step = self.rules[(venue, symbol)].step_size if (venue, symbol) in self.rules else _STEP
                leg_qty = (qty / (ONE - fee.rate) / step).to_integral_value(rounding=ROUND_CEILING) * step
            out.append(LegSpec(snap.books[(venue, symbol)], side, fee, self.quote[venue], leg_qty))
        return out[0], out[1]

    @staticmethod
    def _fees_krw(legs: tuple[LegResult, ...], valuation: Valuation) -> Decimal:
        """The legs' fees, each in the asset it was paid in, valued at ``valuation``."""
        return sum((value_of({(leg.fill.exchange, leg.fill.fee_currency): leg.fill.fee}, valuation) for leg in legs),
                   ZERO)

    def _open(self, decision: OpenDecision, snap: MarketSnapshot, result: TickResult) -> Position | None:
        spread = decision.spread
        symbol = decision.symbol
        ex = self.executor
        qty, why = self.strategy.size_entry(
            spread, self.view(),
            domestic_rules=self.rules[(self.domestic, symbol)],
            foreign_rules=self.rules[(self.foreign, symbol)],
            domestic_free=ex.wallets[self.domestic].balances if self.domestic in ex.wallets else {},
            foreign_free=ex.wallets[self.foreign].balances if self.foreign in ex.wallets else {},
            domestic_quote=self.quote[self.domestic],
            foreign_quote=self.quote[self.foreign],
            fee_domestic=self.fee_domestic,
            fee_foreign=self.fee_foreign,
        )
        if why is not None:
            self._note_block(symbol, why)
            return None
        if snap.fx is None:
            return None
        rate = snap.fx.rate
        position_id = self.ids()
        legs = self._legs(spread.direction, snap, symbol, False, qty)
        if ex.deferred:
            self._send_entry(decision, snap, position_id, legs, qty)
            return None
        try:
            done = ex.execute(legs, qty, snap.ts, position_id)
        except (InsufficientFunds, InsufficientLiquidity) as exc:
            self._rejected(legs)
            self._error(result, "paper", f"entry on {symbol} not filled: {exc}", kind="fill")
            return None
        d_leg, f_leg = done
        changes = merge(d_leg.changes, f_leg.changes)
        valuation = self.ledger.valuation(rate, self.marks)
        self._record_legs(done)
        return self._opened(position_id, symbol, spread.direction, qty, snap.ts, rate, d_leg.fill.avg_price,
                            f_leg.fill.avg_price, changes, self._fees_krw(done, valuation), snap, result,
                            net_premium=spread.net_premium)

    def _opened(self, position_id: str, symbol: str, direction: Direction, qty: Decimal, ts: datetime,
                rate: Decimal, d_price: Decimal, f_price: Decimal, changes: Changes, fees_krw: Decimal,
                snap: MarketSnapshot, result: TickResult, *, net_premium: Decimal | None = None) -> Position:
        """A position whose entry legs filled (paper fills or a live hedge's report): recorded and announced."""
        position = Position(
            id=position_id,
            symbol=symbol,
            direction=direction,
            status=PositionStatus.OPEN,
            opened_at=ts,
            qty=qty,
            domestic_exchange=self.domestic,
            foreign_exchange=self.foreign,
            entry_domestic_price=d_price,
            entry_foreign_price=f_price,
            entry_fx_rate=rate,
            entry_premium=premium_at(direction, d_price, f_price, rate).quantize(PREMIUM_QUANTUM),
            entry_fees_krw=fees_krw,
            simulated=self.simulated or snap.simulated,
            balance_changes=encode_changes(changes),
            coin_residue=_coin(changes, symbol),
        )
        self.positions[position_id] = position
        self._track_open(position, changes)
        self.last_entry[symbol] = ts
        self.storage.log_position_open(position)
        result.opened.append(position)
        net = f" net={float(net_premium) * 100:.3f}%" if net_premium is not None else ""
        log.info(
            "[BOT] OPEN %s %s qty=%s premium=%.3f%%%s fx=%s (%s)%s",
            position.direction.value, symbol, qty, float(position.entry_premium) * 100, net, rate,
            snap.fx.source if snap.fx else "?", self._sim_note(snap),
        )
        if self.notify is not None:
            self.notify("arbframe_on_position_opened", position=position)
        return position

    def _close(self, decision: CloseDecision, snap: MarketSnapshot, result: TickResult) -> Position | None:
        p = decision.position
        fx = snap.fx
        if fx is None:
            return None
        rate = fx.rate
        legs = self._legs(p.direction, snap, p.symbol, True, p.qty)
        if self.executor.deferred:
            self._send_close(decision, snap, legs)
            return None
        try:
            done = self.executor.execute(legs, p.qty, snap.ts, p.id)
        except (InsufficientFunds, InsufficientLiquidity) as exc:
            message = f"close ({decision.reason}) of {p.symbol} position {p.id} not filled: {exc}"
            if self._close_failed.get(p.id) != message:  # once per change: a thin book may last many ticks
                self._close_failed[p.id] = message
                self._rejected(legs)
                self._error(result, "paper", message, kind="fill")
            return None
        self._close_failed.pop(p.id, None)
        self._close_waits.pop(p.id, None)
        d_leg, f_leg = done
        valuation = self.ledger.valuation(rate, self.marks)
        self._record_legs(done)
        return self._closed(p, decision.reason, snap.ts, rate, d_leg.fill.avg_price, f_leg.fill.avg_price,
                            (d_leg.changes, f_leg.changes), self._fees_krw(done, valuation), snap, result)

    def _closed(self, p: Position, reason: str, ts: datetime, rate: Decimal, d_price: Decimal, f_price: Decimal,
                close_changes: tuple[Changes, ...], fees_krw: Decimal, snap: MarketSnapshot, result: TickResult
                ) -> Position:
        """``p`` closed by legs that changed ``close_changes`` (one mapping per leg, or one for a whole live
        hedge): realized, recorded and announced."""
        changes = merge(self._changes.pop(p.id), *close_changes)
        self._entry_sums.pop(p.id, None)
        valuation = self.ledger.valuation(rate, self.marks)
        realized = value_of(changes, valuation)
        self.ledger.close(changes, rate, self.marks, realized)
        closed = replace(
            p,
            status=PositionStatus.CLOSED,
            closed_at=ts,
            exit_domestic_price=d_price,
            exit_foreign_price=f_price,
            exit_fx_rate=rate,
            exit_premium=premium_at(p.direction, d_price, f_price, rate).quantize(PREMIUM_QUANTUM),
            exit_fees_krw=fees_krw,
            realized_pnl_krw=realized,
            close_reason=reason,
            balance_changes=encode_changes(changes),
            coin_residue=_coin(changes, p.symbol),
            exit_coin_mark_krw=self.marks.get(p.symbol),
        )
        del self.positions[p.id]
        if reason == "stop":  # the cooldown after a stop-loss counts from the close
            self.last_entry[p.symbol] = ts
        self.storage.log_position_close(closed)
        self.stats.record_close(closed)
        if self.metrics is not None:
            self.metrics.trades.inc()
        result.closed.append(closed)
        log.info(
            "[BOT] CLOSE %s %s qty=%s reason=%s exit_premium=%.3f%% pnl=%s₩%s",
            p.direction.value, p.symbol, p.qty, reason, float(closed.exit_premium or 0) * 100,
            f"{realized.quantize(ONE):,}", self._sim_note(snap),
        )
        if self.notify is not None:
            self.notify("arbframe_on_position_closed", position=closed)
        return closed

    # ----------------------------------------------------------------------------------- deferred execution
    def _send_entry(self, decision: OpenDecision, snap: MarketSnapshot, position_id: str,
                    legs: tuple[LegSpec, LegSpec], qty: Decimal) -> None:
        """Hand an entry to a deferred executor (live): its report is recorded on a later tick."""
        symbol = decision.symbol
        notional = qty * decision.spread.domestic_price
        pending = [_Pending(symbol, e.qty, e.price) for e in self._pending.values() if e.purpose == "open"]
        block = self.executor.entry_block(symbol, notional, legs=legs,
                                          positions=[*self.positions.values(), *pending])
        if block is not None:
            self._note_block(symbol, block)
            return None
        self._pending[position_id] = _Pending(symbol, qty, decision.spread.domestic_price, "open",
                                              decision.spread.net_premium)
        self.last_entry[symbol] = snap.ts
        log.info("[BOT] ENTRY %s %s qty=%s net=%.3f%%: orders going to %s and %s (position %s)",
                 decision.direction.value, symbol, qty, float(decision.spread.net_premium) * 100, self.domestic,
                 self.foreign, position_id)
        self.executor.execute(legs, qty, snap.ts, position_id, purpose="open", direction=decision.direction)
        return None

    def _send_close(self, decision: CloseDecision, snap: MarketSnapshot, legs: tuple[LegSpec, LegSpec]) -> None:
        p = decision.position
        self._pending[p.id] = _Pending(p.symbol, p.qty, p.entry_domestic_price, "close")
        log.info("[BOT] EXIT %s %s qty=%s reason=%s: orders going to %s and %s (position %s)", p.direction.value,
                 p.symbol, p.qty, decision.reason, self.domestic, self.foreign, p.id)
        self.executor.execute(legs, p.qty, snap.ts, p.id, purpose="close", direction=p.direction,
                              reason=decision.reason)

    def close_all(self, snap: MarketSnapshot, result: TickResult, reason: str = "kill") -> int:
        """Close every open position not already closing (the kill switch's ``--flatten``); returns how many."""
        count = 0
        for p in list(self.positions.values()):
            if p.id in self._pending:
                continue
            if (self.domestic, p.symbol) not in snap.books or (self.foreign, p.symbol) not in snap.books:
                continue
            self._close(CloseDecision(p, reason, None), snap, result)
            count += 1
        return count

    def settle_reports(self, snap: MarketSnapshot, result: TickResult) -> int:
        """Record what a deferred executor finished since the last tick (live); returns how many."""
        reports = self.executor.completed()
        fx = snap.fx or self.last_fx
        if fx is None:  # no rate to value them yet: the next tick takes them
            self.executor.adopt(reports)
            return 0
        for report in reports:
            self._settle(report, snap, fx.rate, result)
        return len(reports)

    def _settle(self, report: HedgeReport, snap: MarketSnapshot, rate: Decimal, result: TickResult) -> None:
        pending = self._pending.pop(report.position_id, None)
        self.executor.settled(report)  # before the books take it: a restart never settles it twice
        storage = self.storage
        filled = {o.client_order_id: o for o in report.orders}
        for trade in report.trades:
            storage.log_trade(trade)
            order = filled.get(trade.order_id)
            if self.metrics is not None and order is not None:
                self.metrics.orders.labels(exchange=order.exchange, side=order.side.value,
                                           status=order.status.value).inc()
            if self.notify is not None and order is not None:
                self.notify("arbframe_on_order_filled", order=order, trade=trade)
        for order in report.orders:
            if self.metrics is not None and not order.filled_qty:
                self.metrics.orders.labels(exchange=order.exchange, side=order.side.value,
                                           status=order.status.value).inc()
        valuation = self.ledger.valuation(rate, self.marks)
        fees_krw = sum((value_of({(o.exchange, asset): amount}, valuation)
                        for o in report.orders for asset, amount in (o.fees or ((o.fee_currency, o.fee),))
                        if amount), ZERO)
        ts = snap.ts  # the engine's clock (market time), as for paper fills
        changes = dict(report.changes)
        symbol = report.symbol
        if report.purpose == "open":
            if report.hedged_qty > 0:
                self._opened(report.position_id, symbol, report.direction, report.hedged_qty, ts, rate,
                             report.domestic_price or ZERO, report.foreign_price or ZERO, changes, fees_krw, snap,
                             result, net_premium=pending.net_premium if pending is not None else None)
                if report.status != "filled":
                    self._error(result, "execution", f"entry on {symbol} hedged {report.hedged_qty:f} of "
                                f"{report.qty:f} ({report.status}): {report.reason}", kind="execution")
            elif changes:
                self._cost_position(report, report.position_id, ts, rate, changes, fees_krw, snap, result)
            else:
                message = f"entry on {symbol} {report.status}: {report.reason or 'nothing filled'}"
                if report.status == "rehearsed":
                    log.info("[BOT] %s (dry run: nothing placed)", message)
                else:
                    self._error(result, "execution", message, kind="execution")
            return
        p = self.positions.get(report.position_id)
        if p is None:
            log.error("[BOT] close report for unknown position %s (%s)", report.position_id, report.status)
            if changes:
                self._cost_position(report, self.ids(), ts, rate, changes, fees_krw, snap, result)
            return
        reason = report.close_reason or "exit"
        if report.hedged_qty >= p.qty:
            self._closed(p, reason, ts, rate, report.domestic_price or ZERO, report.foreign_price or ZERO,
                         (changes,), fees_krw, snap, result)
        elif report.hedged_qty > 0:
            self._close_part(p, report, reason, ts, rate, changes, fees_krw, snap, result)
        else:
            if changes:  # what a failed close cost (an unwind) is its own zero-quantity record
                self._cost_position(report, self.ids(), ts, rate, changes, fees_krw, snap, result)
            if report.status != "rehearsed":
                self._error(result, "execution", f"close ({reason}) of {symbol} position {p.id} {report.status}: "
                            f"{report.reason or 'nothing filled'}; retried while the reason holds", kind="execution")

    def _close_part(self, p: Position, report: HedgeReport, reason: str, ts: datetime, rate: Decimal,
                    close_changes: Changes, fees_krw: Decimal, snap: MarketSnapshot, result: TickResult) -> None:
        """A close that hedged part of ``p``: that part closes (its share of the entry legs plus the close's legs)
        and the rest continues as a new position with the rest of the entry legs."""
        share = report.hedged_qty / p.qty
        entry = self._changes[p.id]
        part = {k: v * share for k, v in entry.items()}
        rest = {k: v - part[k] for k, v in entry.items()}
        self._changes[p.id] = part
        self._entry_sums[p.id] = _sums(part, p.symbol, self.priced)
        head = replace(p, qty=report.hedged_qty, balance_changes=encode_changes(part))
        self.positions[p.id] = head
        self._closed(head, reason, ts, rate, report.domestic_price or ZERO, report.foreign_price or ZERO,
                     (close_changes,), fees_krw, snap, result)
        tail = replace(p, id=self.ids(), qty=p.qty - report.hedged_qty, balance_changes=encode_changes(rest),
                       coin_residue=_coin(rest, p.symbol))
        self.positions[tail.id] = tail
        self._track_open(tail, rest)
        self.storage.log_position_open(tail)
        result.opened.append(tail)
        log.warning("[BOT] partial close of %s %s: %s of %s closed; the remaining %s continues as position %s",
                    p.symbol, p.id, report.hedged_qty, p.qty, tail.qty, tail.id)

    def _cost_position(self, report: HedgeReport, position_id: str, ts: datetime, rate: Decimal, changes: Changes,
                       fees_krw: Decimal, snap: MarketSnapshot, result: TickResult) -> None:
        """What a hedge that hedged nothing changed (fills sold back, fees): a closed zero-quantity position, so
        every balance change belongs to a position and its cost counts in the PnL."""
        valuation = self.ledger.valuation(rate, self.marks)
        realized = value_of(changes, valuation)
        self.ledger.close(changes, rate, self.marks, realized)
        d_price, f_price = report.domestic_price or ZERO, report.foreign_price or ZERO
        premium = premium_at(report.direction, d_price, f_price, rate).quantize(PREMIUM_QUANTUM) \
            if d_price and f_price else ZERO
        record = Position(
            id=position_id, symbol=report.symbol, direction=report.direction, status=PositionStatus.CLOSED,
            opened_at=report.requested_at, qty=ZERO, domestic_exchange=self.domestic,
            foreign_exchange=self.foreign, entry_domestic_price=d_price, entry_foreign_price=f_price,
            entry_fx_rate=rate, entry_premium=premium, entry_fees_krw=fees_krw, closed_at=ts,
            exit_domestic_price=d_price, exit_foreign_price=f_price, exit_fx_rate=rate, exit_premium=premium,
            exit_fees_krw=ZERO, realized_pnl_krw=realized, close_reason=f"{report.purpose}_{report.status}",
            simulated=self.simulated or snap.simulated, balance_changes=encode_changes(changes),
            coin_residue=_coin(changes, report.symbol), exit_coin_mark_krw=self.marks.get(report.symbol),
        )
        self.storage.log_position_open(record)
        self.storage.log_position_close(record)
        self.stats.record_close(record)
        result.closed.append(record)
        self._error(result, "execution", f"{report.purpose} on {report.symbol} {report.status}: nothing hedged; "
                    f"its fills and fees cost {realized.quantize(ONE):,}₩ (position {position_id}): "
                    f"{report.reason}", kind="execution")

    @property
    def killed(self) -> bool:
        return self.executor.killed

    def _rejected(self, legs: tuple[LegSpec, ...]) -> None:
        if self.metrics is not None:
            for leg in legs:
                self.metrics.orders.labels(exchange=leg.book.exchange, side=leg.side.value, status="rejected").inc()

    def _record_legs(self, legs: tuple[LegResult, ...]) -> None:
        storage = self.storage
        for leg in legs:
            storage.log_order(leg.order)
            storage.log_trade(leg.trade)
            if self.metrics is not None:
                self.metrics.orders.labels(
                    exchange=leg.order.exchange, side=leg.order.side.value, status=leg.order.status.value
                ).inc()
            if self.notify is not None:
                self.notify("arbframe_on_order_filled", order=leg.order, trade=leg.trade)

    def _error(self, result: TickResult, component: str, message: str, kind: str = "error") -> None:
        error = ErrorRecord(id=self.ids(), ts=result.ts, component=component, message=message, kind=kind)
        result.errors.append(error)
        log.warning("[BOT] %s%s", message, " [simulated data]" if self.simulated else "")
        self.storage.log_error(error)
        if self.notify is not None:
            self.notify("arbframe_on_error", error=error)

    # -------------------------------------------------------------------------------------------- publish
    def _note(self) -> str:
        return " [simulated data]" if self.simulated else ""

    def _sim_note(self, snap: MarketSnapshot) -> str:
        return " [simulated data]" if (self.simulated or snap.simulated) else ""

    def _note_fx(self, fx: FxRate | None, now: datetime, fresh: bool) -> None:
        if fresh:
            if self._fx_stale_logged:
                log.info("[BOT] FX rate is fresh again (%s from %s): entries allowed%s",
                         fx.rate, fx.source, self._note())  # type: ignore[union-attr]
            self._fx_stale_logged = False
            return
        if not self._fx_stale_logged:
            if fx is None:
                log.warning("[BOT] no USD/KRW rate: no spreads and no new entries%s", self._note())
            else:
                log.warning(
                    "[BOT] FX rate %s from %s is %.0fs old (max_fx_age_seconds=%g): new entries blocked%s",
                    fx.rate, fx.source, fx.age_seconds(now), self.cfg.max_fx_age_seconds, self._note(),
                )
            self._fx_stale_logged = True

    def _venue_block(self) -> str | None:
        unready = self.unready
        return unready.get(self.domestic) or unready.get(self.foreign) if unready else None

    def set_rules(self, venue: str, symbol: str, rules: MarketRules) -> None:
        """Rules that arrived after start-up (the service loads them with retries); the lot step follows."""
        self.rules[(venue, symbol)] = rules
        steps = [r.step_size for (_, s), r in self.rules.items() if s == symbol]
        self._step[symbol] = max(steps) if steps else _STEP

    def _note_data(self, symbol: str, problem: tuple[str, str] | None) -> None:
        """Count a blocked tick; log one line when the symbol's market-data verdict changes."""
        reason = None if problem is None else problem[0]
        if problem is not None and self.metrics is not None:
            self.metrics.data_blocked.labels(symbol=symbol, reason=reason).inc()
        if self._data_blocked.get(symbol) == reason:
            return
        self._data_blocked[symbol] = reason
        self.data_blocked_symbols = sum(1 for r in self._data_blocked.values() if r is not None)
        if problem is None:
            log.info("[BOT] market data for %s is usable again%s", symbol, self._note())
        else:
            log.warning("[BOT] %s blocked for trading (%s): %s%s", symbol, reason, problem[1], self._note())

    def _close_waits_for_data(self, p: Position, block: str, now: datetime) -> None:
        """A position past ``max_holding_seconds`` on a blocked symbol is not closed on that data: one line per
        position and block reason; it closes on the first tick with usable data (the timeout still holds then)."""
        reason = self.strategy.close_reason(p, None, now)  # without prices only the holding timeout can be due
        if reason is None or self._close_waits.get(p.id) == (reason, block):
            return
        self._close_waits[p.id] = (reason, block)
        log.warning("[BOT] %s position %s is due to close (%s, held %.0fs) but its market data is blocked (%s): "
                    "not closed on that data, it closes on the first tick the data is usable%s", p.symbol, p.id,
                    reason, (now - p.opened_at).total_seconds(), block, self._note())

    def _note_block(self, symbol: str, reason: str | None) -> None:
        if self._blocked.get(symbol) != reason:
            self._blocked[symbol] = reason
            if reason is not None and not reason.startswith("FX rate is stale") \
                    and reason not in self.unready.values():
                log.info("[BOT] entry on %s blocked: %s%s", symbol, reason, self._note())

    def _publish(self, snap: MarketSnapshot, result: TickResult, fresh: bool) -> None:
        now = snap.ts
        metrics = self.metrics
        fx = snap.fx
        if metrics is not None:
            metrics.ticks.inc()
            self.metrics.publish(self.stats, now)  # type: ignore[union-attr]
            metrics.publish_equity(self.breakdown())
            if fx is not None:
                metrics.fx_rate.set(float(fx.rate))
                metrics.fx_age.set(fx.age_seconds(now))
            children = self._premium_children
            for s in result.quotes:
                key = (s.symbol, s.direction)
                pair = children.get(key)
                if pair is None:
                    labels = {"symbol": s.symbol, "direction": s.direction.value}
                    pair = (metrics.premium.labels(**labels), metrics.net_premium.labels(**labels))
                    children[key] = pair
                pair[0].set(float(s.premium))
                pair[1].set(float(s.net_premium))
        notify = self.notify
        if notify is not None and self.spread_listeners:
            for spread in result.spreads:
                notify("arbframe_on_spread", spread=spread)
        if self.cache is not None:
            snapshots: dict[str, dict[str, Any]] = {}
            for spread in result.spreads:
                entry = snapshots.setdefault(spread.symbol, {
                    "ts": now.isoformat(), "fx_rate": str(spread.fx_rate), "fx_source": spread.fx_source,
                    "fx_age_seconds": str(spread.fx_age_seconds), "simulated": spread.simulated,
                })
                entry[spread.direction.value] = {
                    "premium": str(spread.premium), "net_premium": str(spread.net_premium), "qty": str(spread.qty),
                    "domestic_price": str(spread.domestic_price), "foreign_price": str(spread.foreign_price),
                    "tether_premium": None if spread.tether_premium is None else str(spread.tether_premium),
                    "usdt_premium": None if spread.usdt_premium is None else str(spread.usdt_premium),
                }
            try:
                self.cache.write_tick(
                    fx=(fx, self.cache_ttl) if (fx is not None and self.publish_fx) else None,
                    heartbeat=(self.service_name, now, self.cache_ttl),
                    spreads=snapshots,
                    spread_ttl_seconds=self.spread_ttl,
                )
            except Exception as exc:  # a cache must never stop the tick
                log.debug("cache.write_tick raised: %r", exc)
            if metrics is not None:
                metrics.heartbeat.set(now.timestamp())

    def sync_metrics(self, metrics: TradingMetrics, now: datetime) -> None:
        """Publish the engine's numbers into ``metrics`` once (a replay runs without per-tick metrics)."""
        metrics.publish(self.stats, now)
        metrics.trades.inc(self.stats.trades)
        metrics.ticks.inc(self.ticks)
        metrics.simulated.set(1 if self.simulated else 0)
        if self.last_fx is not None:
            metrics.fx_rate.set(float(self.last_fx.rate))
        metrics.publish_equity(self.breakdown())

    def unrealized_by_position(self, snap: MarketSnapshot) -> dict[str, Decimal]:
        """Mark every open position to market against ``snap`` (exit fees included)."""
        out: dict[str, Decimal] = {}
        if snap.fx is None:
            return out
        for p in self.positions.values():
            dom = snap.books.get((self.domestic, p.symbol))
            fgn = snap.books.get((self.foreign, p.symbol))
            if dom is None or fgn is None:
                continue
            out[p.id] = self._mark_on(p, dom, fgn, snap.fx.rate)
        return out

    def _mark_on(self, p: Position, dom: OrderBook, fgn: OrderBook, rate: Decimal) -> Decimal:
        """Unrealized PnL of ``p`` closed on these books (a book too thin: the depth there is plus the penalty)."""
        prices = exit_prices(p.direction, dom, fgn, p.qty)
        if prices is None:
            prices = self._thin_prices(p, dom, fgn)
        mark = (top_price(dom.bids) + top_price(dom.asks)) / TWO  # type: ignore[operator]
        return self._mark(p, prices, rate, mark)
