"""Record market snapshots and replay them through the engine (``arbframe record``, ``arbframe run --mode backtest``).

Recording format: JSON lines, gzip-compressed when the file name ends in ``.gz``. Line 1 is a header::

    {"arbframe_recording": 1, "domestic": "upbit", "foreign": "binance", "symbols": ["BTC", "ETH"],
     "quote_currencies": {"upbit": "KRW", "binance": "USDT"}, "fees": {"upbit": "0.0005", "binance": "0.001"},
     "rules": {"upbit": {"BTC": [null, "0.00000001", "0.00000001", "5000"]}, ...}, "simulated": true}

(rules are ``[tick_size, step_size, min_qty, min_notional]``). Every further line is one snapshot::

    {"t": "2026-01-01T00:00:00+00:00", "fx": ["1380.12", "simulated", "<fx ts>", "<fx id>"],
     "b": {"upbit": {"BTC": ["<bids>", "<asks>"], "USDT": [...]}, "binance": {...}}}

where ``<bids>``/``<asks>`` are ``"price qty price qty ..."`` (decimal text, exact; best level first). A book
may carry its own timestamp as a third element.

Replay is deterministic: ids come from a seeded :class:`~arbframe.IdGenerator`, every timestamp from the data,
and nothing reads the clock, so the same recording and config give byte-identical output files. Book levels are
converted to decimals lazily (only the levels a VWAP walks), which is what makes replay fast; a malformed value
still fails with the file name and line number.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from arbframe.engine import Engine, MarketSnapshot
from arbframe.errors import ArbframeError
from arbframe.metrics import TradingMetrics
from arbframe.models import ZERO, BookLevel, Direction, FxRate, IdGenerator, MarketRules, OrderBook, utcnow
from arbframe.paper import PaperWallet
from arbframe.premium import PREMIUM_QUANTUM
from arbframe.replay_fastpath import ReplayFastPath
from arbframe.strategy import StrategyConfig

if TYPE_CHECKING:
    from arbframe.plugins import Kernel
    from arbframe.runner import RunOptions

log = logging.getLogger("arbframe.backtest")

RECORDING_VERSION = 1
TABLE_FILES = ("spreads.csv", "positions.csv", "orders.csv", "trades.csv", "fx_rates.csv", "errors.csv")
SUMMARY_FILE = "summary.json"
CHART_FILE = "premium_equity.png"


class BacktestDataError(ArbframeError):
    """A recording that cannot be replayed; the message names the file and line."""

    exit_status = 2


def open_recording(path: str | Path, mode: str) -> IO[Any]:
    """Open a recording: ``w`` for writing text, ``rb`` for reading bytes (in 1 MiB reads: the replay hands lines
    to the JSON decoder undecoded); gzip when the name ends in ``.gz``."""
    p = Path(path)
    if mode == "rb":
        if p.suffix == ".gz":
            return gzip.open(p, "rb")
        return open(p, "rb", buffering=_READ_BUFFER)
    if mode != "w":
        raise ValueError(f"open_recording mode must be 'w' or 'rb', not {mode!r}")
    if p.suffix == ".gz":
        # mtime=0 and no file name in the gzip header: the same snapshots give the same bytes
        raw = open(p, "wb")  # noqa: SIM115 - closed through the wrapper
        gz = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0)
        return _ClosingTextWrapper(gz, raw)
    return open(p, "w", encoding="utf-8", newline="\n")


_READ_BUFFER = 1 << 20


class _ClosingTextWrapper(io.TextIOWrapper):
    def __init__(self, gz: gzip.GzipFile, raw: IO[bytes]) -> None:
        super().__init__(gz, encoding="utf-8", newline="\n")
        self._raw = raw

    def close(self) -> None:
        super().close()
        self._raw.close()


# ------------------------------------------------------------------------------------------------- encoding
def _packed(levels: Sequence[BookLevel]) -> str:
    return " ".join(f"{format(level.price, 'f')} {format(level.qty, 'f')}" for level in levels)


def _rules_row(r: MarketRules) -> list[str | None]:
    return [None if r.tick_size is None else format(r.tick_size, "f"), format(r.step_size, "f"),
            format(r.min_qty, "f"), format(r.min_notional, "f")]


def make_header(
    cfg: StrategyConfig,
    quote_currencies: Mapping[str, str],
    fees: Mapping[str, Decimal],
    rules: Mapping[tuple[str, str], MarketRules],
    simulated: bool,
) -> dict[str, Any]:
    rules_out: dict[str, dict[str, Any]] = {}
    for (venue, symbol), r in sorted(rules.items()):
        rules_out.setdefault(venue, {})[symbol] = _rules_row(r)
    return {
        "arbframe_recording": RECORDING_VERSION,
        "domestic": cfg.domestic,
        "foreign": cfg.foreign,
        "symbols": list(cfg.symbols),
        "quote_currencies": dict(quote_currencies),
        "fees": {k: format(v, "f") for k, v in fees.items()},
        "rules": rules_out,
        "simulated": simulated,
    }


def encode_snapshot(snap: MarketSnapshot) -> str:
    """One JSON line (without the newline) for ``snap``."""
    ts = snap.ts.isoformat()
    books: dict[str, dict[str, list[Any]]] = {}
    for (venue, symbol), book in snap.books.items():
        entry: list[Any] = [_packed(book.bids), _packed(book.asks)]
        if book.ts != snap.ts:
            entry.append(book.ts.isoformat())
        books.setdefault(venue, {})[symbol] = entry
    fx = snap.fx
    fx_row = None if fx is None else [format(fx.rate, "f"), fx.source, fx.ts.isoformat(), fx.id]
    return json.dumps({"t": ts, "fx": fx_row, "b": books}, separators=(",", ":"))


# ------------------------------------------------------------------------------------------------- decoding
class LazyLevels(Sequence[BookLevel]):
    """Book levels kept as the recorded text and parsed only as far as they are read.

    ``packed`` is ``"price qty price qty ..."``; ``where`` is ``(path, line, venue, symbol, side)`` for errors.
    Levels are split off the text one at a time, so a VWAP that walks two levels parses two levels;
    :meth:`vwap` and :meth:`top_price` (used by the premium math) never build :class:`BookLevel` objects.
    """

    __slots__ = ("_n", "_px", "_qx", "_rest", "_where")

    def __init__(self, packed: str, where: tuple[Any, ...]) -> None:
        self._where = where
        self._n = -1
        px: list[Decimal] = []
        qx: list[Decimal] = []
        # every tick reads the best level (top price, VWAP): parse it right away, inline. Anything unusual (a lone
        # number, a bad value) is left to the lazy path, which raises the same line-numbered error when read.
        parts = packed.split(None, 2)
        if len(parts) >= 2:
            try:
                price, qty = Decimal(parts[0]), Decimal(parts[1])
                ok = price > 0 and qty > 0
            except (InvalidOperation, ValueError):
                ok = False
            if ok:
                px.append(price)
                qx.append(qty)
                packed = parts[2] if len(parts) == 3 else ""
        self._px = px
        self._qx = qx
        self._rest = packed

    def _fail(self, what: str) -> BacktestDataError:
        path, line, venue, symbol, side = self._where
        return BacktestDataError(f"{path}:{line}: book {venue}/{symbol} {side}{what}")

    def __len__(self) -> int:
        n = self._n
        if n < 0:
            text = self._rest
            tokens = len(text.split()) if text else 0
            if tokens % 2:
                raise self._fail(f": expected price/quantity pairs, got an odd count of numbers ({tokens})")
            n = self._n = len(self._px) + (tokens >> 1)
        return n

    def _convert(self, upto: int) -> bool:
        """Parse levels until ``upto`` are known; False when the text runs out first."""
        px, qx = self._px, self._qx
        while len(px) < upto:
            rest = self._rest
            if not rest:
                return False
            parts = rest.split(None, 2)
            if len(parts) < 2:
                raise self._fail(f": expected price/quantity pairs, got a lone {parts[0]!r}")
            p, q = parts[0], parts[1]
            self._rest = parts[2] if len(parts) == 3 else ""
            try:
                price, qty = Decimal(p), Decimal(q)
                if not (price > 0 and qty > 0):
                    raise ValueError
            except (InvalidOperation, ValueError):
                raise self._fail(
                    f", level {len(px) + 1}: price and quantity must be positive decimals, got {p!r} and {q!r}"
                ) from None
            px.append(price)
            qx.append(qty)
        return True

    def top_price(self) -> Decimal | None:
        px = self._px
        if px or self._convert(1):
            return px[0]
        return None

    def vwap(self, qty: Decimal) -> Decimal | None:
        """Average price of ``qty`` walked through these levels; None when they are too thin."""
        px, qx = self._px, self._qx
        if qx and qx[0] >= qty and qty > 0:  # the best level alone holds qty (the common case)
            return px[0]
        if qty <= 0:
            return None
        if not px and not self._convert(1):
            return None
        if qx[0] >= qty:
            return px[0]
        remaining = qty
        cost = ZERO
        i = 0
        while True:
            if i >= len(px) and not self._convert(i + 1):
                return None
            level_qty = qx[i]
            if level_qty >= remaining:
                return (cost + remaining * px[i]) / qty
            cost += level_qty * px[i]
            remaining -= level_qty
            i += 1

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            self._convert(len(self))
            return tuple(BookLevel(p, q) for p, q in zip(self._px, self._qx, strict=True))[index]
        if index < 0:
            index += len(self)
        if index < 0 or (index >= len(self._px) and not self._convert(index + 1)):
            raise IndexError(index)
        return BookLevel(self._px[index], self._qx[index])

    def __iter__(self) -> Iterator[BookLevel]:
        px, qx = self._px, self._qx
        i = 0
        while True:
            if i >= len(px) and not self._convert(i + 1):
                return
            yield BookLevel(px[i], qx[i])
            i += 1

    def __bool__(self) -> bool:
        return bool(self._px) or bool(self._rest)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence):
            return tuple(self) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"LazyLevels({len(self)} levels)"


def _parse_ts(value: Any, at: Any, what: str) -> datetime:
    """An aware timestamp; ``at`` is a reader (its path and current line name the place) or a text."""
    where = at if isinstance(at, str) else f"{at.path}:{at.lineno}"
    if type(value) is not str:
        raise BacktestDataError(f"{where}: {what} must be an ISO-8601 timestamp string, got {value!r}")
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        raise BacktestDataError(f"{where}: {what} is not an ISO-8601 timestamp: {value!r}") from None
    if ts.tzinfo is None:
        raise BacktestDataError(f"{where}: {what} has no time zone: {value!r}")
    return ts


# frozen slots dataclasses built field by field through their slot descriptors (RecordingReader.decode)
_new = object.__new__
_set_exchange, _set_symbol, _set_bids, _set_asks, _set_ts, _set_simulated = (
    getattr(OrderBook, name).__set__ for name in ("exchange", "symbol", "bids", "asks", "ts", "simulated")
)
_set_snap_ts, _set_snap_books, _set_snap_fx, _set_snap_simulated = (
    getattr(MarketSnapshot, name).__set__ for name in ("ts", "books", "fx", "simulated")
)
_FX_SETTERS = tuple(
    getattr(FxRate, name).__set__ for name in ("id", "ts", "rate", "source", "base", "quote", "simulated")
)
assert [f.name for f in fields(FxRate)] == ["id", "ts", "rate", "source", "base", "quote", "simulated"]
assert [f.name for f in fields(OrderBook)] == ["exchange", "symbol", "bids", "asks", "ts", "simulated"]
assert [f.name for f in fields(MarketSnapshot)] == ["ts", "books", "fx", "simulated"]


def _fast_loads() -> Any:
    """orjson's decoder when installed (the ``fast`` extra: about three times json's speed on snapshot lines; the
    recorded numbers are strings, so both give the same objects), else json's."""
    try:
        import orjson
    except ImportError:
        return json.loads
    return orjson.loads


