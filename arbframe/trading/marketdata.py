"""Market data checked before it is traded: ONE function (:meth:`MarketDataGuard.check`) for live, paper and replay.

A symbol is blocked for the tick (no spread, no entry, no close; its open positions keep their last mark) when:

- ``crossed_book`` / ``locked_book``: a book's best bid is above / equal to its best ask;
- ``bad_level``: a price or quantity at any level is zero or negative;
- ``book_time_backwards`` / ``fx_time_backwards``: a book's (or the FX rate's) timestamp is older than one seen
  before for that book (that rate source);
- ``stale_book``: a book is older than ``arbitrage.max_book_age_seconds``.

The reasons are a fixed set (the ``reason`` label of ``arbitrage_market_data_blocked``). Malformed data (text that
is not a number) is not a block: in replay it stops the run with the file and line, as it always did.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from arbframe.core.models import ZERO, FxRate, OrderBook

REASONS = ("crossed_book", "locked_book", "bad_level", "book_time_backwards", "fx_time_backwards", "stale_book")

#: a zero written as plain decimal text is a token of only zeros and dots between spaces (" [0.]+ ": "0", "0.000",
#: ".0"). It is searched for as two patterns, by the token's first character, each with a two-character literal
#: prefix (" 0", " ."): the regular-expression engine scans for that prefix instead of trying a match at every space
#: of a book's ~2 KB of text, which is most of what one pattern costs. (No possessive ``*+``: Python 3.10 has none;
#: ``[0.]`` never eats the closing space.)
ZERO_FROM_0 = re.compile(r" 0[0.]* ").search
ZERO_FROM_DOT = re.compile(r" \.[0.]* ").search


#: whitespace other than a space that ``str.split()`` separates ASCII text at (book levels are split that way)
_OTHER_SPACE = ("\t", "\n", "\x0b", "\x0c", "\r", "\x1c", "\x1d", "\x1e", "\x1f")


def spaced_has_nonpositive(spaced: str) -> bool:
    """:func:`text_has_nonpositive` for a text that already starts and ends with a space (the replay's fast path
    inlines it for lines it knows to separate by spaces only)."""
    if "-" in spaced:
        return True
    if not spaced.isascii() or any(map(spaced.__contains__, _OTHER_SPACE)):
        spaced = " " + " ".join(spaced.split()) + " "  # separated as the levels are read: at any whitespace
    return ZERO_FROM_0(spaced) is not None or ZERO_FROM_DOT(spaced) is not None


def text_has_nonpositive(text: str) -> bool:
    """Does a packed ``"price qty price qty ..."`` text hold a zero or negative number written as a plain decimal?

    (Recordings hold plain decimals; the replay's reader refuses a zero or negative value written otherwise, such as
    ``0E-8``, as malformed when it reads it.)"""
    return spaced_has_nonpositive(" " + text + " ")


def _tuple_has_nonpositive(levels: tuple[Any, ...]) -> bool:
    for level in levels:  # noqa: SIM110 - the loop is faster than any() over a generator
        if level.price <= ZERO or level.qty <= ZERO:  # (a Decimal compares with ZERO three times faster than with 0)
            return True
    return False


def levels_have_nonpositive(levels: Any) -> bool:
    """Any level of a book side with a price or quantity <= 0 (a lazily parsed side checks its text)."""
    if type(levels) is tuple:
        return _tuple_has_nonpositive(levels)
    fast = getattr(levels, "has_nonpositive", None)
    if fast is not None:
        return fast()
    return any(level.price <= ZERO or level.qty <= ZERO for level in levels)


def top_of(levels: Any) -> Any:
    if type(levels) is tuple:
        return levels[0].price if levels else None
    try:
        return levels.top_price()
    except AttributeError:  # another sequence of levels
        return levels[0].price if levels else None


class MarketDataGuard:
    """Checks each symbol's books and the FX rate of a tick; remembers the newest timestamps it has seen."""

    __slots__ = ("_max_age", "_max_age_seconds", "book_ts", "clean", "enabled", "floor", "fx_ts", "newest")

    def __init__(self, max_book_age_seconds: float | None, *, enabled: bool = True) -> None:
        self.max_book_age = max_book_age_seconds
        #: False passes everything unchecked: only ``benchmarks/bench_engine.py`` sets it, for the baseline that
        #: shows what the checks cost (the same replay without them, in the same run)
        self.enabled = enabled
        self.book_ts: dict[tuple[str, str], datetime] = {}
        self.fx_ts: dict[str, datetime] = {}
        self.floor: datetime | None = None  # every book is known to be at least this new (set by the replay)
        self.newest: datetime | None = None  # the newest book time seen
        #: (exchange, symbol) -> the (bids, asks) tuples last found free of zero and negative levels: a venue that
        #: hands the same book again (no update since the last tick) is not read level by level again
        self.clean: dict[tuple[str, str], tuple[Any, Any]] = {}

    @property
    def max_book_age(self) -> float | None:
        """``arbitrage.max_book_age_seconds``: a book older than this (to the microsecond) is stale."""
        return self._max_age_seconds

    @max_book_age.setter
    def max_book_age(self, seconds: float | None) -> None:
        self._max_age_seconds = seconds
        self._max_age = None if seconds is None else timedelta(seconds=seconds)

    @property
    def max_age(self) -> timedelta | None:
        """:attr:`max_book_age` as a timedelta: stale is ``book time < now - max_age``, exactly."""
        return self._max_age

    def check_fx(self, fx: FxRate | None) -> tuple[str, str] | None:
        """(reason, detail) when the FX rate's timestamp went backwards for its source."""
        if fx is None or not self.enabled:
            return None
        last = self.fx_ts.get(fx.source)
        if last is not None and fx.ts < last:
            return "fx_time_backwards", f"FX rate from {fx.source} stamped {fx.ts.isoformat()} after {last.isoformat()}"
        self.fx_ts[fx.source] = fx.ts
        return None

    def check(self, books: tuple[OrderBook, ...], now: datetime) -> tuple[str, str] | None:
        """(reason, detail) for the first problem of ``books`` (a symbol's two books), else None.

        Every book's timestamp is remembered, blocked or not, so "backwards" compares with the newest seen.
        """
        if not self.enabled:
            return None
        problem = None
        limit = self._max_age
        seen = self.book_ts
        floor = self.floor
        checked = []  # the books to read level by level once nothing else is wrong
        for book in books:
            key = (book.exchange, book.symbol)
            last = seen.get(key)
            if floor is not None and (last is None or last < floor):
                last = floor
            ts = book.ts
            if last is not None and ts < last:
                problem = problem or ("book_time_backwards",
                                      f"{book.exchange}/{book.symbol} book stamped {ts.isoformat()} after "
                                      f"{last.isoformat()}")
                continue
            seen[key] = ts
            newest = self.newest
            if newest is None or ts > newest:
                self.newest = ts
            if problem is not None:
                continue
            bids, asks = book.bids, book.asks
            bid, ask = top_of(bids), top_of(asks)
            if bid is not None and ask is not None and bid >= ask:
                kind = "crossed_book" if bid > ask else "locked_book"
                problem = (kind, f"{book.exchange}/{book.symbol} best bid {bid} {'>' if bid > ask else '='} "
                                 f"best ask {ask}")
                continue
            if limit is not None and ts != now and now - ts > limit:
                problem = ("stale_book", f"{book.exchange}/{book.symbol} book is {(now - ts).total_seconds():.0f}s "
                                         f"old (max_book_age_seconds={self._max_age_seconds:g})")
                continue
            checked.append((key, bids, asks))
        if problem is None and checked and self._nonpositive(checked):
            bad = [f"{b.exchange}/{b.symbol}" for b in books
                   if levels_have_nonpositive(b.bids) or levels_have_nonpositive(b.asks)]
            problem = ("bad_level", f"{', '.join(bad)} book has a zero or negative price or size")
        return problem

    def _nonpositive(self, checked: list[tuple[tuple[str, str], Any, Any]]) -> bool:
        """A zero or negative price or quantity at any level of these books; the texts of lazily parsed sides are
        searched at once, tuples found clean before (the same objects) are not read again."""
        texts = None
        clean = self.clean
        for key, bids, asks in checked:
            if type(bids) is tuple and type(asks) is tuple:
                pair = clean.get(key)
                if pair is not None and pair[0] is bids and pair[1] is asks:
                    continue
                if _tuple_has_nonpositive(bids) or _tuple_has_nonpositive(asks):
                    clean.pop(key, None)
                    return True
                clean[key] = (bids, asks)
                continue
            for levels in (bids, asks):
                try:
                    bad, rest = levels.nonpositive_parts()
                except AttributeError:  # another sequence of levels
                    bad, rest = levels_have_nonpositive(levels), ""
                if bad:
                    return True
                if rest:
                    if texts is None:
                        texts = [""]
                    texts.append(rest)
        if texts is None:
            return False
        texts.append("")
        return spaced_has_nonpositive(" ".join(texts))
