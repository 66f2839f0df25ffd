"""``arbframe status [--json] [--offline] [--timeout SECONDS] [--mock | --no-mock]``: what the bot holds now.

Prints the service's last tick (its heartbeat file, else the cache's heartbeat), the kill switch, the residual
exposure live hedges left unhedged (as stored for the venue pair; docs/LIVE.md), the limits
(daily loss limit against today's realized PnL, open positions, open notional, FX age), every open position
with its unrealized PnL, the balances per venue and asset with their KRW value, equity and the realized totals.

Open positions and paper balances come from the configured storage (any backend), for the book of the
configured runner (service.instance_id, its venue pair and symbols) by the rules of its restart: open positions
of its venue pair and symbols, closed positions of its instance. The balances are the configured starting
wallets plus those positions' balance changes, exactly what the restarted runner would hold.
Unrealized PnL is the engine's mark (docs/TRADING.md "PnL": entry legs plus a close at the current VWAPs, exit
fees included, at the current FX rate and coin mark). Where the prices come from, per symbol, first that has
both books: the venues (bounded by --timeout) or, in mock mode, a fresh simulated market from the config's seed
(not the running service's state), both skipped with --offline; then the cache's spread snapshots; then the
store's last spreads (a close priced at their VWAPs). The output names each mark's source and age; a
position without one shows no unrealized PnL. With mode: live (not mock) the balances are asked from the
venues instead.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from arbframe.commands.bookkeeping import (
    MONEY,
    MONEY_OR_NULL,
    TIME_OR_NULL,
    add_store_options,
    dec,
    duration,
    exact_sum,
    iso,
    krw,
    local_time,
    obj,
    open_store,
    percent,
    print_json,
    printed_schema,
    ratio,
    table,
    timezone_of,
)
from arbframe.commands.options import plain_help
from arbframe.core.models import ZERO, BookLevel, Direction, FxRate, OrderBook, Position, Spread, utcnow

if TYPE_CHECKING:
    from arbframe.kernel.interfaces import Cache, Exchange, Storage
    from arbframe.kernel.plugin_host import Kernel
    from arbframe.trading.engine import Engine

log = logging.getLogger("arbframe.status")

DEFAULT_TIMEOUT = 3.0

_SECONDS = {"type": ["number", "null"]}
_MARK = obj({"source": {"enum": ["market", "simulated", "cache", "storage"]}, "detail": {"type": "string"},
             "as_of": TIME_OR_NULL, "age_seconds": _SECONDS})
#: JSON Schema of ``arbframe status --json``
JSON_SCHEMA = obj({
    "now": {"type": "string", "format": "date-time"}, "mode": {"type": "string"}, "mock": {"type": "boolean"},
    "storage": {"type": "string"}, "storage_backend": {"type": "string"}, "timezone": {"type": "string"},
    "book": obj({"instance_id": {"type": "string"}, "venues": {"type": "array", "items": {"type": "string"}},
                 "symbols": {"type": "array", "items": {"type": "string"}},
                 "open_elsewhere": {"type": "integer", "minimum": 0},
                 "closed_elsewhere": {"type": "integer", "minimum": 0}}),
    "service": obj({"from": {"type": ["string", "null"]}, "last_tick_at": TIME_OR_NULL,
                    "last_tick_age_seconds": _SECONDS, "stopped": {"type": ["boolean", "null"]}}),
    "kill_switch": {"type": ["object", "null"],
                    "description": "the live kill switch as stored (arbframe kill / resume): killed, reason, flatten, "
                                   "ts, by, where; null only when it could not be read"},
    "residual_exposure": {"oneOf": [{"type": "null"}, obj({
        "total_krw": MONEY, "max_krw": MONEY, "blocks_entries": {"type": "boolean"}, "where": {"type": "string"},
        "symbols": {"type": "object", "additionalProperties": obj({
            "coin": MONEY, "krw": MONEY, "mark_krw": MONEY, "marked": {"type": "boolean"},
            "in_book": {"type": "boolean"},
            "venues": {"type": "object", "additionalProperties": MONEY}})},
        "residuals": {"type": "array", "items": obj({
            "position_id": {"type": "string"}, "purpose": {"type": "string"}, "symbol": {"type": "string"},
            "venue": {"type": "string"}, "coin": MONEY, "mark_krw": MONEY, "ts": {"type": "string"}})},
    })], "description": "coin live hedges left unhedged, as stored for the venue pair (arbframe resume --flattened "
                        "clears it): total_krw is the sum over symbols of |net coin x mark|, the mark being the "
                        "symbol's coin mark now (marked) or else its latest residual's hedge price; blocks_entries "
                        "when that of the book's symbols (in_book) is over max_krw, as the runner counts it; null "
                        "only when it could not be read"},
    "limits": obj({
        "daily_loss": obj({"limit_krw": MONEY_OR_NULL, "day": {"type": "string", "format": "date"},
                           "today_realized_krw": MONEY, "reached": {"type": "boolean"}}),
        "open_positions": obj({"open": {"type": "integer"}, "max": {"type": "integer"}}),
        "positions_per_symbol": obj({"max": {"type": "integer"},
                                     "open": {"type": "object", "additionalProperties": {"type": "integer"}}}),
        "open_notional_krw": obj({"open": MONEY, "max_total": MONEY, "max_per_position": MONEY}),
        "fx_age": obj({"max_seconds": {"type": "number"}, "age_seconds": _SECONDS,
                       "blocks_entries": {"type": "boolean"}}),
    }),
    "fx": {"oneOf": [{"type": "null"}, obj({"rate": MONEY, "source": {"type": "string"},
                                            "from": {"enum": ["fx source", "cache", "storage"]},
                                            "as_of": TIME_OR_NULL, "age_seconds": _SECONDS})]},
    "marks": {"type": "object", "additionalProperties": _MARK},
    "mark_notes": {"type": "array", "items": {"type": "string"}},
    "positions": {"type": "array", "items": obj({
        "id": {"type": "string"}, "symbol": {"type": "string"}, "direction": {"enum": ["kimchi", "reverse"]},
        "qty": MONEY, "opened_at": {"type": "string", "format": "date-time"}, "age_seconds": _SECONDS,
        "entry_premium": MONEY, "entry_fx_rate": MONEY, "entry_fees_krw": MONEY, "unrealized_pnl_krw": MONEY_OR_NULL,
        "mark": {"oneOf": [{"type": "null"}, _MARK]},
    })},
    "unrealized_pnl_krw": MONEY_OR_NULL,
    "positions_unmarked": {"type": "integer", "minimum": 0},
    "balances": obj({
        "kind": {"enum": ["paper", "live"]}, "basis": {"type": "string"},
        "venues": {"type": "object", "additionalProperties": {
            "type": "object", "additionalProperties": obj({"amount": MONEY, "value_krw": MONEY_OR_NULL})}},
        "equity_krw": MONEY_OR_NULL, "unvalued_assets": {"type": "array", "items": {"type": "string"}},
        "errors": {"type": "object", "additionalProperties": {"type": "string"}},
    }),
    "realized": obj({"keeps_history": {"type": "boolean"}, "total_krw": MONEY, "trades": {"type": "integer"},
                     "wins": {"type": "integer"}, "win_rate": MONEY_OR_NULL, "today_krw": MONEY}),
})


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser("status", help="open positions with unrealized PnL, balances, limits, last tick age",
                            description=plain_help(__doc__))
    add_store_options(parser, JSON_SCHEMA)
    parser.add_argument("--offline", action="store_true",
                        help="do not ask the venues (or the simulated market) nor the FX source: mark with the "
                             "cache's or the store's data")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"bound on asking the venues and the FX source (default {DEFAULT_TIMEOUT:g})")
    mock = parser.add_mutually_exclusive_group()
    mock.add_argument("--mock", dest="mock", action="store_true", default=None,
                      help="the bot runs on the simulated market (default: the config's mock_mode)")
    mock.add_argument("--no-mock", dest="mock", action="store_false", help="the bot runs on the real market")
    parser.set_defaults(handler=run)
    return parser


# ------------------------------------------------------------------------------------------------- model
@dataclass(frozen=True)
class Mark:
    """Where the books a symbol is marked with come from."""

    source: str  # market | simulated | cache | storage
    detail: str
    as_of: datetime | None  # the older of the symbol's two books

    def to_json(self, now: datetime) -> dict[str, Any]:
        return {"source": self.source, "detail": self.detail, "as_of": iso(self.as_of),
                "age_seconds": _age(self.as_of, now)}


@dataclass
class Prices:
    """The books and FX rate gathered for the marks, and where each came from."""

    books: dict[tuple[str, str], OrderBook] = field(default_factory=dict)
    marks: dict[str, Mark] = field(default_factory=dict)  # symbol -> where its two books came from
    fx: FxRate | None = None
    fx_from: str | None = None  # fx source | cache | storage
    notes: list[str] = field(default_factory=list)  # why a source gave nothing

    def add(self, symbol: str, domestic: OrderBook, foreign: OrderBook, source: str, detail: str, venues:
            tuple[str, str]) -> None:
        self.books[(venues[0], symbol)] = domestic
        self.books[(venues[1], symbol)] = foreign
        self.marks[symbol] = Mark(source, detail, min(domestic.ts, foreign.ts))

    def offer_fx(self, fx: FxRate | None, source: str) -> None:
        if self.fx is None and fx is not None:
            self.fx, self.fx_from = fx, source


@dataclass
class StatusReport:
    """Everything ``arbframe status`` shows (``to_json`` is the ``--json`` document)."""

    now: datetime
    mode: str
    mock: bool
    storage: str
    storage_backend: str
    book: dict[str, Any]  # the configured runner's instance, venues, symbols; positions of other books in the store
    timezone: str
    service: dict[str, Any]
    limits: dict[str, Any]
    prices: Prices
    positions: list[dict[str, Any]]
    balances: dict[str, Any]
    realized: dict[str, Any]
    #: The kill switch as stored (``arbframe kill`` / ``resume``; every runner on this store obeys it), with where it
    #: was read; None when the store could not answer.
    kill_switch: Mapping[str, Any] | None = None
    #: The residual exposure stored for the book (:func:`residual_state`); None when the store could not answer.
    residual_exposure: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        p = self.prices
        marked = [x["unrealized_pnl_krw"] for x in self.positions if x["unrealized_pnl_krw"] is not None]
        return {
            "now": iso(self.now), "mode": self.mode, "mock": self.mock, "storage": self.storage,
            "storage_backend": self.storage_backend, "book": self.book, "timezone": self.timezone,
            "service": self.service,
            "kill_switch": self.kill_switch, "residual_exposure": self.residual_exposure, "limits": self.limits,
            "fx": None if p.fx is None else {"rate": dec(p.fx.rate), "source": p.fx.source, "from": p.fx_from,
                                             "as_of": iso(p.fx.ts), "age_seconds": _age(p.fx.ts, self.now)},
            "marks": {s: m.to_json(self.now) for s, m in sorted(p.marks.items())},
            "mark_notes": list(p.notes),
            "positions": self.positions,
            "unrealized_pnl_krw": dec(exact_sum(Decimal(x) for x in marked)) if marked else None,
            "positions_unmarked": len(self.positions) - len(marked),
            "balances": self.balances, "realized": self.realized,
        }


def kill_switch_state(storage: Storage, data_dir: Any) -> dict[str, Any] | None:
    """The stored kill switch, read the way the running service reads it (storage, else its local file)."""
    from dataclasses import asdict

    from arbframe.execution.control import KillSwitch

    switch = KillSwitch(storage, data_dir)
    state = switch.read()
    if switch.last_read_failed:  # a fresh switch has no earlier state worth showing
        return None
    return {**asdict(state), "where": switch.where, "text": state.describe()}


def coin_marks(prices: Prices, domestic: str) -> dict[str, Decimal]:
    """Symbol -> coin mark in KRW: the mid of its domestic book among the prices gathered (as the engine marks)."""
    return {symbol: (book.bids[0].price + book.asks[0].price) / 2 for (venue, symbol), book in prices.books.items()
            if venue == domestic and book.bids and book.asks}


def residual_state(config: Mapping[str, Any], storage: Storage, data_dir: Any,
                   marks: Mapping[str, Decimal] | None = None) -> dict[str, Any] | None:
    """The residual exposure stored for the configured book, read as the runner restores it and marked to market
    at ``marks`` (symbol -> coin mark; a symbol without one at its hedge's price); None when the store does not
    answer."""
    from arbframe.execution.config import LiveConfig
    from arbframe.execution.residual import ResidualStore, exposure, total_krw
    from arbframe.kernel.book import book_from_config

    book = book_from_config(config)
    store = ResidualStore(storage, book.domestic, book.foreign, book.symbols, data_dir)
    try:
        residuals = store.load(every_symbol=True)  # also on symbols no longer traded: still unhedged
    except Exception as exc:
        log.warning("residual exposure could not be read from %s: %s: %s", store.where, type(exc).__name__, exc)
        return None
    limit = LiveConfig.from_config(config).max_residual_krw
    total = total_krw(residuals, marks)
    book_total = total_krw((r for r in residuals if r.symbol in book.symbols), marks)
    return {"total_krw": dec(total), "max_krw": dec(limit), "blocks_entries": book_total > limit,
            "where": store.where,
            "symbols": {s: {"coin": dec(e.coin), "krw": dec(e.krw), "mark_krw": dec(e.mark_krw),
                            "marked": e.marked, "in_book": s in book.symbols,
                            "venues": {v: dec(c) for v, c in sorted(e.venues.items())}}
                        for s, e in exposure(residuals, marks).items()},
            "residuals": [r.as_dict() for r in residuals]}


def _age(ts: datetime | None, now: datetime) -> float | None:
    return None if ts is None else round(max(0.0, (now - ts).total_seconds()), 3)


# --------------------------------------------------------------------------------------------- gathering
def run(args: argparse.Namespace) -> int:
    if printed_schema(args):
        return 0
    with open_store(args, None if args.mock is None else {"mock_mode": bool(args.mock)}) as store:
        if not args.verbose:  # the venue drivers' start-up notes (no credentials: simulated account) are not news
            for key in ("domestic", "foreign"):
                venue = (store.config.get("arbitrage") or {}).get(key)
                if venue:
                    logging.getLogger(f"arbframe.{venue}").setLevel(logging.ERROR)
        report = asyncio.run(gather(store.kernel, store.storage, offline=bool(args.offline),
                                    timeout=max(0.1, float(args.timeout))))
    if args.json:
        print_json(report.to_json())
    else:
        print("\n".join(format_report(report.to_json())))
    return 0


async def gather(kernel: Kernel, storage: Storage, *, offline: bool = False, timeout: float = DEFAULT_TIMEOUT,
                 now: datetime | None = None) -> StatusReport:
    """Read the store, gather prices (see the module docstring) and build the report; ``now`` for tests."""
    from arbframe.kernel.book import book_from_config
    from arbframe.trading.strategy import StrategyConfig

    config = kernel.config
    cfg = StrategyConfig.from_config(config)
    mock = bool(kernel.context.mock)
    live = kernel.context.mode == "live" and not mock
    book = book_from_config(config)  # what the configured runner holds: the rules of its restart
    stored = storage.load_positions()
    opened = [p for p in stored if book.holds(p)]
    loaded = storage.load_closed_positions()
    history = None if loaded is None else [p for p in loaded if book.counts(p)]
    exchanges = build_exchanges(kernel, cfg.domestic, cfg.foreign, mock)
    cache: Cache | None = None
    try:
        engine = build_engine(kernel, exchanges, mock)
        engine.restore_history(history or [])
        engine.resume(opened)
        cache = _cache(kernel)
        prices = await gather_prices(kernel, exchanges, storage, cache, cfg.symbols, opened, mock=mock,
                                     offline=offline, timeout=timeout, venues=(cfg.domestic, cfg.foreign))
        when = now or utcnow()
        balances = await gather_balances(engine, exchanges, prices, live=live, timeout=timeout)
        service = await asyncio.to_thread(service_state, config, cache, when)
        kill_switch = await asyncio.to_thread(kill_switch_state, storage, kernel.context.data_dir)
        residual = await asyncio.to_thread(residual_state, config, storage, kernel.context.data_dir,
                                           coin_marks(prices, cfg.domestic))
    finally:
        await _close_exchanges(exchanges)
        if cache is not None:
            cache.close()
    from arbframe.trading.engine import MarketSnapshot

    snap = MarketSnapshot(when, prices.books, prices.fx, simulated=mock)
    marks = engine.unrealized_by_position(snap)
    tz_name, _tz = timezone_of(config)
    stats = engine.stats
    return StatusReport(
        now=when, mode=kernel.context.mode, mock=mock, storage=storage.describe(),
        book={"instance_id": book.instance_id, "venues": [book.domestic, book.foreign], "symbols": list(book.symbols),
              "open_elsewhere": len(stored) - len(opened),
              "closed_elsewhere": 0 if loaded is None else len(loaded) - len(history or [])},
        storage_backend=storage.active_backend(), timezone=tz_name, service=service, kill_switch=kill_switch,
        residual_exposure=residual,
        limits=limits(cfg, engine, opened, prices.fx, when),
        prices=prices,
        positions=[position_entry(p, marks.get(p.id), prices.marks.get(p.symbol), when)
                   for p in sorted(opened, key=lambda p: (p.opened_at, p.id))],
        balances=balances,
        realized={"keeps_history": history is not None, "total_krw": dec(stats.total_pnl_krw),
                  "trades": stats.trades, "wins": stats.wins, "win_rate": dec(ratio(stats.wins, stats.trades)),
                  "today_krw": dec(stats.daily_pnl(when))},
    )


def build_exchanges(kernel: Kernel, domestic: str, foreign: str, mock: bool) -> dict[str, Exchange]:
    """The two venues as ``arbframe run`` builds them (mock: on a fresh simulated market from the config)."""
    from arbframe.market.routing import simulated_venue

    if mock:
        from arbframe.market.simulation import market_from_config

        kernel.context.mock = True
        if kernel.context.market is None:
            kernel.context.market = market_from_config(kernel.config)
    out: dict[str, Exchange] = {}
    for role, name in (("domestic", domestic), ("foreign", foreign)):
        def make(name: str = name, role: str = role) -> Exchange:
            return simulated_venue(name, kernel.context, role=role)

        out[name] = kernel.load_exchange(name, simulated=make if mock else None)
    return out


def build_engine(kernel: Kernel, exchanges: Mapping[str, Exchange], mock: bool) -> Engine:
    """An engine with the run's fees, quote currencies and paper wallets (it marks; it never trades here)."""
    from arbframe.builtins.storage import NullStorage
    from arbframe.core.models import new_id
    from arbframe.service.runner import paper_wallets
    from arbframe.trading.accounting import fee_schedules
    from arbframe.trading.engine import Engine
    from arbframe.trading.strategy import StrategyConfig

    cfg = StrategyConfig.from_config(kernel.config)
    quotes = {name: e.quote_currency for name, e in exchanges.items()}
    return Engine(
        cfg, storage=NullStorage(), fee_domestic=exchanges[cfg.domestic].fee_rate,
        fee_foreign=exchanges[cfg.foreign].fee_rate,
        fees=fee_schedules(kernel.config, {n: e.fee_rate for n, e in exchanges.items()}), rules={},
        quote_currencies=quotes, wallets=paper_wallets(kernel.config, quotes), ids=new_id, simulated=mock,
    )


def _cache(kernel: Kernel) -> Cache | None:
    try:
        return kernel.load_cache()
    except Exception as exc:  # the cache is a fallback source only
        log.warning("cache unavailable (%s): %s", type(exc).__name__, exc)
        return None


async def _close_exchanges(exchanges: Mapping[str, Exchange]) -> None:
    for exchange in exchanges.values():
        try:
            await exchange.close()
        except Exception as exc:  # never raises by contract; a broken plugin must not hide the report
            log.debug("closing %s failed: %r", exchange.name, exc)


async def _bounded(coro: Any, timeout: float) -> Any:
    """The coroutine's result, or the exception it raised (a timeout included)."""
    try:
        return await asyncio.wait_for(coro, timeout)
    except asyncio.TimeoutError:
        return TimeoutError(f"no answer within {timeout:g}s")
    except Exception as exc:
        return exc


async def gather_prices(kernel: Kernel, exchanges: Mapping[str, Exchange], storage: Storage, cache: Cache | None,
                        symbols: Sequence[str], opened: Sequence[Position], *, mock: bool, offline: bool,
                        timeout: float, venues: tuple[str, str]) -> Prices:
    """Books per symbol and an FX rate, from the first source that has them (module docstring)."""
    prices = Prices()
    symbols = list(dict.fromkeys([*symbols, *(p.symbol for p in opened)]))
    if not offline:
        await _from_venues(kernel, exchanges, symbols, prices, mock=mock, timeout=timeout, venues=venues)
    missing = [s for s in symbols if s not in prices.marks]
    if (missing or prices.fx is None) and cache is not None:
        await _from_cache(cache, missing, prices, opened, timeout=timeout, venues=venues)
    missing = [s for s in symbols if s not in prices.marks]
    if missing or prices.fx is None:
        _from_storage(storage, missing, prices, opened, venues=venues)
    return prices


async def _from_venues(kernel: Kernel, exchanges: Mapping[str, Exchange], symbols: Sequence[str], prices: Prices,
                       *, mock: bool, timeout: float, venues: tuple[str, str]) -> None:
    from arbframe.trading.strategy import StrategyConfig

    depth = StrategyConfig.from_config(kernel.config).book_depth
    source = "simulated" if mock else "market"
    market = kernel.context.market if mock else None
    if market is not None:
        market.step(utcnow())
        detail = (f"a fresh simulated market (seed {market.seed}) stepped to now: not the running service's "
                  "market state")
    else:
        detail = f"order books from {venues[0]} and {venues[1]}"

    async def books() -> list[Any]:
        await asyncio.gather(*(e.connect() for e in exchanges.values()))
        return await asyncio.gather(*(exchanges[v].fetch_order_book(s, depth) for s in symbols for v in venues),
                                    return_exceptions=True)

    async def fx() -> FxRate:
        source_driver = kernel.load_fx_source()
        try:
            return await source_driver.fetch()
        finally:
            await source_driver.close()

    got_books, got_fx = await asyncio.gather(_bounded(books(), timeout), _bounded(fx(), timeout))
    if isinstance(got_fx, BaseException):
        prices.notes.append(f"FX source: {_reason(got_fx)}")
    else:
        prices.offer_fx(got_fx, "fx source")
    if isinstance(got_books, BaseException):
        prices.notes.append(f"venues: {_reason(got_books)}")
        return
    for i, symbol in enumerate(symbols):
        dom, fgn = got_books[2 * i], got_books[2 * i + 1]
        bad = next((b for b in (dom, fgn) if isinstance(b, BaseException)), None)
        if bad is not None:
            prices.notes.append(f"venues: {symbol}: {_reason(bad)}")
            continue
        prices.add(symbol, dom, fgn, source, detail, venues)


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def _from_cache(cache: Cache, symbols: Sequence[str], prices: Prices, opened: Sequence[Position], *,
                      timeout: float, venues: tuple[str, str]) -> None:
    def read() -> tuple[FxRate | None, dict[str, dict[str, Any] | None]]:
        return cache.get_fx_rate(), {s: cache.get_spread_snapshot(s) for s in symbols}

    got = await _bounded(asyncio.to_thread(read), timeout)
    if isinstance(got, BaseException):
        prices.notes.append(f"cache: {_reason(got)}")
        return
    fx, snapshots = got
    prices.offer_fx(fx, "cache")
    for symbol, snap in snapshots.items():
        if not snap:
            continue
        try:
            ts = datetime.fromisoformat(str(snap["ts"]))
            sides = {d: (Decimal(str(snap[d.value]["domestic_price"])), Decimal(str(snap[d.value]["foreign_price"])),
                         Decimal(str(snap[d.value]["qty"]))) for d in Direction}
        except (KeyError, TypeError, ValueError, ArithmeticError):
            prices.notes.append(f"cache: no usable spread snapshot of {symbol} (needs both directions)")
            continue
        _add_from_vwaps(prices, symbol, sides, ts, opened, "cache",
                        f"the cache's spread snapshot (VWAPs for {sides[Direction.KIMCHI][2]} {symbol})", venues)
        if prices.fx is None and snap.get("fx_rate") is not None:
            age = Decimal(str(snap.get("fx_age_seconds") or 0))
            prices.offer_fx(FxRate(id="", ts=_minus(ts, age), rate=Decimal(str(snap["fx_rate"])),
                                   source=str(snap.get("fx_source") or "")), "cache")


def _from_storage(storage: Storage, symbols: Sequence[str], prices: Prices, opened: Sequence[Position], *,
                  venues: tuple[str, str]) -> None:
    try:
        fx = storage.load_last_fx_rate()
        spreads = storage.load_last_spreads(list(symbols)) if symbols else []
    except Exception as exc:  # the store could answer positions but not this (a server that went away)
        prices.notes.append(f"storage: {_reason(exc)}")
        return
    if spreads is None:
        prices.notes.append(f"storage: {storage.describe()} keeps no spreads")
        spreads = []
    by_symbol: dict[str, dict[Direction, Spread]] = {}
    for spread in spreads:
        by_symbol.setdefault(spread.symbol, {})[spread.direction] = spread
    newest_spread = max(spreads, key=lambda s: s.ts, default=None)
    if fx is None and newest_spread is not None:  # the rate the newest spread was priced with
        fx = FxRate(id="", ts=_minus(newest_spread.ts, newest_spread.fx_age_seconds), rate=newest_spread.fx_rate,
                    source=newest_spread.fx_source)
    prices.offer_fx(fx, "storage")
    for symbol in symbols:
        found = by_symbol.get(symbol, {})
        if len(found) < 2:
            if found or any(p.symbol == symbol for p in opened):
                prices.notes.append(f"storage: no recorded spreads of {symbol} in both directions")
            continue
        sides = {d: (s.domestic_price, s.foreign_price, s.qty) for d, s in found.items()}
        ts = min(s.ts for s in found.values())
        _add_from_vwaps(prices, symbol, sides, ts, opened, "storage",
                        f"the store's last spreads (VWAPs for {found[Direction.KIMCHI].qty} {symbol})", venues)


def _minus(ts: datetime, seconds: Decimal) -> datetime:
    from datetime import timedelta

    return ts - timedelta(seconds=float(seconds))


def _add_from_vwaps(prices: Prices, symbol: str, sides: Mapping[Direction, tuple[Decimal, Decimal, Decimal]],
                    ts: datetime, opened: Sequence[Position], source: str, detail: str,
                    venues: tuple[str, str]) -> None:
    """One-level books at recorded VWAPs: a kimchi row is (domestic bid, foreign ask), a reverse row (domestic
    ask, foreign bid). Each level holds enough for every open position on the symbol, so a close is priced at
    the recorded VWAP (recorded for the spread's own order size)."""
    qty = max([q for _d, _f, q in sides.values()] + [p.qty for p in opened if p.symbol == symbol])
    k_dom, k_fgn, _ = sides[Direction.KIMCHI]
    r_dom, r_fgn, _ = sides[Direction.REVERSE]
    domestic = OrderBook(venues[0], symbol, (BookLevel(k_dom, qty),), (BookLevel(r_dom, qty),), ts)
    foreign = OrderBook(venues[1], symbol, (BookLevel(r_fgn, qty),), (BookLevel(k_fgn, qty),), ts)
    prices.add(symbol, domestic, foreign, source, detail, venues)


# -------------------------------------------------------------------------------------------- the parts
def service_state(config: Mapping[str, Any], cache: Cache | None, now: datetime) -> dict[str, Any]:
    """The last tick: the service's heartbeat file (this host), else the cache's heartbeat (any host)."""
    from arbframe.service.liveness import heartbeat_path, liveness_bound, read_heartbeat
    from arbframe.service.runner import service_name

    path = heartbeat_path(config)
    data = read_heartbeat(path)
    if data is not None:
        last = _parse(data.get("last_tick_at"))
        interval = float(data.get("interval_seconds") or 30)
        return {
            "from": f"heartbeat file {path}", "last_tick_at": iso(last), "last_tick_age_seconds": _age(last, now),
            "started_at": data.get("started_at"), "ticks": data.get("ticks"), "pid": data.get("pid"),
            "host": data.get("host"), "stopped": bool(data.get("stopped")), "instance_id": data.get("instance_id"),
            "liveness_bound_seconds": liveness_bound(interval),
        }
    name = service_name(config)
    beat = cache.get_heartbeat(name) if cache is not None and cache.available else None
    if beat is not None:
        return {"from": f"cache heartbeat of {name}", "last_tick_at": iso(beat), "last_tick_age_seconds":
                _age(beat, now), "started_at": None, "ticks": None, "pid": None, "host": None, "stopped": None,
                "instance_id": None, "liveness_bound_seconds": None}
    return {"from": None, "last_tick_at": None, "last_tick_age_seconds": None, "started_at": None, "ticks": None,
            "pid": None, "host": None, "stopped": None, "instance_id": None, "liveness_bound_seconds": None,
            "note": f"no heartbeat file at {path} and no heartbeat of {name} in the cache (service not running?)"}


def _parse(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text)) if text else None
    except ValueError:
        return None


