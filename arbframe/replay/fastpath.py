"""The backtest replay's fast path: snapshots on which nothing can happen skip the decoder and the engine.

Why: on nearly every snapshot of a replay the engine would only update counters (no spread due, no close, no
entry, every premium inside the range seen so far, every entry note unchanged). :class:`ReplayFastPath` proves
that from the recorded text with float arithmetic and a margin (``1e-9``) far above float rounding, and marks open
positions in floats with an error bound. Anything close to a boundary, unusual or malformed returns ``None`` and
goes through the full path, so every recorded number is still computed exactly (``Decimal``) by the engine and a
bad line still fails with its line number. ``tests/test_backtest_fastpath.py`` holds both paths to identical
outputs.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

from arbframe.core.models import ZERO, Direction
from arbframe.trading.engine import _STEP, TWO, Engine
from arbframe.trading.marketdata import ZERO_FROM_0, ZERO_FROM_DOT
from arbframe.trading.premium import ONE

_REL = 1e-12  # a level holding the whole remaining quantity, within this, is too close to call
_MARGIN = 1e-9  # premiums within this of a threshold or of the seen range go through the full path
_INF = float("inf")
_UNSURE = object()
_ABOVE = 1 + _REL
_TIMES_CACHE_SIZE = 4096
_fromisoformat = datetime.fromisoformat


class _SymbolOnly(NamedTuple):
    symbol: str


def exact_vwap(text: str, qty: Decimal) -> Any:
    """``LazyLevels.vwap`` on the text, same arithmetic; ``_UNSURE`` on anything unusual."""
    if not qty > 0:
        return _UNSURE
    parts = text.split(None, 2)
    remaining = qty
    cost = ZERO
    first = True
    while True:
        if len(parts) < 2:
            return None if not parts else _UNSURE
        try:
            price, level_qty = Decimal(parts[0]), Decimal(parts[1])
            if not (price.is_finite() and level_qty.is_finite() and price > 0 and level_qty > 0):
                return _UNSURE
        except (InvalidOperation, ValueError):
            return _UNSURE
        if first:
            if level_qty >= qty:
                return price
            first = False
        if level_qty >= remaining:
            return (cost + remaining * price) / qty
        cost += level_qty * price
        remaining -= level_qty
        parts = parts[2].split(None, 2) if len(parts) == 3 else []


def _walk(parts: list[str], p: float, q: float, qf: float) -> Any:
    """Float VWAP of ``qf`` on a book side split as ``text.split(None, 2)``, whose best level ``(p, q)`` is
    already parsed: the VWAP, None when the side is too thin, or ``_UNSURE`` (bad text, too close to call)."""
    if q >= qf * _ABOVE:
        return p
    if q > qf * (1 - _REL):
        return _UNSURE
    remaining = qf - q
    cost = q * p
    tol = qf * _MARGIN
    rest = parts[2] if len(parts) == 3 else ""
    while rest:
        parts = rest.split(None, 2)
        try:
            p = float(parts[0])
            q = float(parts[1])
        except (ValueError, IndexError):
            return _UNSURE
        if not (0.0 < p < _INF and 0.0 < q < _INF):
            return _UNSURE
        if q >= remaining + tol:
            return (cost + remaining * p) / qf
        if q > remaining - tol:
            return _UNSURE
        cost += q * p
        remaining -= q
        rest = parts[2] if len(parts) == 3 else ""
    return None


def _aware(text: str) -> datetime | None:
    """``text`` as an aware timestamp, None where the decoder (``backtest._parse_ts``) would raise."""
    try:
        when = _fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


class ReplayFastPath:
    """Decides, per recorded row, whether the engine can be skipped (see the module docstring).

    ``lo_f``/``hi_f`` are the replay's running premium range per direction (floats), shared with the loop.
    """

    def __init__(self, engine: Engine, lo_f: dict[Direction, float], hi_f: dict[Direction, float],
                 chart: bool) -> None:
        self.engine = engine
        self.lo_f, self.hi_f = lo_f, hi_f
        self.chart = chart
        cfg = engine.cfg
        scfg = engine.strategy.cfg
        self.symbols = cfg.symbols
        self.domestic, self.foreign = engine.domestic, engine.foreign
        self.use_tether = cfg.use_tether
        self.max_fx_age = cfg.max_fx_age_seconds
        limit = cfg.max_book_age_seconds
        self.max_age = engine.guard.max_age  # MarketDataGuard: a book with time < snapshot time - max_age is stale
        self.now_fresh = limit is None or limit >= 0.0  # a book stamped with the snapshot's own time is fresh
        self.keys = {symbol: ((engine.domestic, symbol), (engine.foreign, symbol)) for symbol in cfg.symbols}
        # how many books a row holds when it holds only those read here
        self.n_domestic = len(cfg.symbols) + (1 if cfg.use_tether else 0)
        self.n_foreign = len(cfg.symbols)
        self.threshold = float(scfg.entry_threshold)
        self.exit_f = float(scfg.exit_threshold)
        self.stop_f = None if scfg.stop_loss_premium is None else float(scfg.stop_loss_premium)
        self.max_hold = scfg.max_holding_seconds
        self.allowed = scfg.directions
        self.round_trip = float(engine.calc.round_trip)
        self.notional_f = float(engine.strategy._notional)
        self.steps_f = {symbol: float(engine._step.get(symbol) or _STEP) for symbol in cfg.symbols}
        self.dirs = tuple((d, d is Direction.KIMCHI) for d in engine.calc.directions)
        # Engine._coefficients in floats: per (venue, side) the (KRW, USD, coin) a fill changes per unit
        self.legs_f = {key: tuple(float(x) for x in coef) for key, coef in engine._leg_coef.items()}
        self._fx: tuple[Any, Decimal, float, datetime, str] | None = None  # (row, rate, float rate, fx ts, source)
        self.fx_seen = engine.guard.fx_ts
        self.checks = engine.guard.enabled  # (False only in the benchmark's baseline: see MarketDataGuard.enabled)
        self._floats: dict[str, tuple[Any, ...]] = {}  # position id -> _position_floats
        self._notes: dict[str, str | None] = {}  # symbol -> entry note until forget()
        self._times: dict[str, datetime] = {}  # book time text -> parsed (books not updated keep their time)
        self._last: tuple[dict[str, Any], dict[str, Any], Decimal] | None = None  # books and rate of the last hit
        self.pending = False  # the engine's marks lag the last hit (see sync)

    # ------------------------------------------------------------------------------------------------ checks
    def _rate(self, fx_row: Any, t: str, ts: datetime) -> tuple[Decimal, float] | None:
        """The FX rate of ``fx_row`` when it is well formed, fresh and not older than one seen before from its
        source (``MarketDataGuard.check_fx``), as ``RecordingReader._fx`` reads it."""
        cached = self._fx
        if cached is not None and cached[0] == fx_row:
            _, rate, rate_f, fx_when, source = cached
        else:
            if type(fx_row) is not list or len(fx_row) != 4:
                return None
            rate_text, source, fx_ts, fx_id = fx_row
            if type(rate_text) is not str or type(source) is not str or type(fx_id) is not str:
                return None
            try:
                rate = Decimal(rate_text)
                if not (rate.is_finite() and rate > 0):
                    return None
            except (InvalidOperation, ValueError):
                return None
            rate_f = float(rate)
            if fx_ts == t:
                fx_when = ts  # stamped with the snapshot's own time
            else:
                parsed = _aware(fx_ts) if type(fx_ts) is str else None
                if parsed is None:
                    return None
                fx_when = parsed
            self._fx = (fx_row, rate, rate_f, fx_when, source)
        if self.checks:  # MarketDataGuard.check_fx, which the full path would do next with the same outcome
            seen = self.fx_seen
            last = seen.get(source)
            if last is not None and fx_when < last:
                return None  # it blocks the rate: the full path says so
            seen[source] = fx_when
        if fx_when < ts and (ts - fx_when).total_seconds() > self.max_fx_age:  # FxRate.age_seconds
            return None
        return rate, rate_f

    def _position_floats(self, position: Any) -> tuple[Any, ...]:
        """(qty, kimchi?, entry (KRW, USD, coin), close premium at or above which the stop loss may fire, domestic
        and foreign close-leg coefficients), in floats."""
        engine = self.engine
        krw, usd, coin = engine._entry_sums[position.id]
        stop = self.stop_f
        stop_at = _INF if stop is None else float(position.entry_premium) + stop - _MARGIN
        d_side = position.direction.domestic_side.opposite
        floats = (float(position.qty), position.direction is Direction.KIMCHI, (float(krw), float(usd), float(coin)),
                  stop_at, self.legs_f[(engine.domestic, d_side)], self.legs_f[(engine.foreign, d_side.opposite)])
        self._floats[position.id] = floats
        return floats

    # -------------------------------------------------------------------------------------------------- tick
    def tick(self, row: Any, reader: Any) -> tuple[Any, ...] | None:
        """For ``row``, when it provably changes nothing but counters, marks and entry notes:
        ``(ts, fx row, kimchi premium (exact, first symbol, only with a chart), unrealized PnL in floats (None: no
        open position, exactly zero), bound on its error, [(symbol, entry note) that changed]``; else None."""
        if type(row) is not dict or len(row) != 3:
            return None
        t, fx_row, b = row.get("t"), row.get("fx"), row.get("b")
        if type(t) is not str or type(b) is not dict:
            return None
        times = self._times
        if len(times) >= _TIMES_CACHE_SIZE:  # (never in the middle of a row: its times are looked up below)
            times.clear()
        dom_books, fgn_books = b.get(self.domestic), b.get(self.foreign)
        if type(dom_books) is not dict or type(fgn_books) is not dict:
            return None
        own = False  # does any book carry its own time?
        # every book must read as the decoder reads it. When the row holds only the books read below (each symbol on
        # both venues, the domestic USDT book with the tether premium on), their texts prove to be strings where
        # they are split, so only the entries are checked here; a row with other books has every text checked
        if (len(b) == 2 and len(dom_books) == self.n_domestic and len(fgn_books) == self.n_foreign
                and (not self.use_tether or "USDT" in dom_books)):  # (a symbol missing: None below)
            for symbols in (dom_books, fgn_books):
                for entry in symbols.values():
                    if type(entry) is not list:
                        return None
                    if len(entry) != 2:
                        own = True
                        if not self._own_time(entry):
                            return None
        else:
            for symbols in b.values():
                if type(symbols) is not dict:
                    return None
                for entry in symbols.values():
                    if type(entry) is not list:
                        return None
                    if len(entry) != 2:
                        own = True
                        if not self._own_time(entry):
                            return None
                    if type(entry[0]) is not str or type(entry[1]) is not str:
                        return None
        if t == reader._last_t_text:
            ts = reader._last_t
        else:
            ts = _aware(t)
            if ts is None:
                return None
            reader._last_t, reader._last_t_text = ts, t
        engine = self.engine
        last_log = engine._last_spread_log
        if engine.log_spreads and (
            last_log is None or engine.spread_log_interval <= 0
            or (ts - last_log).total_seconds() >= engine.spread_log_interval
        ):
            return None
        if engine._last_fresh is not True:
            return None
        fx = self._rate(fx_row, t, ts)
        if fx is None:
            return None
        rate, rate_f = fx
        if self.use_tether:
            usdt = dom_books.get("USDT")
            if usdt is not None:  # the engine reads its best bid and ask (the tether premium)
                try:
                    ub, ua = usdt[0].split(None, 2), usdt[1].split(None, 2)
                    if not (_INF > float(ub[0]) > 0.0 and _INF > float(ub[1]) > 0.0
                            and _INF > float(ua[0]) > 0.0 and _INF > float(ua[1]) > 0.0):
                        return None
                except (ValueError, IndexError, AttributeError):  # (AttributeError: not a string)
                    return None
        if engine.data_blocked_symbols:
            return None  # the full path logs the symbol usable again
        # MarketDataGuard.check: what is not done per book below (the zero or negative levels: at the end)
        guard = engine.guard
        checks = self.checks
        if not checks:
            own = False
        elif own:
            book_ts = guard.book_ts
            floor = guard.floor
            max_age = self.max_age
            cutoff = None if max_age is None else ts - max_age  # an older book is stale
        else:  # every book has the snapshot's time: none goes backwards unless the snapshot does
            newest = guard.newest
            if (newest is not None and ts < newest) or not self.now_fresh:
                return None
        sides = [""]  # every book side's text, searched at once for a zero or negative value
        positions = engine.positions
        threshold, round_trip, allowed = self.threshold, self.round_trip, self.allowed
        lo_f, hi_f = self.lo_f, self.hi_f
        blocked = engine._blocked
        notional_f, steps = self.notional_f, self.steps_f
        notes: list[tuple[str, str | None]] = []
        kimchi_premium = None
        unrealized = 0.0
        error = 0.0
        for symbol in self.symbols:
            dom, fgn = dom_books.get(symbol), fgn_books.get(symbol)
            if dom is None or fgn is None:
                return None
            d_bids, d_asks = dom[0], dom[1]
            f_bids, f_asks = fgn[0], fgn[1]
            # MarketDataGuard.check: no book older than one seen before, none stale (a book without its own time
            # has the snapshot's). A book that passes has its time remembered at once, as the guard does whatever
            # the rest of the row turns out to be: if the full path takes the row, it finds the same
            if own:
                for key, book in zip(self.keys[symbol], (dom, fgn)):  # noqa: B905
                    if len(book) == 2:
                        when = ts
                        if not self.now_fresh:
                            return None
                    else:
                        when = times[book[2]]
                        if cutoff is not None and when < cutoff:
                            return None
                    last = book_ts.get(key)
                    if floor is not None and (last is None or last < floor):
                        last = floor
                    if last is not None and when < last:
                        return None
                    book_ts[key] = when
                    newest = guard.newest
                    if newest is None or when > newest:
                        guard.newest = when
            # the best level of each book: most VWAPs end there
            try:
                db, da = d_bids.split(None, 2), d_asks.split(None, 2)
                fb, fa = f_bids.split(None, 2), f_asks.split(None, 2)
                dbp, dbq, dap, daq = float(db[0]), float(db[1]), float(da[0]), float(da[1])
                fbp, fbq, fap, faq = float(fb[0]), float(fb[1]), float(fa[0]), float(fa[1])
            except (ValueError, IndexError, AttributeError):  # (AttributeError: not a string)
                return None
            if not (_INF > dbp > 0.0 and _INF > dbq > 0.0 and _INF > dap > 0.0 and _INF > daq > 0.0
                    and _INF > fbp > 0.0 and _INF > fbq > 0.0 and _INF > fap > 0.0 and _INF > faq > 0.0
                    and dbp < dap and fbp < fap):  # crossed or locked (or too close to call in floats)
                return None
            if checks:
                sides += (d_bids, d_asks, f_bids, f_asks)
            # Strategy.order_qty at the best bid, in floats: floor(notional / price / step) steps; a quotient too
            # close to a whole number of steps to be sure of the floor goes through the full path
            step_f = steps[symbol]
            x = notional_f / dbp / step_f
            if not 1.0 <= x < 1e15:
                return None
            k = int(x)
            if x - k < x * _MARGIN or k + 1 - x < x * _MARGIN:
                return None
            qf = k * step_f
            whole = qf * _ABOVE
            entry = False
            for direction, kimchi in self.dirs:
                if kimchi:  # sell domestic (bids), buy foreign (asks)
                    dv = dbp if dbq >= whole else _walk(db, dbp, dbq, qf)
                    fv = fap if faq >= whole else _walk(fa, fap, faq, qf)
                else:
                    dv = dap if daq >= whole else _walk(da, dap, daq, qf)
                    fv = fbp if fbq >= whole else _walk(fb, fbp, fbq, qf)
                if dv is _UNSURE or fv is _UNSURE:
                    return None
                if dv is None or fv is None:
                    continue
                if kimchi:
                    premium = dv / (fv * rate_f) - 1.0
                    if self.chart and kimchi_premium is None:
                        if dbq < whole or faq < whole:
                            return None
                        kimchi_premium = float(Decimal(db[0]) / (Decimal(fa[0]) * rate) - ONE)
                else:
                    premium = fv * rate_f / dv - 1.0
                net = premium - round_trip
                if net >= threshold - _MARGIN:
                    if net <= threshold + _MARGIN:
                        return None
                    if direction in allowed:
                        entry = True
                lo = lo_f.get(direction)
                if lo is None or premium <= lo + _MARGIN or premium >= hi_f[direction] - _MARGIN:
                    return None
            if positions:
                for position in positions.values():
                    if position.symbol != symbol:
                        continue
                    max_hold = self.max_hold
                    if max_hold is not None and (ts - position.opened_at).total_seconds() >= max_hold:
                        return None
                    floats = self._floats.get(position.id) or self._position_floats(position)
                    pq, kimchi, entry_f, stop_at, d_leg, f_leg = floats
                    above = pq * _ABOVE
                    if kimchi:  # close: buy domestic (asks), sell foreign (bids)
                        dv = dap if daq >= above else _walk(da, dap, daq, pq)
                        fv = fbp if fbq >= above else _walk(fb, fbp, fbq, pq)
                        if dv is None or dv is _UNSURE or fv is None or fv is _UNSURE:
                            return None
                        close_prem = dv / (fv * rate_f) - 1.0
                    else:  # close: sell domestic (bids), buy foreign (asks)
                        dv = dbp if dbq >= above else _walk(db, dbp, dbq, pq)
                        fv = fap if faq >= above else _walk(fa, fap, faq, pq)
                        if dv is None or dv is _UNSURE or fv is None or fv is _UNSURE:
                            return None
                        close_prem = fv * rate_f / dv - 1.0
                    if close_prem <= self.exit_f + _MARGIN:
                        return None  # closes (or too close to call)
                    if close_prem >= stop_at:
                        return None  # stop loss (or too close to call)
                    d_cash = pq * dv
                    f_cash = pq * fv
                    mark = (dbp + dap) / 2.0
                    krw = entry_f[0] + d_cash * d_leg[0] + f_cash * f_leg[0]
                    usd = entry_f[1] + d_cash * d_leg[1] + f_cash * f_leg[1]
                    coin = entry_f[2] + pq * (d_leg[2] + f_leg[2])
                    unrealized += krw + usd * rate_f + coin * mark
                    # float rounding is ~1e-16 relative per operation: 1e-9 of the magnitudes is a wide margin
                    error += (abs(entry_f[0]) + abs(entry_f[1]) * rate_f + abs(entry_f[2]) * mark + d_cash
                              + f_cash * rate_f + pq * mark) * _MARGIN + 1e-6
            note = None
            if entry:
                # Engine.decide_symbol would check the entry; only an entry that stays blocked is handled here
                note = self._entry_note(symbol, ts)
                if note is None:
                    return None
            if blocked.get(symbol, _SymbolOnly) != note:
                notes.append((symbol, note))
        if checks:
            # MarketDataGuard.check's text search (marketdata.spaced_has_nonpositive), inline: sides starts and ends
            # with "", so the joined text has a space at both ends. It reads a space as the only separator: books
            # with non-ASCII text, or a line with an escape (JSON escapes every control character), may hold other
            # whitespace, so they go through the full path, which reads those too
            sides.append("")
            text = " ".join(sides)
            if not text.isascii() or b"\\" in reader.line:
                return None
            if "-" in text or ZERO_FROM_0(text) is not None or ZERO_FROM_DOT(text) is not None:
                return None  # a zero or negative level (bad_level)
            if not own:
                guard.floor = guard.newest = ts
        self._last = (dom_books, fgn_books, rate)
        self.pending = True
        if positions:
            return ts, fx_row, kimchi_premium, unrealized, error, notes
        return ts, fx_row, kimchi_premium, None, 0.0, notes

    def _entry_note(self, symbol: str, ts: datetime) -> str | None:
        """``Strategy.entry_block`` for an entry on ``symbol`` (it reads nothing of the quote but its symbol).

        A note that does not depend on the time (position limits) holds until :meth:`forget`."""
        note = self._notes.get(symbol, _SymbolOnly)
        if note is not _SymbolOnly:
            return note  # type: ignore[return-value]
        engine = self.engine
        engine.stats.now = ts  # as Engine.process sets it before deciding (the view's daily PnL reads it)
        note = engine.strategy.entry_block(_SymbolOnly(symbol), engine.view(), ts, fx_fresh=True)  # type: ignore[arg-type]
        scfg = engine.strategy.cfg
        positions = engine.positions
        if (len(positions) >= scfg.max_open_positions
                or sum(p.symbol == symbol for p in positions.values()) >= scfg.max_positions_per_symbol):
            self._notes[symbol] = note  # entry_block returns before it reads the time
        return note

    def _own_time(self, entry: list[Any]) -> bool:
        """``[bids, asks, book time]`` whose time reads as the decoder reads it (parsed into the cache)."""
        when = entry[2] if len(entry) == 3 else None
        return type(when) is str and (when in self._times or self._book_time(when))

    def _book_time(self, text: str) -> bool:
        """Parse a book's own time into the cache; False when the decoder would reject it."""
        when = _aware(text)
        if when is None:
            return False
        self._times[text] = when
        return True

    def forget(self) -> None:
        """Drop what was derived from the engine's state: called before every snapshot the engine processes, which
        brings its marks up to the last hit (:meth:`sync`) when it needs them."""
        self._notes.clear()
        self._floats.clear()
        if self.pending:
            self.pending = False
            self.engine.sync_hook = self._sync

    def sync(self) -> None:
        """Bring the engine's coin marks and its positions' last marks to the last hit, as the full path would
        have left them (a blocked symbol keeps them; the final equity reads them)."""
        self.pending = False
        self._sync()

    def _sync(self) -> None:
        engine = self.engine
        assert self._last is not None
        dom_books, _fgn_books, _rate = self._last
        engine._mark_books.clear()  # the hit's books are newer than any the engine kept
        marks = engine._marks
        for symbol in self.symbols:
            d_bids, d_asks = dom_books[symbol][0], dom_books[symbol][1]
            marks[symbol] = (Decimal(d_bids.split(None, 2)[0]) + Decimal(d_asks.split(None, 2)[0])) / TWO
        if engine.positions:
            engine._last_marks.update(self._exact_marks())

    def _exact_marks(self) -> dict[str, Decimal]:
        """Position id -> exact unrealized PnL at the last hit, in the engine's order (symbol, then position)."""
        engine = self.engine
        assert self._last is not None
        dom_books, fgn_books, rate = self._last
        mark = engine._mark
        out = {}
        positions = engine.positions
        for symbol in self.symbols:
            dom, fgn = dom_books[symbol], fgn_books[symbol]
            d_bids, d_asks, f_bids, f_asks = dom[0], dom[1], fgn[0], fgn[1]
            coin_mark = (Decimal(d_bids.split(None, 2)[0]) + Decimal(d_asks.split(None, 2)[0])) / TWO
            for position in positions.values():
                if position.symbol != symbol:
                    continue
                pq = position.qty
                if position.direction is Direction.KIMCHI:
                    dp, fp = exact_vwap(d_asks, pq), exact_vwap(f_bids, pq)
                else:
                    dp, fp = exact_vwap(d_bids, pq), exact_vwap(f_asks, pq)
                out[position.id] = mark(position, (dp, fp), rate, coin_mark)
        return out

    def exact_unrealized(self) -> Decimal:
        """The exact unrealized PnL of the last hit, summed in the engine's order (symbol, then position)."""
        unrealized = ZERO
        for value in self._exact_marks().values():
            unrealized += value
        return unrealized
