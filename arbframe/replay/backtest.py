"""Replay a recording through the engine (``arbframe run --mode backtest``): output tables, summary, chart.

Replay is deterministic: ids come from a seeded :class:`~arbframe.IdGenerator`, every timestamp from the data,
and nothing reads the clock, so the same recording and config give byte-identical output files. Snapshots on
which nothing can happen skip the engine (:mod:`arbframe.replay.fastpath`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from arbframe.builtins.storage import NullStorage
from arbframe.core.models import ZERO, Direction, IdGenerator
from arbframe.replay.charts import write_chart
from arbframe.replay.fastpath import ReplayFastPath
from arbframe.replay.recording import BacktestDataError, RecordingReader
from arbframe.trading.accounting import fee_schedules
from arbframe.trading.engine import Engine
from arbframe.trading.paper import PaperWallet
from arbframe.trading.premium import PREMIUM_QUANTUM
from arbframe.trading.statistics import TradingMetrics
from arbframe.trading.strategy import StrategyConfig

if TYPE_CHECKING:
    from arbframe.kernel.plugin_host import Kernel


log = logging.getLogger("arbframe.backtest")

TABLE_FILES = ("spreads.csv", "positions.csv", "orders.csv", "trades.csv", "fx_rates.csv", "errors.csv")
SUMMARY_FILE = "summary.json"
CHART_FILE = "premium_equity.png"


@dataclass
class BacktestSummary:
    snapshots: int = 0
    first_ts: str | None = None
    last_ts: str | None = None
    trades: int = 0
    wins: int = 0
    win_rate: float = 0.0
    realized_pnl_krw: str = "0"
    unrealized_pnl_krw: str = "0"
    open_positions: int = 0
    max_drawdown_krw: str = "0"
    # the equity decomposition (docs/TRADING.md "PnL"), exact: the terms add up to the change to the last digit
    equity_krw: str = "0"
    start_equity_krw: str = "0"
    equity_change_krw: str = "0"
    equity_change_terms_krw: dict[str, str] = field(default_factory=dict)  # realized, unrealized, close_cost, ...
    coin_residue: dict[str, str] = field(default_factory=dict)
    premium_range: dict[str, dict[str, str | None]] = field(default_factory=dict)
    simulated: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    def table(self) -> str:
        rows = [
            ("snapshots", str(self.snapshots)),
            ("period", f"{self.first_ts} .. {self.last_ts}"),
            ("trades (closed positions)", str(self.trades)),
            ("win rate", f"{self.win_rate * 100:.1f}%"),
            ("realized PnL (KRW)", f"{Decimal(self.realized_pnl_krw).quantize(Decimal(1)):,}"),
            ("unrealized PnL at end (KRW)", f"{Decimal(self.unrealized_pnl_krw).quantize(Decimal(1)):,}"),
            ("open positions at end", str(self.open_positions)),
            ("max drawdown (KRW)", f"{Decimal(self.max_drawdown_krw).quantize(Decimal(1)):,}"),
            ("equity at start / end (KRW)", f"{_krw(self.start_equity_krw)} / {_krw(self.equity_krw)}"),
            ("equity change (KRW)", _krw(self.equity_change_krw)),
        ]
        sign = "="
        for name, label in _TERMS:
            amount = self.equity_change_terms_krw.get(name)
            if amount is not None:
                rows.append((f"  {sign} {label}", _krw(amount)))
                sign = "+"
        for coin, qty in sorted(self.coin_residue.items()):
            rows.append((f"coin residue {coin}", qty))
        for direction, rng in sorted(self.premium_range.items()):
            lo, hi = rng.get("min"), rng.get("max")
            text = "n/a" if lo is None else f"{float(lo) * 100:+.3f}% .. {float(hi) * 100:+.3f}%"  # type: ignore[arg-type]
            rows.append((f"premium range ({direction})", text))
        width = max(len(k) for k, _ in rows)
        note = " [simulated data]" if self.simulated else ""
        lines = [f"[BACKTEST] summary{note}"] + [f"[BACKTEST]   {k.ljust(width)}  {v}" for k, v in rows]
        return "\n".join(lines)


#: the terms of the equity change, in the summary's order (EquityBreakdown.terms; open_at_start is 0 in a backtest)
_TERMS = (("realized", "realized trade PnL"), ("unrealized", "unrealized PnL of open positions"),
          ("close_cost", "their close cost, not paid (equity holds them at marks)"),
          ("fx_translation", "FX translation of USDT held"), ("coin_revaluation", "coin revaluation"),
          ("open_at_start", "open positions taken over at the start"))


def _krw(text: str) -> str:
    return f"{Decimal(text).quantize(Decimal(1)):,}"


def _exact(value: Decimal) -> str:
    """Every digit of ``value`` (trailing zeros after the point dropped)."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def build_engine(
    reader: RecordingReader,
    config: Mapping[str, Any],
    storage: Any,
    *,
    metrics: TradingMetrics | None = None,
    notify: Any = None,
    seed: int = 42,
    spread_log_interval_seconds: float | None = None,
    spread_listeners: bool = False,
) -> Engine:
    """The engine a replay runs: strategy from ``config``, venues, fees and rules from the recording header."""
    h = reader.header
    cfg = StrategyConfig.from_config(config)
    domestic, foreign = str(h.get("domestic")), str(h.get("foreign"))
    symbols = tuple(s for s in cfg.symbols if s in (h.get("symbols") or []))
    if not symbols:
        raise BacktestDataError(
            f"{reader.path}: the recording holds symbols {h.get('symbols')}, none of arbitrage.symbols {cfg.symbols}"
        )
    from dataclasses import replace

    cfg = replace(cfg, domestic=domestic, foreign=foreign, symbols=symbols)
    quotes = dict(h.get("quote_currencies") or {})
    fees = h.get("fees") or {}
    try:
        fee_d, fee_f = Decimal(fees[domestic]), Decimal(fees[foreign])
    except (KeyError, InvalidOperation, TypeError):
        raise BacktestDataError(f"{reader.path}:1: the header lacks valid fees for {domestic} and {foreign}") from None
    rules = reader.rules()
    for venue in (domestic, foreign):
        for symbol in symbols:
            if (venue, symbol) not in rules:
                raise BacktestDataError(f"{reader.path}:1: the header lacks rules for {venue}/{symbol}")
    from arbframe.trading.paper import DEFAULT_BALANCES

    paper = (config.get("paper") or {}).get("balances") or {}
    wallets = {
        venue: PaperWallet(venue, quotes.get(venue, ""), {
            k: str(v) for k, v in (paper.get(venue) or DEFAULT_BALANCES.get(quotes.get(venue, ""), {})).items()
        })
        for venue in (domestic, foreign)
    }
    try:
        schedules = fee_schedules(config, {domestic: fee_d, foreign: fee_f})
    except (ValueError, InvalidOperation) as exc:
        raise BacktestDataError(f"paper.fees: {exc}") from None
    return Engine(
        cfg, storage=storage, fee_domestic=fee_d, fee_foreign=fee_f, fees=schedules, rules=rules,
        quote_currencies=quotes,
        wallets=wallets, ids=IdGenerator(seed), cache=None, metrics=metrics, notify=notify,
        simulated=reader.simulated,
        log_spreads=bool((config.get("arbitrage") or {}).get("log_spreads", True)),
        spread_log_interval_seconds=float(
            (config.get("backtest") or {}).get("spread_log_interval_seconds", 60)
            if spread_log_interval_seconds is None else spread_log_interval_seconds
        ),
        spread_listeners=spread_listeners,
    )


