"""``arbframe history [--limit N] [--json]``: closed positions, newest close first.

Reads the closed positions of the configured storage (any backend, through the storage interface) and prints
one line per round trip: when it closed (in arbitrage.timezone), symbol, direction, quantity, how long it was
held, entry and exit premium, why it closed, its fees and its realized PnL in KRW (valued at the close's FX rate
and coin mark, as recorded). --json prints one object: storage, timezone, total_closed, shown and the positions
(money as exact decimal strings, times ISO 8601 UTC).
"""

from __future__ import annotations

import argparse

from arbframe.commands.bookkeeping import (
    MONEY,
    MONEY_OR_NULL,
    TIME_OR_NULL,
    BadOption,
    add_store_options,
    dec,
    duration,
    fees_krw,
    iso,
    krw,
    local_time,
    newest_first,
    obj,
    open_store,
    percent,
    print_json,
    printed_schema,
    table,
    timezone_of,
)
from arbframe.commands.options import plain_help
from arbframe.core.models import Position

DEFAULT_LIMIT = 20

#: JSON Schema of ``arbframe history --json``
POSITION_SCHEMA = obj({
    "id": {"type": "string"}, "symbol": {"type": "string"}, "direction": {"enum": ["kimchi", "reverse"]},
    "qty": MONEY, "opened_at": {"type": "string", "format": "date-time"}, "closed_at": TIME_OR_NULL,
    "held_seconds": {"type": ["number", "null"]}, "entry_premium": MONEY, "exit_premium": MONEY_OR_NULL,
    "entry_fx_rate": MONEY, "exit_fx_rate": MONEY_OR_NULL, "close_reason": {"type": ["string", "null"]},
    "fees_krw": MONEY, "realized_pnl_krw": MONEY_OR_NULL, "domestic_exchange": {"type": "string"},
    "foreign_exchange": {"type": "string"}, "simulated": {"type": "boolean"}, "instance_id": {"type": "string"},
})
JSON_SCHEMA = obj({
    "storage": {"type": "string"}, "keeps_history": {"type": "boolean"}, "timezone": {"type": "string"},
    "total_closed": {"type": "integer", "minimum": 0}, "shown": {"type": "integer", "minimum": 0},
    "positions": {"type": "array", "items": POSITION_SCHEMA},
})


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser("history", help="closed positions, newest first (--limit N, --json)",
                            description=plain_help(__doc__))
    add_store_options(parser, JSON_SCHEMA)
    parser.add_argument("--limit", "-n", default=str(DEFAULT_LIMIT), metavar="N",
                        help=f"show at most N positions (default {DEFAULT_LIMIT}; 0: all)")
    parser.set_defaults(handler=run)
    return parser


def limit_of(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise BadOption(f"--limit: {text!r} is not a whole number >= 0")
    return value


def position_entry(p: Position) -> dict[str, object]:
    """One closed position as JSON."""
    held = (p.closed_at - p.opened_at).total_seconds() if p.closed_at is not None else None
    return {
        "id": p.id, "symbol": p.symbol, "direction": p.direction.value, "qty": dec(p.qty),
        "opened_at": iso(p.opened_at), "closed_at": iso(p.closed_at), "held_seconds": held,
        "entry_premium": dec(p.entry_premium), "exit_premium": dec(p.exit_premium),
        "entry_fx_rate": dec(p.entry_fx_rate), "exit_fx_rate": dec(p.exit_fx_rate),
        "close_reason": p.close_reason, "fees_krw": dec(fees_krw(p)), "realized_pnl_krw": dec(p.realized_pnl_krw),
        "domestic_exchange": p.domestic_exchange, "foreign_exchange": p.foreign_exchange,
        "simulated": p.simulated, "instance_id": p.instance_id,
    }


def run(args: argparse.Namespace) -> int:
    if printed_schema(args):
        return 0
    limit = limit_of(args.limit)
    with open_store(args) as store:
        tz_name, tz = timezone_of(store.config)
        loaded = store.closed_positions()
        closed = newest_first(loaded or [])
        shown = closed[:limit] if limit else closed
        if args.json:
            print_json({
                "storage": store.describe(), "keeps_history": loaded is not None, "timezone": tz_name,
                "total_closed": len(closed), "shown": len(shown), "positions": [position_entry(p) for p in shown],
            })
            return 0
        if loaded is None:
            print(f"{store.describe()} keeps no closed positions (no history to show)")
            return 0
        if not closed:
            print(f"No closed positions yet in {store.describe()}.")
            return 0
        print(f"Closed positions, newest first: {len(shown)} of {len(closed)} ({store.describe()}; times in "
              f"{tz_name})")
        rows = [(local_time(p.closed_at, tz), p.symbol, p.direction.value, format(p.qty, "f"),
                 duration((p.closed_at - p.opened_at).total_seconds() if p.closed_at else None),
                 percent(p.entry_premium), percent(p.exit_premium), p.close_reason or "-", krw(fees_krw(p)),
                 krw(p.realized_pnl_krw)) for p in shown]
        for line in table(("CLOSED", "SYMBOL", "DIRECTION", "QTY", "HELD", "ENTRY", "EXIT", "REASON", "FEES KRW",
                           "PNL KRW"), rows, right=(3, 4, 5, 6, 8, 9)):
            print(line)
    return 0
