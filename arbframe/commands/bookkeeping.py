"""What ``arbframe status``, ``profit`` and ``history`` share: the store they read and how they print it.

The three operator commands read whatever storage the config selects through the :class:`arbframe.Storage`
interface only (``load_positions``, ``load_closed_positions``, ``load_last_fx_rate``, ``load_last_spreads``), so
they work on CSV, PostgreSQL or a third party's backend alike. Figures follow the accounting model of
:mod:`arbframe.trading.accounting` (docs/TRADING.md "PnL"): a position's realized PnL is the KRW value its legs'
balance changes had at its close, as recorded; nothing here recomputes it another way.

Money in ``--json`` output is a string holding the exact decimal (never a float); times are ISO 8601 in UTC.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timezone, tzinfo
from decimal import Decimal, localcontext
from typing import TYPE_CHECKING, Any

from arbframe.commands.options import add_common_options
from arbframe.core.errors import ArbframeError
from arbframe.core.models import ZERO, Position

if TYPE_CHECKING:
    from arbframe.kernel.interfaces import Storage
    from arbframe.kernel.plugin_host import Kernel


#: JSON Schema pieces of the ``--json`` documents: money is an exact decimal string
MONEY: dict[str, Any] = {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$"}
MONEY_OR_NULL: dict[str, Any] = {**MONEY, "type": ["string", "null"]}
TIME_OR_NULL: dict[str, Any] = {"type": ["string", "null"], "format": "date-time"}


def obj(properties: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """An object schema requiring every one of ``properties``."""
    return {"type": "object", "required": list(properties), "properties": dict(properties), **extra}


class BadOption(ArbframeError):
    """A command-line value the command cannot use (exit 2, one line)."""

    exit_status = 2


def add_store_options(parser: argparse.ArgumentParser, schema: Mapping[str, Any]) -> None:
    """``--config``, ``--verbose``, ``--quiet``, ``--json`` and ``--json-schema`` (prints ``schema``)."""
    add_common_options(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object (money as exact decimal strings)")
    parser.add_argument("--json-schema", action="store_true",
                        help="print the JSON Schema (Draft 2020-12) of the --json output and exit")
    parser.set_defaults(json_schema_document=schema)


def printed_schema(args: argparse.Namespace) -> bool:
    """``--json-schema``: print the command's schema (True: the command is done)."""
    if not getattr(args, "json_schema", False):
        return False
    print_json({"$schema": "https://json-schema.org/draft/2020-12/schema", **args.json_schema_document})
    return True


@dataclass
class Store:
    """The kernel and the storage driver a command reads (closed by :func:`open_store`)."""

    kernel: Kernel
    storage: Storage

    @property
    def config(self) -> Mapping[str, Any]:
        return self.kernel.config

    def describe(self) -> str:
        return self.storage.describe()

    def closed_positions(self) -> list[Position] | None:
        """Closed positions (latest state of each id); None when the backend keeps no history."""
        return self.storage.load_closed_positions()


@contextmanager
def open_store(args: argparse.Namespace, overrides: Mapping[str, Any] | None = None) -> Iterator[Store]:
    """The validated config's kernel (``overrides`` applied) and its storage driver (``storage.backend``), closed
    afterwards. Without
    ``--verbose`` the drivers' start-up lines stay out of the report (warnings still show)."""
    from arbframe.commands import load_kernel

    if not getattr(args, "verbose", False):
        logging.getLogger().setLevel(logging.WARNING)
    kernel = load_kernel(args, overrides)
    try:
        yield Store(kernel, kernel.load_storage())
    finally:
        kernel.close()


# ------------------------------------------------------------------------------------------------ figures
def fees_krw(position: Position) -> Decimal:
    """Entry and exit fees of a position, each valued in KRW when it was paid (as recorded)."""
    return position.entry_fees_krw + (position.exit_fees_krw or ZERO)


def exact_sum(values: Iterable[Decimal]) -> Decimal:
    """A sum at the accounting precision (stored figures carry many digits; 28 would round them)."""
    from arbframe.trading.accounting import PRECISION

    with localcontext() as ctx:
        ctx.prec = PRECISION
        return sum(values, ZERO)


def ratio(part: int, whole: int) -> Decimal | None:
    """``part / whole`` as a decimal (28 digits), None for 0/0."""
    return Decimal(part) / Decimal(whole) if whole else None


def newest_first(positions: Iterable[Position]) -> list[Position]:
    """Closed positions, latest close first (then id, for a stable order)."""
    return sorted(positions, key=lambda p: (p.closed_at or p.opened_at, p.id), reverse=True)


def timezone_of(config: Mapping[str, Any]) -> tuple[str, tzinfo]:
    """The configured trading day's time zone (``arbitrage.timezone``, default ``Asia/Seoul``)."""
    from arbframe.trading.statistics import load_timezone

    name = str((config.get("arbitrage") or {}).get("timezone") or "Asia/Seoul")
    return name, load_timezone(name)


def parse_since(text: str, tz: tzinfo) -> datetime:
    """``--since``: a date (``2026-01-02``: midnight of that day in the trading time zone) or an ISO time (without
    an offset: in the trading time zone). Anything else: :class:`BadOption`."""
    value = text.strip()
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(0), tz).astimezone(timezone.utc)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadOption(f"--since: {text!r} is neither a date (YYYY-MM-DD) nor an ISO time "
                        "(YYYY-MM-DDTHH:MM[:SS][+HH:MM])") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return moment.astimezone(timezone.utc)


# ------------------------------------------------------------------------------------------------- output
def iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.astimezone(timezone.utc).isoformat()


def dec(value: Decimal | None) -> str | None:
    """A decimal as exact text for JSON (``format(x, 'f')``), None as null."""
    return None if value is None else format(value, "f")


def print_json(document: Mapping[str, Any]) -> None:
    print(json.dumps(document, indent=2, ensure_ascii=False))


def krw(value: Decimal | None) -> str:
    """Whole won with thousands separators (``-1,234``); ``-`` for no value."""
    if value is None:
        return "-"
    whole = value.quantize(Decimal(1))
    return f"{whole + 0:,}"  # + 0 drops a negative zero


def percent(value: Decimal | None, places: int = 3) -> str:
    return "-" if value is None else f"{value * 100:.{places}f}%"


def duration(seconds: float | None) -> str:
    """``3d04h``, ``2h05m``, ``4m10s`` or ``12s``."""
    if seconds is None:
        return "-"
    s = round(seconds)
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def local_time(ts: datetime | None, tz: tzinfo) -> str:
    return "-" if ts is None else ts.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


def table(headers: Iterable[str], rows: Iterable[Iterable[str]], right: Iterable[int] = ()) -> list[str]:
    """Aligned text columns (the ``right`` column indexes right-aligned, for numbers)."""
    heads = list(headers)
    body = [list(map(str, row)) for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in body)]) for i, h in enumerate(heads)]
    align = set(right)

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in align else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths,
                                                                                              strict=True))).rstrip()

    return [line(heads), *(line(r) for r in body)]