def limits(cfg: Any, engine: Engine, opened: Sequence[Position], fx: FxRate | None, now: datetime) -> dict[str, Any]:
    """The entry limits as the engine would apply them now (``arbitrage.*``)."""
    today = engine.stats.daily_pnl(now)
    per_symbol: dict[str, int] = {}
    for p in opened:
        per_symbol[p.symbol] = per_symbol.get(p.symbol, 0) + 1
    loss = cfg.max_daily_loss_krw
    age = fx.age_seconds(now) if fx is not None else None
    return {
        "daily_loss": {"limit_krw": dec(loss), "day": engine.stats.day_of(now).isoformat(),
                       "today_realized_krw": dec(today), "reached": loss is not None and today <= -loss},
        "open_positions": {"open": len(opened), "max": cfg.max_open_positions},
        "positions_per_symbol": {"max": cfg.max_positions_per_symbol, "open": per_symbol},
        "open_notional_krw": {"open": dec(engine.open_notional_krw), "max_total": dec(cfg.max_total_notional_krw),
                              "max_per_position": dec(cfg.max_position_notional_krw)},
        "fx_age": {"max_seconds": cfg.max_fx_age_seconds, "age_seconds": None if age is None else round(age, 3),
                   "blocks_entries": age is None or age > cfg.max_fx_age_seconds},
    }