class RecordingReader:
    """Iterates a recording: :attr:`header`, then :class:`MarketSnapshot` objects, with line-numbered errors."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise BacktestDataError(f"recording not found: {self.path}")
        self._fh: IO[bytes] = open_recording(self.path, "rb")
        self.lineno = 0
        first = self._next_line()
        if first is None:
            raise BacktestDataError(f"{self.path}: empty recording (no header line)")
        header = self._json(first)
        if not isinstance(header, dict) or header.get("arbframe_recording") != RECORDING_VERSION:
            raise BacktestDataError(
                f"{self.path}:1: not an arbframe recording header (expected \"arbframe_recording\": "
                f"{RECORDING_VERSION})"
            )
        self.header = header
        self.simulated = bool(header.get("simulated", False))
        self._fx_cache: tuple[Any, FxRate] | None = None
        self._last_t_text: Any = None
        self._last_t: datetime | None = None

    def _next_line(self) -> bytes | None:
        try:
            line = self._fh.readline()
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise BacktestDataError(f"{self.path}:{self.lineno + 1}: cannot read ({exc})") from None
        if not line:
            return None
        self.lineno += 1
        return line

    def _json(self, raw: bytes) -> Any:
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BacktestDataError(
                f"{self.path}:{self.lineno}: not UTF-8 text (byte {exc.start + 1} of the line)"
            ) from None
        try:
            return json.loads(line)
        except json.JSONDecodeError as exc:
            hint = " (truncated line?)" if not line.endswith("\n") or exc.pos >= len(line.rstrip()) else ""
            raise BacktestDataError(
                f"{self.path}:{self.lineno}: not valid JSON{hint}: {exc.msg} at column {exc.colno}"
            ) from None

    def close(self) -> None:
        self._fh.close()

    def __iter__(self) -> Iterator[MarketSnapshot]:
        decode = self.decode
        for row in self.rows():
            yield decode(row)

    def rows(self) -> Iterator[Any]:
        """The decoded JSON of each snapshot line (not yet checked: :meth:`decode` does that)."""
        fh = self._fh
        readline = fh.readline
        loads = _fast_loads()
        try:
            while True:
                try:
                    line = readline()
                except (OSError, EOFError, gzip.BadGzipFile) as exc:
                    raise BacktestDataError(f"{self.path}:{self.lineno + 1}: cannot read ({exc})") from None
                if not line:
                    return
                self.lineno += 1
                try:
                    row = loads(line)
                except ValueError:  # json's and orjson's decode errors, bad UTF-8
                    if line.isspace():
                        continue
                    row = self._json(line)  # raises with the line number (or takes what only json reads)
                yield row
        finally:
            self.close()

    def decode(self, row: Any) -> MarketSnapshot:
        if type(row) is not dict:
            raise BacktestDataError(
                f"{self.path}:{self.lineno}: a snapshot must be a JSON object, got {type(row).__name__}"
            )
        try:
            t, fx_row, b = row["t"], row["fx"], row["b"]
        except KeyError as exc:
            raise BacktestDataError(f"{self.path}:{self.lineno}: snapshot is missing the key {exc.args[0]!r}") from None
        if t == self._last_t_text:
            ts = self._last_t
        else:
            ts = self._last_t = _parse_ts(t, self, '"t"')
            self._last_t_text = t
        fx = self._fx(fx_row, self) if fx_row is not None else None
        if type(b) is not dict:
            raise BacktestDataError(f"{self.path}:{self.lineno}: \"b\" must map venue -> symbol -> [bids, asks]")
        simulated = self.simulated
        books: dict[tuple[str, str], OrderBook] = {}
        path, lineno = self.path, self.lineno
        for venue, symbols in b.items():
            if type(symbols) is not dict:
                raise BacktestDataError(
                    f"{path}:{lineno}: books of {venue!r} must be an object of symbol -> [bids, asks]"
                )
            for symbol, entry in symbols.items():
                if type(entry) is not list or not 2 <= len(entry) <= 3:
                    raise BacktestDataError(
                        f"{path}:{lineno}: book {venue}/{symbol} must be [bids, asks] or [bids, asks, ts]"
                    )
                bids, asks = entry[0], entry[1]
                if type(bids) is not str or type(asks) is not str:
                    raise BacktestDataError(
                        f"{path}:{lineno}: book {venue}/{symbol}: bids and asks must be strings of "
                        "\"price qty ...\" pairs"
                    )
                book_ts = ts if len(entry) == 2 else _parse_ts(entry[2], self, f"book {venue}/{symbol} timestamp")
                # OrderBook(venue, symbol, bids, asks, book_ts, simulated) without the frozen dataclass __init__
                # (a third of the decode time): the slots are filled directly, the object is the same
                book = _new(OrderBook)
                _set_exchange(book, venue)
                _set_symbol(book, symbol)
                _set_bids(book, LazyLevels(bids, (path, lineno, venue, symbol, "bids")))
                _set_asks(book, LazyLevels(asks, (path, lineno, venue, symbol, "asks")))
                _set_ts(book, book_ts)
                _set_simulated(book, simulated)
                books[(venue, symbol)] = book
        snap = _new(MarketSnapshot)
        _set_snap_ts(snap, ts)
        _set_snap_books(snap, books)
        _set_snap_fx(snap, fx)
        _set_snap_simulated(snap, simulated)
        return snap

    def _fx(self, fx_row: Any, at: Any) -> FxRate | None:
        cached = self._fx_cache
        if cached is not None and cached[0] == fx_row:
            return cached[1]
        where = f"{self.path}:{self.lineno}"
        if type(fx_row) is not list or len(fx_row) != 4:
            raise BacktestDataError(f"{where}: \"fx\" must be [rate, source, ts, id] or null, got {fx_row!r}")
        rate_text, source, fx_ts, fx_id = fx_row
        try:
            if type(rate_text) is not str:
                raise TypeError
            rate = Decimal(rate_text)
            if not rate > 0:
                raise ValueError
        except (InvalidOperation, TypeError, ValueError):
            raise BacktestDataError(f"{where}: FX rate must be a positive decimal string, got {rate_text!r}") from None
        if type(source) is not str or type(fx_id) is not str:
            raise BacktestDataError(f"{where}: FX source and id must be strings")
        if fx_ts == self._last_t_text and fx_ts is not None:
            fx_when = self._last_t  # the rate stamped with the snapshot's own time (the common case)
        else:
            fx_when = _parse_ts(fx_ts, self, "FX timestamp")
        fx = _new(FxRate)  # FxRate(id, ts, rate, source, "USD", "KRW", simulated), slot by slot
        for setter, value in zip(_FX_SETTERS, (fx_id, fx_when, rate, source, "USD", "KRW", self.simulated),
                                 strict=True):
            setter(fx, value)
        self._fx_cache = (fx_row, fx)
        return fx

    def rules(self) -> dict[tuple[str, str], MarketRules]:
        out = {}
        try:
            for venue, symbols in (self.header.get("rules") or {}).items():
                for symbol, row in symbols.items():
                    tick, step, min_qty, min_notional = row
                    out[(venue, symbol)] = MarketRules(
                        symbol, None if tick is None else Decimal(tick), Decimal(step), Decimal(min_qty),
                        Decimal(min_notional),
                    )
        except (TypeError, ValueError, InvalidOperation) as exc:
            raise BacktestDataError(f"{self.path}:1: bad \"rules\" in the header ({exc!r})") from None
        return out


# --------------------------------------------------------------------------------------------------- replay
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
        ]
        for direction, rng in sorted(self.premium_range.items()):
            lo, hi = rng.get("min"), rng.get("max")
            text = "n/a" if lo is None else f"{float(lo) * 100:+.3f}% .. {float(hi) * 100:+.3f}%"  # type: ignore[arg-type]
            rows.append((f"premium range ({direction})", text))
        width = max(len(k) for k, _ in rows)
        note = " [simulated data]" if self.simulated else ""
        lines = [f"[BACKTEST] summary{note}"] + [f"[BACKTEST]   {k.ljust(width)}  {v}" for k, v in rows]
        return "\n".join(lines)


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
    from arbframe.runner import DEFAULT_BALANCES

    paper = (config.get("paper") or {}).get("balances") or {}
    wallets = {
        venue: PaperWallet(venue, quotes.get(venue, ""), {
            k: str(v) for k, v in (paper.get(venue) or DEFAULT_BALANCES.get(quotes.get(venue, ""), {})).items()
        })
        for venue in (domestic, foreign)
    }
    return Engine(
        cfg, storage=storage, fee_domestic=fee_d, fee_foreign=fee_f, rules=rules, quote_currencies=quotes,
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
    for d in Direction:
        summary.premium_range[d.value] = {
            "min": None if d not in lo else format(lo[d].quantize(PREMIUM_QUANTUM), "f"),
            "max": None if d not in hi else format(hi[d].quantize(PREMIUM_QUANTUM), "f"),
        }
    return summary


def write_chart(points: list[tuple[Any, ...]], path: Path) -> bool:
    """Premium and equity over time as a PNG; False (and a log line) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("[BACKTEST] no chart: matplotlib is not installed (pip install 'arbframe[plot]')")
        return False
    xs = [p[0] for p in points]
    fig, (ax1, ax2) = plt.subplots(2, 1, sharex=True, figsize=(10, 6))
    ax1.plot(xs, [None if p[1] is None else p[1] * 100 for p in points], linewidth=0.8)
    ax1.set_ylabel("kimchi premium (%)")
    ax2.plot(xs, [p[2] for p in points], linewidth=0.8, color="tab:green")
    ax2.set_ylabel("equity (KRW)")
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return True


