"""``arbframe profit [--since DATE] [--json]``: realized results of the closed positions in the store.

Totals over the positions closed since DATE (a date is midnight in arbitrage.timezone; an ISO time also works;
default: all): round trips, wins (realized PnL > 0), losses, win rate, realized PnL, fees, average holding time,
then the same per symbol and per trading day (arbitrage.timezone). Realized PnL is each position's recorded
figure: the KRW value of the balance changes its legs caused, at its close's FX rate and coin mark
(docs/TRADING.md "PnL"). Fees are each leg's fee valued when it was paid.

FX translation: what the move of USD/KRW since each close did to the USDT (and USDT-priced fee assets) those
closes left in or took out of the wallets, valued at the newest FX rate in the store: the accounting model's
FX translation term (arbframe.trading.accounting.Ledger) over the period's closes. The starting inventory's
translation is not in the store; the running service publishes it (arbitrage_fx_translation_krw).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from decimal import Decimal
from typing import Any

from arbframe.commands.bookkeeping import (
    MONEY,
    MONEY_OR_NULL,
    TIME_OR_NULL,
    add_store_options,
    dec,
    duration,
    exact_sum,
    fees_krw,
    iso,
    krw,
    obj,
    open_store,
    parse_since,
    percent,
    print_json,
    printed_schema,
    ratio,
    table,
    timezone_of,
)
from arbframe.commands.options import plain_help
from arbframe.core.models import FxRate, Position

_TALLY = {
    "trades": {"type": "integer", "minimum": 0}, "wins": {"type": "integer", "minimum": 0},
    "losses": {"type": "integer", "minimum": 0}, "win_rate": MONEY_OR_NULL, "realized_pnl_krw": MONEY,
    "fees_krw": MONEY, "avg_held_seconds": {"type": ["number", "null"]},
}
#: JSON Schema of ``arbframe profit --json``
JSON_SCHEMA = obj({
    "storage": {"type": "string"}, "keeps_history": {"type": "boolean"}, "since": TIME_OR_NULL,
    "timezone": {"type": "string"}, "first_close": TIME_OR_NULL, "last_close": TIME_OR_NULL, **_TALLY,
    "fx_translation": obj({"krw": MONEY_OR_NULL, "rate": MONEY_OR_NULL, "rate_source": {"type": ["string", "null"]},
                           "rate_ts": TIME_OR_NULL, "positions_left_out": {"type": "integer", "minimum": 0},
                           "note": {"type": ["string", "null"]}}),
    "per_symbol": {"type": "array", "items": obj({"symbol": {"type": "string"}, **_TALLY})},
    "per_day": {"type": "array", "items": obj({"day": {"type": "string", "format": "date"}, **_TALLY})},
})


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser("profit", help="realized PnL, trades, win rate, fees, FX translation; per symbol "
                            "and per day (--since DATE, --json)", description=plain_help(__doc__))
    add_store_options(parser, JSON_SCHEMA)
    parser.add_argument("--since", metavar="DATE",
                        help="only positions closed at or after DATE (YYYY-MM-DD: midnight in arbitrage.timezone; "
                             "or an ISO time)")
    parser.set_defaults(handler=run)
    return parser


@dataclass
class Tally:
    """Counts and sums of a group of closed positions."""

    trades: int = 0
    wins: int = 0
    pnl: list[Decimal] = field(default_factory=list)
    fees: list[Decimal] = field(default_factory=list)
    held: float = 0.0

    def add(self, p: Position) -> None:
        pnl = p.realized_pnl_krw
        self.trades += 1
        if pnl is not None and pnl > 0:
            self.wins += 1
        if pnl is not None:
            self.pnl.append(pnl)
        self.fees.append(fees_krw(p))
        if p.closed_at is not None:
            self.held += (p.closed_at - p.opened_at).total_seconds()

    def to_json(self) -> dict[str, Any]:
        rate = ratio(self.wins, self.trades)
        return {
            "trades": self.trades, "wins": self.wins, "losses": self.trades - self.wins,
            "win_rate": dec(rate), "realized_pnl_krw": dec(exact_sum(self.pnl)), "fees_krw": dec(exact_sum(self.fees)),
            "avg_held_seconds": self.held / self.trades if self.trades else None,
        }


@dataclass(frozen=True)
class FxTranslation:
    """The FX translation of a period's closes at ``rate`` (None: no rate in the store)."""

    krw: Decimal | None
    rate: FxRate | None
    left_out: int  # closes recorded without balance changes (written before the accounting model)

    def to_json(self) -> dict[str, Any]:
        fx = self.rate
        return {
            "krw": dec(self.krw), "rate": dec(fx.rate) if fx else None, "rate_source": fx.source if fx else None,
            "rate_ts": iso(fx.ts) if fx else None, "positions_left_out": self.left_out, "note": None,
        }


def fx_translation(positions: Sequence[Position], rate: FxRate | None,
                   priced: Mapping[str, Decimal]) -> FxTranslation:
    """The accounting model's FX translation term over ``positions`` at ``rate``: each close's balance changes
    enter a :class:`~arbframe.trading.accounting.Ledger` at its exit rate; the ledger values them at ``rate``."""
    from arbframe.trading.accounting import Ledger, decode_changes

    ledger = Ledger(priced)
    left_out = 0
    for p in positions:
        if not p.balance_changes or p.exit_fx_rate is None:
            left_out += 1
            continue
        ledger.close(decode_changes(p.balance_changes), p.exit_fx_rate, {}, p.realized_pnl_krw or Decimal(0))
    if rate is None:
        return FxTranslation(None, None, left_out)
    return FxTranslation(ledger.breakdown({}, rate.rate, {}, ()).fx_translation, rate, left_out)