def position_entry(p: Position, unrealized: Decimal | None, mark: Mark | None, now: datetime) -> dict[str, Any]:
    return {
        "id": p.id, "symbol": p.symbol, "direction": p.direction.value, "qty": dec(p.qty),
        "opened_at": iso(p.opened_at), "age_seconds": _age(p.opened_at, now),
        "domestic_exchange": p.domestic_exchange, "foreign_exchange": p.foreign_exchange,
        "entry_premium": dec(p.entry_premium), "entry_fx_rate": dec(p.entry_fx_rate),
        "entry_fees_krw": dec(p.entry_fees_krw), "unrealized_pnl_krw": dec(unrealized),
        "mark": None if unrealized is None or mark is None else mark.to_json(now),
        "simulated": p.simulated, "instance_id": p.instance_id,
    }


async def gather_balances(engine: Engine, exchanges: Mapping[str, Exchange], prices: Prices, *, live: bool,
                          timeout: float) -> dict[str, Any]:
    """Paper: the engine's wallets after replaying the store. Live: each venue's own answer. Valued in KRW at the
    FX rate and coin marks (the mid of each symbol's domestic book) of the prices gathered."""
    from arbframe.kernel.interfaces import Trading
    from arbframe.trading.accounting import value_of, wallet_balances

    errors: dict[str, str] = {}
    if live:
        amounts: dict[tuple[str, str], Decimal] = {}
        for name, exchange in exchanges.items():
            if not isinstance(exchange, Trading):
                errors[name] = "read-only venue driver (no balances)"
                continue
            got = await _bounded(exchange.fetch_balance_details(), timeout)
            if isinstance(got, BaseException):
                errors[name] = _reason(got)
                continue
            amounts.update({(name, asset): b.total for asset, b in got.items()})
    else:
        amounts = wallet_balances(engine.executor.wallets)
    valuation = None
    if prices.fx is not None:
        valuation = engine.ledger.valuation(prices.fx.rate, coin_marks(prices, engine.domestic))
    venues: dict[str, dict[str, Any]] = {}
    for (venue, asset), amount in sorted(amounts.items()):
        value = valuation.value(asset, amount) if valuation is not None else None
        venues.setdefault(venue, {})[asset] = {"amount": dec(amount), "value_krw": dec(value)}
    equity = value_of(amounts, valuation) if valuation is not None else None
    unvalued = sorted({a for (_v, a), _x in amounts.items() if valuation is None or valuation.value(a, ZERO) is None})
    return {
        "kind": "live" if live else "paper",
        "basis": "the venues' balances" if live else "configured paper balances plus the book's stored balance "
                                                     "changes",
        "venues": venues, "equity_krw": dec(equity), "unvalued_assets": unvalued, "errors": errors,
    }


