"""Tables and their text form: one place that turns records into rows of strings and back.

CSV files, the PostgreSQL ``COPY`` path, the migration and backtest recordings all use these functions, so a
decimal or a timestamp is spelt the same way everywhere and round-trips exactly.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any, TypeVar

from arbframe.models import ErrorRecord, FxRate, Order, Position, Spread, Trade

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


def columns(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _fmt(value: Any) -> str:
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
        for f in dataclasses.fields(cls):
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
            if has_default and text is None:
                continue
            raise RowError(f"column {name!r} is empty")
        try:
            kwargs[name] = parse(text)
        except (ValueError, TypeError) as exc:
            raise RowError(f"column {name!r}: {text!r}: {exc}") from None
    return cls(**kwargs)
