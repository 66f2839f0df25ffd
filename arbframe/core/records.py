"""Tables and their text form: one place that turns records into rows of strings and back.

CSV files, the PostgreSQL ``COPY`` path, the migration and backtest recordings all use these functions, so a
decimal or a timestamp is spelt the same way everywhere and round-trips exactly.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from arbframe.core.models import ErrorRecord, FxRate, Order, Position, Spread, Trade

R = TypeVar("R")

#: table name -> record class, in the order tables are created and migrated
TABLES: dict[str, type] = {
    "spreads": Spread,
    "positions": Position,
    "orders": Order,
    "trades": Trade,
    "fx_rates": FxRate,
    "errors": ErrorRecord,
}
TABLE_OF: dict[type, str] = {cls: name for name, cls in TABLES.items()}


class RowError(ValueError):
    """A row that cannot become a record; the message names the column and the value."""


_COLUMNS: dict[type, tuple[str, ...]] = {}


def _column_fields(cls: type) -> list[dataclasses.Field]:
    """The fields that are table columns: all but those marked ``metadata={"column": False}`` (``Order.fees``)."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("column", True)]


def columns(cls: type) -> tuple[str, ...]:
    cols = _COLUMNS.get(cls)
    if cols is None:  # dataclass fields are fixed once the class exists: computed once per class
        cols = _COLUMNS[cls] = tuple(f.name for f in _column_fields(cls))
    return cols


def _fmt(value: Any) -> str:
    kind = type(value)  # exact types first: the common cases without the isinstance chain
    if kind is str:
        return value
    if kind is Decimal:
        return format(value, "f")
    if value is None:
        return ""
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def to_row(record: Any) -> list[str]:
    """The record's values as strings, in column order."""
    return [_fmt(getattr(record, name)) for name in columns(type(record))]


def order_row(order: Order) -> list[str]:
    """``to_row(order)`` for an :class:`Order`, spelt out field by field (the execution layer's write-ahead path
    writes one per order state before sending; ``tests/test_execution_storage.py`` holds it equal to
    ``to_row``)."""
    price, avg, eid, pid, cid = order.price, order.avg_price, order.exchange_order_id, order.position_id, \
        order.client_order_id
    ts = order.ts
    if ts.tzinfo is not timezone.utc:  # the executor's records are UTC already: no copy to convert
        ts = ts.astimezone(timezone.utc)
    return [
        order.id, ts.isoformat(),
        # ``_value_``: the enums' value without the ``value`` property's Python-level descriptor call
        order.exchange, order.symbol, order.side._value_, order.order_type._value_, format(order.qty, "f"),
        "" if price is None else format(price, "f"), order.status._value_, format(order.filled_qty, "f"),
        "" if avg is None else format(avg, "f"), format(order.fee, "f"), order.fee_currency,
        "" if pid is None else pid, "" if cid is None else cid, "" if eid is None else eid,
        "true" if order.simulated else "false", order.instance_id,
    ]


def to_dict(record: Any) -> dict[str, str]:
    return dict(zip(columns(type(record)), to_row(record), strict=True))


def _parse_datetime(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError("timestamp has no time zone")
    return value.astimezone(timezone.utc)


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "t", "yes"):
        return True
    if lowered in ("false", "0", "f", "no"):
        return False
    raise ValueError("expected true or false")


def _parse_decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError("expected a decimal number") from None
    if not value.is_finite():
        raise ValueError("expected a finite decimal number")
    return value


def _parser_for(annotation: Any) -> tuple[Callable[[str], Any], bool]:
    """(parse function, optional?) for a field's resolved type."""
    optional = False
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) != len(typing.get_args(annotation))
        annotation = args[0]
    if annotation is Decimal:
        return _parse_decimal, optional
    if annotation is datetime:
        return _parse_datetime, optional
    if annotation is bool:
        return _parse_bool, optional
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return annotation, optional
    return str, optional


_PARSERS: dict[type, list[tuple[str, Callable[[str], Any], bool, bool]]] = {}


def _parsers(cls: type) -> list[tuple[str, Callable[[str], Any], bool, bool]]:
    cached = _PARSERS.get(cls)
    if cached is None:
        hints = typing.get_type_hints(cls)
        cached = []
        for f in _column_fields(cls):
            parse, optional = _parser_for(hints[f.name])
            has_default = f.default is not dataclasses.MISSING
            cached.append((f.name, parse, optional, has_default))
        _PARSERS[cls] = cached
    return cached