# ------------------------------------------------------------------------------------------------- text
_FROM = {"fx source": "the FX source", "cache": "the cache", "storage": "the store"}

def format_report(r: Mapping[str, Any]) -> list[str]:
    """The text form of :meth:`StatusReport.to_json`."""
    from arbframe.trading.statistics import load_timezone

    tz = load_timezone(r["timezone"])
    mode = f"{r['mode']} mode" + (", simulated market (mock)" if r["mock"] else "")
    book = r["book"]
    out = [f"arbframe status: {mode}; storage {r['storage']} (writing to {r['storage_backend']}); times in "
           f"{r['timezone']}",
           f"book: instance {book['instance_id']}, {'/'.join(book['venues'])} {', '.join(book['symbols'])}"
           + (f" ({book['open_elsewhere']} open and {book['closed_elsewhere']} closed positions of other books in "
              "the store are not counted)" if book["open_elsewhere"] or book["closed_elsewhere"] else ""), ""]
    s = r["service"]
    if s["from"] is None:
        tick = s.get("note", "no heartbeat")
    elif s["last_tick_at"] is None:
        tick = f"no tick completed yet ({s['from']})"
    else:
        tick = f"{s['last_tick_age_seconds']:.1f}s ago, at {local_time(_parse(s['last_tick_at']), tz)} ({s['from']})"
        if s.get("stopped"):
            tick += "; the service has stopped"
    lim = r["limits"]
    daily = lim["daily_loss"]
    loss = "no daily loss limit" if daily["limit_krw"] is None else (
        f"today {krw(Decimal(daily['today_realized_krw']))} KRW realized of a -{krw(Decimal(daily['limit_krw']))} "
        f"KRW limit ({'REACHED: new entries blocked' if daily['reached'] else 'ok'})")
    notional = lim["open_notional_krw"]
    fx = r["fx"]
    fx_text = "no FX rate" if fx is None else (
        f"{fx['rate']} ({fx['source'] or '?'}, read from {_FROM[fx['from']]}), {duration(fx['age_seconds'])} old")
    fx_limit = lim["fx_age"]
    residual = r["residual_exposure"]
    if residual is None:
        residual_text = "could not be read"
    elif not residual["residuals"]:
        residual_text = f"none recorded ({residual['where']})"
    else:
        residual_text = (f"{krw(Decimal(residual['total_krw']))} KRW of max {krw(Decimal(residual['max_krw']))} KRW "
                         f"({'OVER: new entries blocked' if residual['blocks_entries'] else 'under the limit'}); "
                         "flattened by hand: arbframe resume --flattened")
    rows = [
        ("last tick", tick),
        ("kill switch", "could not be read" if r["kill_switch"] is None
                        else f"{r['kill_switch']['text']} ({r['kill_switch']['where']})"),
        ("residual", residual_text),
        ("daily loss", loss),
        ("open positions", f"{lim['open_positions']['open']} of max {lim['open_positions']['max']} "
                           f"(max {lim['positions_per_symbol']['max']} per symbol)"),
        ("open notional", f"{krw(Decimal(notional['open']))} of max {krw(Decimal(notional['max_total']))} KRW"),
        ("FX rate", fx_text + (f" (entries blocked past {fx_limit['max_seconds']:g}s)" if fx_limit["blocks_entries"]
                               and fx is not None else "")),
    ]
    out.extend(f"{k:<16}{v}" for k, v in rows[:3])
    for symbol, e in (residual or {}).get("symbols", {}).items():
        where = ", ".join(f"{v} {Decimal(c):+f}" for v, c in e["venues"].items() if Decimal(c))
        out.append(f"{'':<16}{symbol} {Decimal(e['coin']):+f} ({where or 'netted out'}) = "
                   f"{krw(abs(Decimal(e['krw'])))} KRW at {e['mark_krw']} "
                   f"({'market mark' if e.get('marked') else 'hedge price'})"
                   + ("" if e["in_book"] else " (not a symbol of this book: no runner of it counts it)"))
    out.extend(f"{k:<16}{v}" for k, v in rows[3:])
    out += ["", f"Open positions ({len(r['positions'])})"]
    if r["positions"]:
        out += table(("OPENED", "SYMBOL", "DIRECTION", "QTY", "AGE", "ENTRY", "UNREALIZED KRW", "MARK"), [
            (local_time(_parse(p["opened_at"]), tz), p["symbol"], p["direction"], p["qty"],
             duration(p["age_seconds"]), percent(Decimal(p["entry_premium"])),
             krw(None if p["unrealized_pnl_krw"] is None else Decimal(p["unrealized_pnl_krw"])),
             "-" if p["mark"] is None else f"{p['mark']['source']}, {duration(p['mark']['age_seconds'])} old")
            for p in r["positions"]], right=(3, 4, 5, 6))
        total = r["unrealized_pnl_krw"]
        out.append(f"unrealized PnL  {krw(None if total is None else Decimal(total))} KRW"
                   + (f" ({r['positions_unmarked']} positions without a mark)" if r["positions_unmarked"] else ""))
    for symbol, mark in r["marks"].items():
        out.append(f"  {symbol} marked with {mark['detail']} ({mark['source']}, as of "
                   f"{local_time(_parse(mark['as_of']), tz)})")
    out.extend(f"  note: {note}" for note in r["mark_notes"])
    b = r["balances"]
    out += ["", f"Balances ({b['kind']}: {b['basis']})"]
    out += table(("VENUE", "ASSET", "AMOUNT", "VALUE KRW"), [
        (venue, asset, x["amount"], krw(None if x["value_krw"] is None else Decimal(x["value_krw"])))
        for venue, assets in b["venues"].items() for asset, x in assets.items()], right=(2, 3))
    out.extend(f"  {venue}: {why}" for venue, why in b["errors"].items())
    out.append(f"equity  {krw(None if b['equity_krw'] is None else Decimal(b['equity_krw']))} KRW"
               + (f" (not valued: {', '.join(b['unvalued_assets'])})" if b["unvalued_assets"] else ""))
    real = r["realized"]
    if real["keeps_history"]:
        out.append(f"realized  {krw(Decimal(real['total_krw']))} KRW in {real['trades']} round trips (win rate "
                   f"{percent(None if real['win_rate'] is None else Decimal(real['win_rate']), 1)}); today "
                   f"{krw(Decimal(real['today_krw']))} KRW")
    else:
        out.append(f"realized  {r['storage']} keeps no closed positions")
    return out