def replay(reader: RecordingReader, engine: Engine, *, chart_points: list[tuple[Any, ...]] | None = None
           ) -> BacktestSummary:
    """Run every snapshot of ``reader`` through ``engine`` as fast as it goes; returns the summary.

    ``fx_rates`` gets each rate that a recorded spread or a position opened or closed was computed with (a
    recording carries every rate already; logging each would double the output for nothing).
    """
    summary = BacktestSummary(simulated=reader.simulated)
    stats = engine.stats
    storage = engine.storage
    peak = ZERO
    max_dd = ZERO
    peak_f = max_dd_f = 0.0
    lo: dict[Direction, Decimal] = {}
    hi: dict[Direction, Decimal] = {}
    first = last = None
    n = 0
    fx_logged: str | None = None
    process = engine.process
    decode = reader.decode
    lo_f: dict[Direction, float] = {}
    hi_f: dict[Direction, float] = {}
    chart = chart_points is not None
    fast = None
    if (type(reader) is RecordingReader and engine.metrics is None and engine.cache is None
            and not engine.spread_listeners and not (engine.log_spreads and engine.spread_log_interval <= 0)):
        fast = ReplayFastPath(engine, lo_f, hi_f, chart)
    fast_tick = fast.tick if fast is not None else None
    begin_tick = engine.executor.begin_tick
    positions = engine.positions
    last_fast_fx: Any = None  # the FX row of the last snapshot when it took the fast path
    ledger_used = True  # the paper executor's liquidity ledger may hold the last full tick's fills
    stale_marks = False  # stats.unrealized_pnl_krw lags the last fast snapshot (its exact value was not needed)
    for row in reader.rows():
        hit = fast_tick(row, reader) if fast_tick is not None else None
        if hit is not None:
            # what Engine.process does on a tick without spreads, closes, entries or new notes
            ts, last_fast_fx, kim, unrealized_f, error, notes = hit
            if first is None:
                first = ts
            last = ts
            if ledger_used:  # Engine.process starts each tick with a fresh liquidity ledger
                begin_tick()
                ledger_used = False
            stats.now = ts
            engine.ticks += 1
            for symbol, note in notes:
                engine._note_block(symbol, note)
            stats.open_positions = len(positions)
            n += 1
            total = stats.total_pnl_krw
            if unrealized_f is None:
                stats.unrealized_pnl_krw = ZERO
                stale_marks = False
                equity = total
            else:
                equity_f = float(total) + unrealized_f
                slack = error + 1e-9 * (abs(equity_f) + abs(peak_f)) + 1e-6
                if chart or equity_f + slack >= peak_f or peak_f - equity_f + slack >= max_dd_f:
                    stats.unrealized_pnl_krw = fast.exact_unrealized()  # type: ignore[union-attr]
                    stale_marks = False
                    equity = total + stats.unrealized_pnl_krw
                else:  # provably neither a new peak nor a new drawdown: the exact mark can wait
                    stale_marks = True
                    continue
            if equity > peak:
                peak = equity
                peak_f = float(peak)
            elif peak - equity > max_dd:
                max_dd = peak - equity
                max_dd_f = float(max_dd)
            if chart_points is not None:
                chart_points.append((ts, kim, float(equity)))
            continue
        stale_marks = False
        last_fast_fx = None
        ledger_used = True
        if fast is not None:
            fast.forget()
        snap = decode(row)
        if first is None:
            first = snap.ts
        last = snap.ts
        logged = engine.spread_logs
        result = process(snap)
        n += 1
        fx = snap.fx
        if (fx is not None and fx.id != fx_logged
                and (engine.spread_logs != logged or result.opened or result.closed)):
            fx_logged = fx.id
            storage.log_fx_rate(fx)
        for s in result.quotes:
            p = s.premium
            d = s.direction
            cur = lo.get(d)
            if cur is None or p < cur:
                lo[d] = p
                lo_f[d] = float(p)
            cur = hi.get(d)
            if cur is None or p > cur:
                hi[d] = p
                hi_f[d] = float(p)
        equity = stats.total_pnl_krw + stats.unrealized_pnl_krw
        if equity > peak:
            peak = equity
            peak_f = float(peak)
        elif peak - equity > max_dd:
            max_dd = peak - equity
            max_dd_f = float(max_dd)
        if chart_points is not None:
            kim = next((float(s.premium) for s in result.quotes if s.direction is Direction.KIMCHI), None)
            chart_points.append((snap.ts, kim, float(equity)))
    if stale_marks:
        stats.unrealized_pnl_krw = fast.exact_unrealized()  # type: ignore[union-attr]
    if fast is not None and fast.pending:
        fast.sync()
    if last_fast_fx is not None:
        engine.last_fx = reader._fx(last_fast_fx, reader)
    storage.flush()
    summary.snapshots = n
    summary.first_ts = first.isoformat() if first else None
    summary.last_ts = last.isoformat() if last else None
    summary.trades = stats.trades
    summary.wins = stats.wins
    summary.win_rate = round(stats.win_rate, 6)
    summary.realized_pnl_krw = format(stats.total_pnl_krw.quantize(Decimal("0.0001")), "f")
    summary.unrealized_pnl_krw = format(stats.unrealized_pnl_krw.quantize(Decimal("0.0001")), "f")
    summary.open_positions = len(engine.positions)
    summary.max_drawdown_krw = format(max_dd.quantize(Decimal("0.0001")), "f")
    parts = engine.breakdown()
    if parts is not None:
        summary.equity_krw = _exact(parts.equity)
        summary.start_equity_krw = _exact(parts.start_equity)
        summary.equity_change_krw = _exact(parts.change)
        summary.equity_change_terms_krw = {name: _exact(amount) for name, amount in parts.terms()
                                           if amount or name != "open_at_start"}
        summary.coin_residue = {coin: format(qty, "f") for coin, qty in sorted(parts.coin_residue.items()) if qty}
    for d in Direction:
        summary.premium_range[d.value] = {
            "min": None if d not in lo else format(lo[d].quantize(PREMIUM_QUANTUM), "f"),
            "max": None if d not in hi else format(hi[d].quantize(PREMIUM_QUANTUM), "f"),
        }
    return summary