def from_row(cls: type[R], row: Mapping[str, str | None]) -> R:
    """Build a record from a mapping of column -> text; raises RowError naming the bad column."""
    kwargs: dict[str, Any] = {}
    for name, parse, optional, has_default in _parsers(cls):
        text = row.get(name)
        if text is None or text == "":
            if optional:
                kwargs[name] = None
                continue
            if parse is str and text == "":
                kwargs[name] = ""
                continue
            if has_default:
                continue
            raise RowError(f"column {name!r} is empty")
        try:
            kwargs[name] = parse(text)
        except (ValueError, TypeError) as exc:
            raise RowError(f"column {name!r}: {text!r}: {exc}") from None
    return cls(**kwargs)


def read_csv_table(
    path: str | os.PathLike[str],
    cls: type[R],
    *,
    on_error: Callable[[str], None] | None = None,
    limit: int | None = None,
) -> Iterator[tuple[int, R]]:
    """Yield ``(line number, record)`` from a table's CSV file.

    A bad row is reported through ``on_error`` as ``file:line: reason`` and skipped; so is a torn last line (no
    trailing newline: a write interrupted by a crash). Columns are matched by the header's names.
    """
    report = on_error or (lambda _msg: None)
    p = Path(path)
    with p.open("rb") as raw:
        torn = False
        if raw.seek(0, os.SEEK_END) > 0:
            raw.seek(-1, os.SEEK_END)
            torn = raw.read(1) != b"\n"
    with p.open("r", newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except (StopIteration, csv.Error):
            return
        missing = [c for c in columns(cls) if c not in header and not _has_default(cls, c)]
        if missing:
            report(f"{p}:1: header lacks column(s) {', '.join(missing)}; file skipped")
            return
        unknown = [c for c in header if c not in set(columns(cls))]
        if unknown:
            report(f"{p}:1: unknown column(s) {', '.join(unknown)} ignored")
        pending: tuple[int, list[str]] | None = None
        count = 0
        while True:
            try:
                values = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                report(f"{p}:{reader.line_num}: {exc}; row skipped")
                continue
            if pending is not None:
                record = _record_or_report(cls, header, pending, p, report)
                if record is not None:
                    yield pending[0], record
                    count += 1
                    if limit is not None and count >= limit:
                        return
            pending = (reader.line_num, values) if values else None
        if pending is not None:
            if torn:
                report(f"{p}:{pending[0]}: torn last line (interrupted write) skipped")
                return
            record = _record_or_report(cls, header, pending, p, report)
            if record is not None:
                yield pending[0], record


def _record_or_report(
    cls: type[R], header: list[str], row: tuple[int, list[str]], path: Path, report: Callable[[str], None]
) -> R | None:
    line, values = row
    if len(values) != len(header):
        report(f"{path}:{line}: expected {len(header)} fields, found {len(values)}; row skipped")
        return None
    try:
        return from_row(cls, dict(zip(header, values, strict=True)))
    except RowError as exc:
        report(f"{path}:{line}: {exc}; row skipped")
        return None


def newest_fx_rate(rates: Iterable[FxRate]) -> FxRate | None:
    """The newest of ``rates`` (largest ``ts``, then ``id``): what ``Storage.load_last_fx_rate`` answers."""
    return max(rates, key=lambda fx: (fx.ts, fx.id), default=None)


def newest_spreads(spreads: Iterable[Spread], symbols: Iterable[str]) -> list[Spread]:
    """The newest spread (largest ``ts``, then ``id``) of each (symbol, direction) among ``symbols``: what
    ``Storage.load_last_spreads`` answers."""
    wanted = {s.upper() for s in symbols}
    newest: dict[tuple[str, Any], Spread] = {}
    for spread in spreads:
        if spread.symbol.upper() not in wanted:
            continue
        key = (spread.symbol, spread.direction)
        known = newest.get(key)
        if known is None or (spread.ts, spread.id) > (known.ts, known.id):
            newest[key] = spread
    return list(newest.values())


def _has_default(cls: type, name: str) -> bool:
    for f in _column_fields(cls):
        if f.name == name:
            return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    return False