# ------------------------------------------------------------------------------------------------- commands
def output_dir(opts: RunOptions, config: Mapping[str, Any]) -> Path:
    bt = config.get("backtest") or {}
    return Path(opts.output or bt.get("output_dir") or "data/backtest")


def backtest_overrides(opts: RunOptions, config: Mapping[str, Any]) -> dict[str, Any]:
    """Config overrides for a replay: CSV output goes to the backtest output directory."""
    storage = config.get("storage") or {}
    if storage.get("backend", "csv") in ("csv", "hybrid"):
        return {"storage": {"csv": {"data_dir": str(output_dir(opts, config))}}}
    return {}


def run_backtest(kernel: Kernel, opts: RunOptions) -> int:
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


async def record_loop(kernel: Kernel, opts: RunOptions, path: Path) -> int:
    """``arbframe record``: save one snapshot per interval until a stop condition."""
    from arbframe.runner import StopSignal, TradingService, _interval, paced

    mock = bool(kernel.context.mock if opts.mock is None else opts.mock)
    service = TradingService(kernel, mock=mock, with_engine=False)
    stop = StopSignal()
    stop.install()
    count = 0
    fh: IO[str] | None = None
    try:
        await service.start()
        quotes = {n: e.quote_currency for n, e in service.exchanges.items()}
        fees = {n: e.fee_rate for n, e in service.exchanges.items()}
        header = make_header(service.cfg, quotes, fees, service.rules, mock)
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open_recording(path, "w")
        fh.write(json.dumps(header, separators=(",", ":")) + "\n")
        interval = _interval(opts, kernel.config)
        note = service.note()
        log.info("[RECORD] recording snapshots to %s (interval=%gs)%s", path, interval, note)
        async for _ in paced(opts, interval, stop):
            snap = await service.snapshot()
            fh.write(encode_snapshot(snap) + "\n")
            fh.flush()
            count += 1
            if count % 100 == 0 or count == 1:
                log.info("[RECORD] %d snapshots written%s", count, note)
    finally:
        stop.uninstall()
        if fh is not None:
            fh.close()
        log.info("[RECORD] done: %d snapshots in %s", count, path)
        await service.close()
    return 0