def replay_recording(
    config: Mapping[str, Any],
    recordings: str | Path | Sequence[str | Path] | RecordingReader,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    seed: int | None = None,
    chart_points: list[tuple[Any, ...]] | None = None,
) -> BacktestSummary:
    """Replay recordings through a fresh engine and return the summary; nothing is written anywhere.

    ``config`` is an effective config (:func:`arbframe.load_config`: the strategy, paper wallets and fees come from
    it, venues, fee rates and rules from the recording header). ``recordings`` is a path, several paths (replayed
    as one, in time order) or a :class:`RecordingReader` (a preloaded one is reused without reading a file
    again). Only snapshots stamped in ``[start, end)`` are replayed (aware datetimes, None: unbounded; inside a
    reader's own window). The replay is the backtest's (fast path included, spreads not logged), so the same
    config and data give the same summary as ``arbframe run --mode backtest``. ``chart_points``, when given, gets
    ``(time, kimchi premium, equity)`` per snapshot (the equity curve; costs time, so only when asked).
    ``seed`` (default ``backtest.seed``, 42) seeds the record ids. Bad data raises :class:`BacktestDataError`
    naming the file and line.
    """
    if isinstance(recordings, RecordingReader):
        lo = recordings.start if start is None or (recordings.start is not None and recordings.start > start) \
            else start
        hi = recordings.end if end is None or (recordings.end is not None and recordings.end < end) else end
        if lo is not None and hi is not None and hi < lo:
            hi = lo  # disjoint windows: nothing to replay
        reader = recordings.window(lo, hi)
    elif isinstance(recordings, (str, Path)):
        reader = RecordingReader(recordings, start=start, end=end)
    else:
        reader = RecordingReader.preload(recordings).window(start, end)
    try:
        arbitrage = dict(config.get("arbitrage") or {})
        arbitrage["log_spreads"] = False  # nothing is stored: no spread to build (and the fast path stays on)
        bt = config.get("backtest") or {}
        engine = build_engine(reader, {**config, "arbitrage": arbitrage}, NullStorage(),
                              seed=int(bt.get("seed", 42)) if seed is None else seed)
        return replay(reader, engine, chart_points=chart_points)
    finally:
        reader.close()


