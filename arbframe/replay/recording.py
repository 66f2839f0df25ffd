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

import gzip
import io
import json
import logging
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple

from arbframe.core.errors import ArbframeError
from arbframe.core.models import ZERO, BookLevel, FxRate, MarketRules, OrderBook
from arbframe.trading.engine import MarketSnapshot
from arbframe.trading.marketdata import text_has_nonpositive
from arbframe.trading.strategy import StrategyConfig

if TYPE_CHECKING:
    pass


log = logging.getLogger("arbframe.backtest")

RECORDING_VERSION = 1


class BacktestDataError(ArbframeError):
    """A recording that cannot be replayed; the message names the file and line."""

    exit_status = 2


def open_recording(path: str | Path, mode: str) -> IO[Any]:
    """Open a recording: ``w`` for writing text, ``rb`` for reading bytes (in 1 MiB reads: the replay hands lines
    to the JSON decoder undecoded); gzip when the name ends in ``.gz``."""
    p = Path(path)
    if mode == "rb":
        if p.suffix == ".gz":
            return gzip.open(p, "rb")  # type: ignore[return-value]  # a binary file object, as open() gives
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

    __slots__ = ("_bad", "_n", "_px", "_qx", "_rest", "_where")

    def __init__(self, packed: str, where: tuple[Any, ...]) -> None:
        self._where = where
        self._n = -1
        self._bad = False  # a parsed level is zero or negative
        px: list[Decimal] = []
        qx: list[Decimal] = []
        # every tick reads the best level (top price, VWAP): parse it right away, inline. Anything unusual (a lone
        # number, a bad value) is left to the lazy path, which raises the same line-numbered error when read.
        parts = packed.split(None, 2)
        if len(parts) >= 2:
            try:
                price, qty = Decimal(parts[0]), Decimal(parts[1])
                ok = price.is_finite() and qty.is_finite() and price > 0 and qty > 0
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
                if not (price.is_finite() and qty.is_finite()):
                    raise ValueError
                if not (price > 0 and qty > 0):
                    if not (_plain(p) and _plain(q)):
                        raise ValueError  # the market-data check reads plain decimals: 0E-8 would slip past it
                    self._bad = True
            except (InvalidOperation, ValueError):
                raise self._fail(
                    f", level {len(px) + 1}: price and quantity must be decimal numbers, got {p!r} and {q!r}"
                ) from None
            px.append(price)
            qx.append(qty)
        return True

    def has_nonpositive(self) -> bool:
        """A zero or negative price or quantity at any level (parsed levels by value, the rest by its text: see
        :func:`arbframe.trading.marketdata.text_has_nonpositive`); the replay blocks the symbol for the tick."""
        bad, rest = self.nonpositive_parts()
        return bad or (text_has_nonpositive(rest) if rest else False)

    def nonpositive_parts(self) -> tuple[bool, str]:
        """(a parsed level is zero or negative, the text not parsed yet): lets a caller check several sides' texts
        at once (:class:`arbframe.trading.marketdata.MarketDataGuard`)."""
        return self._bad, self._rest

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


_PLAIN_CHARS = frozenset("0123456789.-")


def _plain(token: str) -> bool:
    """Written as a plain decimal (digits, a point, a minus sign): what the market-data check reads."""
    return _PLAIN_CHARS.issuperset(token)


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
    getattr(FxRate, name).__set__
    for name in ("id", "ts", "rate", "source", "base", "quote", "simulated", "instance_id")
)
assert [f.name for f in fields(FxRate)] == ["id", "ts", "rate", "source", "base", "quote", "simulated", "instance_id"]
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


#: header keys that recordings replayed together must agree on (RecordingReader.preload)
SHARED_HEADER_KEYS = ("domestic", "foreign", "symbols", "quote_currencies", "fees", "rules", "simulated")


class RecordingSpan(NamedTuple):
    """First and last snapshot time of a reader's snapshots (its window applied) and how many there are."""

    first: datetime
    last: datetime
    snapshots: int