def priced_assets(config: Mapping[str, Any]) -> dict[str, Decimal]:
    """Fee assets priced in USDT by ``paper.fees`` (BNB -> its price), as the engine values them."""
    from arbframe.trading.accounting import fee_schedule

    out: dict[str, Decimal] = {}
    for section in (((config.get("paper") or {}).get("fees")) or {}).values():
        schedule = fee_schedule(section, Decimal(0))
        for side in (schedule.buy, schedule.sell):
            if side.asset not in ("quote", "base") and side.asset_price is not None:
                out[side.asset] = side.asset_price
    return out


def profit_report(closed: Sequence[Position], *, since: datetime | None, tz: tzinfo, tz_name: str,
                  last_fx: FxRate | None, priced: Mapping[str, Decimal]) -> dict[str, Any]:
    """The ``--json`` document of ``arbframe profit`` (also what the text output prints)."""
    period = [p for p in closed if since is None or (p.closed_at is not None and p.closed_at >= since)]
    period.sort(key=lambda p: (p.closed_at or p.opened_at, p.id))
    total = Tally()
    symbols: dict[str, Tally] = {}
    days: dict[date, Tally] = {}
    for p in period:
        total.add(p)
        symbols.setdefault(p.symbol, Tally()).add(p)
        if p.closed_at is not None:
            days.setdefault(p.closed_at.astimezone(tz).date(), Tally()).add(p)
    rate = last_fx
    if rate is None and period:  # no FX rows: the newest close's own rate is the newest rate the store holds
        newest = period[-1]
        if newest.exit_fx_rate is not None and newest.closed_at is not None:
            rate = FxRate(id="", ts=newest.closed_at, rate=newest.exit_fx_rate, source=f"exit rate of {newest.id}")
    return {
        "since": iso(since), "timezone": tz_name,
        "first_close": iso(period[0].closed_at) if period else None,
        "last_close": iso(period[-1].closed_at) if period else None,
        **total.to_json(),
        "fx_translation": fx_translation(period, rate, priced).to_json(),
        "per_symbol": [{"symbol": s, **t.to_json()} for s, t in sorted(symbols.items())],
        "per_day": [{"day": d.isoformat(), **t.to_json()} for d, t in sorted(days.items())],
    }


def run(args: argparse.Namespace) -> int:
    if printed_schema(args):
        return 0
    with open_store(args) as store:
        tz_name, tz = timezone_of(store.config)
        since = parse_since(args.since, tz) if args.since else None
        loaded = store.closed_positions()
        note = None
        try:
            last_fx = store.storage.load_last_fx_rate()
        except Exception as exc:  # the rates may be out of reach while the positions come from a local copy
            last_fx, note = None, f"the store's FX rates could not be read ({type(exc).__name__}: {exc})"
        report = profit_report(loaded or [], since=since, tz=tz, tz_name=tz_name, last_fx=last_fx,
                               priced=priced_assets(store.config))
        if note is not None:
            report["fx_translation"]["note"] = note
        report = {"storage": store.describe(), "keeps_history": loaded is not None, **report}
        if args.json:
            print_json(report)
            return 0
        print("\n".join(format_report(report)))
    return 0


def format_report(r: Mapping[str, Any]) -> list[str]:
    """The text form of :func:`profit_report`'s document."""
    since = f" since {r['since']}" if r["since"] else ""
    if not r["keeps_history"]:
        return [f"{r['storage']} keeps no closed positions: no profit to report"]
    if not r["trades"]:
        return [f"No positions closed{since} in {r['storage']}."]
    out = [f"Realized results{since} ({r['storage']}; days in {r['timezone']})", ""]
    fx = r["fx_translation"]
    fx_line = "-" if fx["krw"] is None else f"{krw(Decimal(fx['krw']))} KRW at {fx['rate']} ({fx['rate_source']}, " \
              f"{fx['rate_ts']})"
    if fx["positions_left_out"]:
        fx_line += f"; {fx['positions_left_out']} positions without balance changes left out"
    if fx["note"]:
        fx_line += f"; {fx['note']}"
    rows = [
        ("round trips", f"{r['trades']} ({r['wins']} won, {r['losses']} lost)"),
        ("win rate", percent(_d(r["win_rate"]), 1)),
        ("realized PnL", f"{krw(_d(r['realized_pnl_krw']))} KRW"),
        ("fees", f"{krw(_d(r['fees_krw']))} KRW"),
        ("FX translation", fx_line),
        ("average held", duration(r["avg_held_seconds"])),
        ("first / last close", f"{r['first_close']} / {r['last_close']}"),
    ]
    out.extend(f"{k:<20}{v}" for k, v in rows)
    for title, key, name in (("Per symbol", "per_symbol", "symbol"), ("Per day", "per_day", "day")):
        out += ["", title]
        out += table((name.upper(), "TRADES", "WON", "WIN RATE", "PNL KRW", "FEES KRW"),
                     [(g[name], str(g["trades"]), str(g["wins"]), percent(_d(g["win_rate"]), 1),
                       krw(_d(g["realized_pnl_krw"])), krw(_d(g["fees_krw"]))) for g in r[key]], right=(1, 2, 3, 4, 5))
    return out


def _d(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)