class BacktestOptions(Protocol):
    """What a backtest takes from the command line (``arbframe run``'s options satisfy it)."""

    data: str | None
    output: str | None
    force: bool


def output_dir(opts: BacktestOptions, config: Mapping[str, Any]) -> Path:
    bt = config.get("backtest") or {}
    return Path(opts.output or bt.get("output_dir") or "data/backtest")


def backtest_overrides(opts: BacktestOptions, config: Mapping[str, Any]) -> dict[str, Any]:
    """Config overrides for a replay: CSV output goes to the backtest output directory."""
    storage = config.get("storage") or {}
    if storage.get("backend", "csv") in ("csv", "hybrid"):
        return {"storage": {"csv": {"data_dir": str(output_dir(opts, config))}}}
    return {}


def run_backtest(kernel: Kernel, opts: BacktestOptions) -> int:
    """``arbframe run --mode backtest --data FILE``."""
    config = kernel.config
    bt = config.get("backtest") or {}
    data = opts.data or bt.get("data")
    if not data:
        kernel.close()
        raise BacktestDataError("--mode backtest needs --data FILE (a recording made with `arbframe record`)")
    out = output_dir(opts, config)
    existing = [name for name in (*TABLE_FILES, SUMMARY_FILE) if (out / name).exists()]
    if existing:
        if not opts.force:
            kernel.close()
            raise BacktestDataError(
                f"output directory {out} already holds {', '.join(existing)}; choose another --output or pass "
                "--force to replace them"
            )
        for name in (*existing, CHART_FILE):
            (out / name).unlink(missing_ok=True)
    try:
        reader = RecordingReader(data)
    except BaseException:
        kernel.close()
        raise
    try:
        storage = kernel.load_storage()
        metrics = TradingMetrics.get(kernel.registry)
        listeners = bool(kernel.pm.hook.arbframe_on_spread.get_hookimpls())
        # per-tick metrics would cost a third of the replay: the numbers are published once at the end
        engine = build_engine(reader, config, storage, metrics=None, notify=kernel.notify,
                              seed=int(bt.get("seed", 42)), spread_listeners=listeners)
        note = " [simulated data]" if reader.simulated else ""
        log.info("[BACKTEST] replaying %s (%s/%s, symbols=%s) into %s%s", reader.path, engine.domestic,
                 engine.foreign, list(engine.cfg.symbols), storage.describe(), note)
        want_chart = bool(bt.get("chart", True))
        points: list[tuple[Any, ...]] | None = [] if want_chart else None
        t0 = time.perf_counter()
        summary = replay(reader, engine, chart_points=points)
        elapsed = time.perf_counter() - t0
        if summary.last_ts is not None:
            engine.sync_metrics(metrics, datetime.fromisoformat(summary.last_ts))
        out.mkdir(parents=True, exist_ok=True)
        (out / SUMMARY_FILE).write_text(summary.to_json(), encoding="utf-8")
        for line in summary.table().splitlines():
            log.info("%s", line)
        rate = summary.snapshots / elapsed if elapsed > 0 else float("inf")
        log.info("[BACKTEST] %d snapshots in %.2fs (%.0f snapshots/s); summary: %s", summary.snapshots, elapsed,
                 rate, out / SUMMARY_FILE)
        print(summary.table())
        if points is not None and points and write_chart(points, out / CHART_FILE):
            log.info("[BACKTEST] chart: %s", out / CHART_FILE)
    finally:
        reader.close()
        kernel.close()
    return 0
