"""Residual exposure: coin a live hedge could neither complete nor unwind, kept until an operator flattens it.

A hedge whose lagging leg could not be completed (``live.hedge_timeout_seconds`` of retries) and whose excess
could not be unwound either leaves coin unhedged: a :class:`Residual` (signed: > 0 the hedge bought more than it
sold, < 0 it sold more; ``venue`` is where the excess sits, the venue an operator trades it back on).

**Exposure.** Per symbol, the net coin of its residuals marked to market: valued at the symbol's current coin
mark (the mid of the newest domestic book that passed the market-data checks, the mark the accounting values coin
at), or, before a book has been seen (``arbframe status``, a runner's first tick), at the latest residual's own
price (its hedge's domestic VWAP, KRW per coin). A +0.01 left by one hedge and a -0.01 left by another are no
exposure. The total, ``arbframe_residual_exposure_krw``, is the sum of the symbols' absolute values, updated every
tick; above ``live.max_residual_krw`` it blocks entries (also when the price moved it there), and a hedge that
leaves it there trips the kill switch.

**Kept in storage** as one control record per symbol of the book (:func:`record_name`:
``residual.<domestic>-<foreign>-<SYMBOL>``, the name of the symbol's book lock), so the runner trading the symbol
restores it at start whatever its ``service.instance_id``, ``arbframe status`` shows it, and every host sharing
the store reads the same figure; an index record per venue pair (``residual.<domestic>-<foreign>``: the symbols
with a record) lets a runner, ``arbframe status`` and ``arbframe resume`` find residuals on symbols no longer
traded (taken out of ``arbitrage.symbols``). A storage without control records (``NotImplementedError``) keeps
the records as files under ``<data_dir>/control/`` (one host). Written when the engine records the hedge (before
the hedge is marked settled, so a restart either settles the hedge again or finds its residual) and when it is
cleared.

**Cleared** only by an operator who flattened it by hand: ``arbframe resume --flattened`` clears the residuals it
read and printed (their keys travel in the kill switch record, so a running runner drops them within one tick and
a stopped one at its next start), releases the kill switch and takes the venues' balances as the new baseline of
the balance check; ``arbframe kill --flattened`` clears them and keeps (or trips) the switch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from arbframe.core.models import ZERO

#: the control record name's prefix (``residual.<domestic>-<foreign>-<SYMBOL>``)
PREFIX = "residual"


@dataclass(frozen=True)
class Residual:
    """Coin one hedge (``position_id``, ``purpose`` open/close) left unhedged on ``venue``: ``coin`` > 0 long,
    < 0 short; valued at ``mark_krw`` (KRW per coin); recorded at ``ts`` (ISO 8601)."""

    position_id: str
    purpose: str
    symbol: str
    venue: str
    coin: Decimal
    mark_krw: Decimal
    ts: str

    @property
    def key(self) -> str:
        """What ``arbframe resume --flattened`` names to clear it."""
        return f"{self.position_id}:{self.purpose}"

    @property
    def krw(self) -> Decimal:
        return self.coin * self.mark_krw

    def describe(self) -> str:
        """``BTC -0.01 on upbit (short: buy 0.01 there to flatten; -999,990 KRW at 99999000; hedge p1 open, since
        ...)``."""
        todo = f"short: buy {-self.coin:f}" if self.coin < 0 else f"long: sell {self.coin:f}"
        return (f"{self.symbol} {self.coin:+f} on {self.venue} ({todo} there to flatten; {_krw(self.krw)} KRW at "
                f"{self.mark_krw:f}; hedge {self.position_id} {self.purpose}, since {self.ts})")

    def as_dict(self) -> dict[str, str]:
        return {"position_id": self.position_id, "purpose": self.purpose, "symbol": self.symbol,
                "venue": self.venue, "coin": format(self.coin, "f"), "mark_krw": format(self.mark_krw, "f"),
                "ts": self.ts}

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> Residual:
        return cls(str(value["position_id"]), str(value.get("purpose") or "open"), str(value["symbol"]).upper(),
                   str(value["venue"]), Decimal(str(value["coin"])), Decimal(str(value["mark_krw"])),
                   str(value.get("ts") or ""))


@dataclass(frozen=True)
class SymbolExposure:
    """The residuals of one symbol: net ``coin`` valued at ``mark_krw`` (``marked``: the market's coin mark; else
    the latest residual's own price)."""

    symbol: str
    coin: Decimal
    mark_krw: Decimal
    venues: dict[str, Decimal]  # venue -> net coin left there
    residuals: tuple[Residual, ...]
    marked: bool = False

    @property
    def krw(self) -> Decimal:
        return self.coin * self.mark_krw

    def describe(self) -> str:
        where = ", ".join(f"{v} {c:+f}" for v, c in sorted(self.venues.items()) if c)
        return (f"{self.symbol} {self.coin:+f} ({where or 'netted out'}) = {_krw(abs(self.krw))} KRW at "
                f"{self.mark_krw.normalize():f} ({'market mark' if self.marked else 'hedge price'})")


def exposure(residuals: Iterable[Residual], marks: Mapping[str, Decimal] | None = None
             ) -> dict[str, SymbolExposure]:
    """Symbol -> its :class:`SymbolExposure` (the module docstring); ``marks``: symbol -> coin mark in KRW."""
    by_symbol: dict[str, list[Residual]] = {}
    for r in residuals:
        by_symbol.setdefault(r.symbol, []).append(r)
    out = {}
    for symbol, items in sorted(by_symbol.items()):
        items.sort(key=lambda r: r.ts)
        venues: dict[str, Decimal] = {}
        for r in items:
            venues[r.venue] = venues.get(r.venue, ZERO) + r.coin
        mark = marks.get(symbol) if marks else None
        out[symbol] = SymbolExposure(symbol, sum((r.coin for r in items), ZERO),
                                     items[-1].mark_krw if mark is None else mark, venues, tuple(items),
                                     mark is not None)
    return out


def total_krw(residuals: Iterable[Residual], marks: Mapping[str, Decimal] | None = None) -> Decimal:
    """``arbframe_residual_exposure_krw``: the sum over symbols of |net coin x mark|."""
    return sum((abs(e.krw) for e in exposure(residuals, marks).values()), ZERO)


def record_name(domestic: str, foreign: str, symbol: str | None = None) -> str:
    """The record of ``symbol``'s residuals; without a symbol, the venue pair's index of symbols with one."""
    from arbframe.kernel.book import safe_name

    return safe_name(f"{PREFIX}.{domestic}-{foreign}" + (f"-{symbol.upper()}" if symbol else ""))


def _krw(amount: Decimal) -> str:
    return f"{amount.quantize(Decimal(1)):,}"


class ResidualStore:
    """The residual records of one book (venue pair and symbols) in ``storage``, or files under
    ``<data_dir>/control/`` when the storage keeps no control records."""

    def __init__(self, storage: Any, domestic: str, foreign: str, symbols: Sequence[str],
                 data_dir: str | Path | None = None) -> None:
        from arbframe.execution.control import ControlRecords

        self.records = ControlRecords(storage, data_dir)
        self.domestic, self.foreign = domestic, foreign
        self.symbols = tuple(sorted({s.upper() for s in symbols}))

    def name(self, symbol: str) -> str:
        return record_name(self.domestic, self.foreign, symbol)

    @property
    def where(self) -> str:
        return self.records.where

    def indexed(self) -> set[str]:
        """The symbols of the venue pair with a residual record (any book's)."""
        value = self.records.read(record_name(self.domestic, self.foreign))
        return {str(s).upper() for s in (value or {}).get("symbols") or []}

    def load(self, *, every_symbol: bool = False) -> list[Residual]:
        """Every residual recorded for the book's symbols (``every_symbol``: also those on the venue pair's other
        symbols, from the index); raises when the store does not answer."""
        symbols = sorted(set(self.symbols) | self.indexed()) if every_symbol else self.symbols
        out: list[Residual] = []
        for symbol in symbols:
            value = self.records.read(self.name(symbol))
            for entry in (value or {}).get("residuals") or []:
                out.append(Residual.from_dict(entry))
        return out

    def save(self, symbol: str, residuals: Iterable[Residual], *, by: str = "", note: str = "") -> None:
        """Replace ``symbol``'s record with ``residuals`` (those of other symbols are ignored), and keep the index
        of symbols with residuals."""
        from arbframe.core.models import utcnow

        symbol = symbol.upper()
        kept = sorted((r for r in residuals if r.symbol == symbol), key=lambda r: (r.ts, r.key))
        now = utcnow().isoformat()
        self.records.write(self.name(symbol), {
            "symbol": symbol, "venues": [self.domestic, self.foreign],
            "residuals": [r.as_dict() for r in kept], "updated_at": now, "by": by, "note": note,
        })
        index = self.indexed()
        wanted = index | {symbol} if kept else index - {symbol}
        if wanted != index:  # (a lost race between two books only hides an orphan: each book reads its own)
            self.records.write(record_name(self.domestic, self.foreign),
                               {"symbols": sorted(wanted), "updated_at": now, "by": by})