@dataclass
class _Preloaded:
    """Every snapshot row of one or more recordings, decoded once and held in memory (RecordingReader.preload)."""

    rows: list[Any]
    lines: list[int]  # each row's line number in its file
    times: list[datetime]  # each row's "t", parsed
    segments: list[tuple[int, Path]]  # (index of the file's first row, the file), ascending
    ordered: bool  # times never go backwards: a window is two bisections
    #: each row's raw line as far as the replay's fast path reads it (``RecordingReader.line``): a backslash when
    #: the line held a JSON escape, else empty; the raw lines themselves are not kept
    escapes: list[bytes] = field(default_factory=list)


def _check_window(start: datetime | None, end: datetime | None) -> tuple[datetime | None, datetime | None]:
    for name, when in (("start", start), ("end", end)):
        if when is not None and (not isinstance(when, datetime) or when.tzinfo is None):
            raise ValueError(f"the replay window's {name} must be an aware datetime or None, got {when!r}")
    if start is not None and end is not None and end < start:
        raise ValueError(f"the replay window ends ({end.isoformat()}) before it starts ({start.isoformat()})")
    return start, end


class RecordingReader:
    """Iterates a recording: :attr:`header`, then :class:`MarketSnapshot` objects, with line-numbered errors.

    ``start``/``end`` restrict it to the snapshots stamped in ``[start, end)`` (aware datetimes; None: unbounded):
    every other row is skipped before it reaches the decoder or the replay. :meth:`preload` reads one or more
    recordings into memory once; :meth:`window` then gives readers of any window of them without reading a file
    again (what a parameter search replays many times).
    """

    def __init__(self, path: str | Path, *, start: datetime | None = None, end: datetime | None = None) -> None:
        self.start, self.end = _check_window(start, end)
        self._preloaded: _Preloaded | None = None
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
        self.line = b""  # the raw bytes of the row rows() yielded last

    # --------------------------------------------------------------------------------------- windows, preload
    @classmethod
    def preload(cls, paths: str | Path | Sequence[str | Path]) -> RecordingReader:
        """A reader holding every snapshot row of ``paths`` in memory, JSON decoded and times parsed, read once.

        Several recordings are replayed as one, in the order of their first snapshots; their headers must agree
        on :data:`SHARED_HEADER_KEYS` (venues, symbols, fees, rules). Errors still name the file and line.
        """
        if isinstance(paths, (str, Path)):
            paths = [paths]
        if not paths:
            raise BacktestDataError("no recording given")
        parts = []
        for path in paths:
            reader = cls(path)
            rows: list[Any] = []
            lines: list[int] = []
            times: list[datetime] = []
            escapes: list[bytes] = []
            try:
                for row in reader._file_rows():
                    times.append(reader._row_time(row))
                    rows.append(row)
                    lines.append(reader.lineno)
                    escapes.append(b"\\" if b"\\" in reader.line else b"")
            finally:
                reader.close()
            parts.append((reader, rows, lines, times, escapes))
        # chronological: by each file's first snapshot (files without one last), stable for equal times
        parts.sort(key=lambda part: (0, part[3][0]) if part[3] else (1, part[0].path))
        first = parts[0][0]
        for reader, *_ in parts[1:]:
            for key in SHARED_HEADER_KEYS:
                if reader.header.get(key) != first.header.get(key):
                    raise BacktestDataError(
                        f"{reader.path}:1: the header's {key!r} differs from {first.path}'s; recordings replayed "
                        "together must agree on venues, symbols, fees and rules"
                    )
        data = _Preloaded([], [], [], [], True)
        for reader, rows, lines, times, escapes in parts:
            data.segments.append((len(data.rows), reader.path))
            data.rows += rows
            data.lines += lines
            data.times += times
            data.escapes += escapes
        data.ordered = all(a <= b for a, b in zip(data.times, data.times[1:]))  # noqa: B905
        first._preloaded = data
        first.lineno = 0
        return first

    def window(self, start: datetime | None = None, end: datetime | None = None) -> RecordingReader:
        """A new reader of the same recording restricted to ``[start, end)`` (replacing this reader's window).

        A preloaded reader's windows share its rows (nothing is read again); a file reader's reopen the file."""
        if self._preloaded is None:
            return type(self)(self.path, start=start, end=end)
        view = object.__new__(type(self))
        view.__dict__.update(self.__dict__)
        view.start, view.end = _check_window(start, end)
        view.path = self._preloaded.segments[0][1]
        view.lineno = 0
        view._fx_cache = None
        view._last_t_text = None
        view._last_t = None
        return view

    def span(self) -> RecordingSpan | None:
        """First and last snapshot time in this reader's window and the number of snapshots (None: none).

        A file reader reads a copy of itself to find out; a preloaded reader looks at its times."""
        data = self._preloaded
        if data is None:
            view = self.window(self.start, self.end)
            first = last = None
            n = 0
            for row in view.rows():
                ts = view._row_time(row)
                first = ts if first is None or ts < first else first
                last = ts if last is None or ts > last else last
                n += 1
            return None if first is None or last is None else RecordingSpan(first, last, n)
        times = [data.times[i] for i in self._indices()]
        return RecordingSpan(min(times), max(times), len(times)) if times else None

    def _indices(self) -> Iterator[int]:
        """Indices of the preloaded rows inside the window."""
        data = self._preloaded
        assert data is not None
        times = data.times
        start, end = self.start, self.end
        if data.ordered:
            lo = 0 if start is None else bisect_left(times, start)
            hi = len(times) if end is None else bisect_left(times, end)
            return iter(range(lo, hi))
        return (i for i, ts in enumerate(times)
                if (start is None or ts >= start) and (end is None or ts < end))

    def _row_time(self, row: Any) -> datetime:
        """A row's ``t`` as an aware datetime (remembered for the decoder); raises the decoder's line-numbered
        error for a row that is not an object or has no valid ``t``."""
        if type(row) is not dict or "t" not in row:
            self.decode(row)  # raises
        t = row["t"]
        if t == self._last_t_text and self._last_t is not None:
            return self._last_t
        ts = self._last_t = _parse_ts(t, self, '"t"')
        self._last_t_text = t
        return ts

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
        """The decoded JSON of each snapshot line in the window (not yet checked: :meth:`decode` does that)."""
        if self._preloaded is not None:
            return self._preloaded_rows()
        return self._file_rows(self.start, self.end)

    def _file_rows(self, start: datetime | None = None, end: datetime | None = None) -> Iterator[Any]:
        fh = self._fh
        readline = fh.readline
        loads = _fast_loads()
        windowed = start is not None or end is not None
        row_time = self._row_time
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
                if windowed:
                    ts = row_time(row)
                    if (start is not None and ts < start) or (end is not None and ts >= end):
                        continue
                self.line = line
                yield row
        finally:
            self.close()

    def _preloaded_rows(self) -> Iterator[Any]:
        data = self._preloaded
        assert data is not None
        rows, lines, times, segments, escapes = data.rows, data.lines, data.times, data.segments, data.escapes
        firsts = [first for first, _ in segments]
        upto = -1  # where the rows of the current file end
        for i in self._indices():
            if i >= upto:  # the next file: errors name it
                k = bisect_right(firsts, i) - 1
                self.path = segments[k][1]
                upto = firsts[k + 1] if k + 1 < len(firsts) else len(rows)
            row = rows[i]
            self.lineno = lines[i]
            self.line = escapes[i]
            self._last_t_text = row["t"]
            self._last_t = times[i]
            yield row

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
        fx = _new(FxRate)  # FxRate(id, ts, rate, source, "USD", "KRW", simulated, instance_id), slot by slot
        for setter, value in zip(_FX_SETTERS, (fx_id, fx_when, rate, source, "USD", "KRW", self.simulated, ""),
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