def default_recording_path() -> Path:
    return Path("data/recordings") / (utcnow().astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + ".jsonl.gz")


def record(opts: RunOptions, configs: list[str], output: str | None) -> int:
    from arbframe.config import load_config
    from arbframe.plugins import Kernel, validate_selected

    overrides: dict[str, Any] = {}
    if opts.mock is not None:
        overrides["mock_mode"] = opts.mock
    config = load_config(configs, overrides=overrides)
    from arbframe.runner import service_name

    kernel = Kernel(config, mode="paper", mock=bool(config.get("mock_mode", False)),
                    service_name=service_name(config) + "_recorder")
    try:
        validate_selected(kernel)
    except Exception:
        kernel.close()
        raise
    path = Path(output) if output else default_recording_path()
    return asyncio.run(record_loop(kernel, opts, path))


def simulate_recording(
    path: str | Path,
    *,
    snapshots: int,
    symbols: Sequence[str] = ("BTC", "ETH"),
    seed: int = 42,
    depth: int = 15,
    start: datetime | None = None,
    fees: Mapping[str, str] | None = None,
    tether: bool = True,
    book_lag_seconds: float = 0.0,
    **market_kwargs: Any,
) -> Path:
    """Write a recording of the simulated market without the network or a clock (tests, benchmarks).

    ``book_lag_seconds`` > 0 stamps each book with its own time, up to that much before the snapshot (seeded), as
    books fetched from real venues are."""
    import random
    from dataclasses import replace
    from datetime import timedelta

    from arbframe.simulation import SimulatedMarket

    lag = random.Random(seed)

    market = SimulatedMarket(symbols, seed=seed, start=start or datetime(2026, 1, 1, tzinfo=timezone.utc),
                             depth=depth, **market_kwargs)
    venues = list(market.venues)
    domestic = next(v for v in venues if market.venues[v] == "KRW")
    foreign = next(v for v in venues if market.venues[v] != "KRW")
    fee_map = {k: Decimal(v) for k, v in (fees or {domestic: "0.0005", foreign: "0.001"}).items()}
    cfg = StrategyConfig(domestic=domestic, foreign=foreign, symbols=tuple(market.symbols))
    rules = {(v, s): market.rules(v, s) for v in (domestic, foreign) for s in market.symbols}
    header = make_header(cfg, dict(market.venues), fee_map, rules, True)
    p = Path(path)
    with open_recording(p, "w") as fh:
        fh.write(json.dumps(header, separators=(",", ":")) + "\n")
        for _ in range(snapshots):
            market.step()
            books = {(v, s): market.order_book(v, s, depth) for s in market.symbols for v in (domestic, foreign)}
            if tether:
                books[(domestic, "USDT")] = market.order_book(domestic, "USDT", depth)
            if book_lag_seconds > 0:
                books = {k: replace(b, ts=b.ts - timedelta(seconds=round(lag.uniform(0, book_lag_seconds), 3)))
                         for k, b in books.items()}
            fh.write(encode_snapshot(MarketSnapshot(market.now, books, market.fx_rate(), True)) + "\n")
    return p
