"""Table layout and the text forms of rows: DDL, COPY encoding of records, validation of CSV rows.

Columns and their order come from the kernel (``arbframe.TABLES`` / ``arbframe.columns``): a ``Decimal`` field is
``numeric`` (exact, any scale), a ``datetime`` ``timestamptz``, a ``bool`` ``boolean``, anything else (text,
enums) ``text``; ``Optional`` fields are nullable, the rest ``NOT NULL``; ``id`` is the primary key.

Nothing here imports psycopg2 at module import; SQL is composed with ``psycopg2.sql`` so every identifier (the
configured schema above all) is quoted, never formatted into the statement.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any

from arbframe import TABLES, columns

UTC = timezone.utc

#: columns each table is partitioned by in TimescaleDB (hypertables) and range-queried by
TIME_COLUMN: dict[str, str] = {
    "spreads": "ts",
    "positions": "opened_at",
    "orders": "ts",
    "trades": "ts",
    "fx_rates": "ts",
    "errors": "ts",
}

#: tables that become hypertables with ``enable_timescale`` (append-only time series; positions are updated
#: in place when they close, so they stay a plain table)
HYPERTABLES: tuple[str, ...] = ("spreads", "orders", "trades", "fx_rates", "errors")

#: secondary indexes: (name suffix, columns, partial-index predicate or None)
INDEXES: dict[str, tuple[tuple[str, tuple[str, ...], str | None], ...]] = {
    "spreads": (("ts", ("ts",), None), ("symbol_ts", ("symbol", "ts"), None)),
    "positions": (
        ("opened_at", ("opened_at",), None),
        ("symbol_opened_at", ("symbol", "opened_at"), None),
        ("closed_at", ("closed_at",), None),
        ("open", ("opened_at",), "status = 'open'"),
    ),
    "orders": (
        ("ts", ("ts",), None),
        ("symbol_ts", ("symbol", "ts"), None),
        ("position_id", ("position_id",), None),
    ),
    "trades": (
        ("ts", ("ts",), None),
        ("symbol_ts", ("symbol", "ts"), None),
        ("position_id", ("position_id",), None),
        ("order_id", ("order_id",), None),
    ),
    "fx_rates": (("ts", ("ts",), None), ("pair_ts", ("base", "quote", "ts"), None)),
    "errors": (("ts", ("ts",), None), ("component_ts", ("component", "ts"), None)),
}

PG_TYPES = {"numeric": "numeric", "timestamptz": "timestamptz", "boolean": "boolean", "text": "text"}

MAX_IDENTIFIER_BYTES = 63


class InvalidIdentifier(ValueError):
    """A schema (or other) name PostgreSQL cannot hold as given."""


def check_identifier(name: Any, what: str = "schema") -> str:
    """Accept any name PostgreSQL can store exactly; it is always quoted, so hostile text is harmless.

    Refused: non-strings, empty names, NUL characters (PostgreSQL cannot store them) and names longer than 63
    bytes (PostgreSQL would silently truncate them, so two configured names could meet in one schema).
    """
    if not isinstance(name, str) or not name:
        raise InvalidIdentifier(f"storage.postgres.{what}: expected a non-empty name, got {name!r}")
    if "\x00" in name:
        raise InvalidIdentifier(f"storage.postgres.{what}: {name!r} contains a NUL character")
    if len(name.encode("utf-8")) > MAX_IDENTIFIER_BYTES:
        raise InvalidIdentifier(
            f"storage.postgres.{what}: {name!r} is longer than {MAX_IDENTIFIER_BYTES} bytes "
            "(PostgreSQL would truncate it)"
        )
    return name


# ----------------------------------------------------------------------------------------------- columns
@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # numeric | timestamptz | boolean | text
    nullable: bool
    enum: type[Enum] | None = None
    default: Any = None
    has_default: bool = False

    @property
    def pg_type(self) -> str:
        return PG_TYPES[self.kind]


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0], len(args) != len(typing.get_args(annotation))
    return annotation, False


def _columns_of(cls: type) -> tuple[Column, ...]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        annotation, optional = _unwrap(hints[f.name])
        enum = None
        if annotation is Decimal:
            kind = "numeric"
        elif annotation is datetime:
            kind = "timestamptz"
        elif annotation is bool:
            kind = "boolean"
        else:
            kind = "text"
            if isinstance(annotation, type) and issubclass(annotation, Enum):
                enum = annotation
        has_default = f.default is not dataclasses.MISSING
        out.append(Column(f.name, kind, optional, enum, f.default if has_default else None, has_default))
    return tuple(out)


@dataclass(frozen=True)
class Table:
    name: str
    cls: type
    columns: tuple[Column, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def time_column(self) -> str:
        return TIME_COLUMN[self.name]


SPECS: dict[str, Table] = {}
for _name, _cls in TABLES.items():
    _cols = _columns_of(_cls)
    assert tuple(c.name for c in _cols) == columns(_cls)
    SPECS[_name] = Table(_name, _cls, _cols)


def table_of(record: Any) -> str:
    for name, spec in SPECS.items():
        if type(record) is spec.cls:
            return name
    raise TypeError(f"no table stores {type(record).__name__}")


# ------------------------------------------------------------------------------------------------------ DDL
def create_table_sql(schema: str, table: str, *, timescale: bool = False) -> Any:
    """``CREATE TABLE IF NOT EXISTS "schema"."table" (...)``; hypertable candidates get PK (id, time)."""
    from psycopg2 import sql

    spec = SPECS[table]
    parts = []
    for col in spec.columns:
        null = sql.SQL("") if col.nullable else sql.SQL(" NOT NULL")
        parts.append(sql.SQL("{} {}{}").format(sql.Identifier(col.name), sql.SQL(col.pg_type), null))
    pk: list[str] = ["id", spec.time_column] if timescale and table in HYPERTABLES else ["id"]
    parts.append(sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, pk))))
    return sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
        sql.Identifier(schema, table), sql.SQL(", ").join(parts)
    )


def add_columns_sql(schema: str, table: str) -> list[Any]:
    """``ALTER TABLE ... ADD COLUMN IF NOT EXISTS`` for every nullable column: a table created by an older version
    gets the columns added since (NULL in its old rows); on an up-to-date table each statement does nothing."""
    from psycopg2 import sql

    return [
        sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
            sql.Identifier(schema, table), sql.Identifier(col.name), sql.SQL(col.pg_type)
        )
        for col in SPECS[table].columns
        if col.nullable
    ]


def index_name(table: str, suffix: str) -> str:
    return f"{table}_{suffix}_idx"


def create_index_sql(schema: str, table: str) -> list[Any]:
    from psycopg2 import sql

    out = []
    for suffix, cols, where in INDEXES[table]:
        stmt = sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
            sql.Identifier(index_name(table, suffix)),
            sql.Identifier(schema, table),
            sql.SQL(", ").join(map(sql.Identifier, cols)),
        )
        if where:
            stmt = sql.Composed([stmt, sql.SQL(" WHERE "), sql.SQL(where)])  # constant predicate from INDEXES
        out.append(stmt)
    return out


# ---------------------------------------------------------------------------------------- COPY text format
_SPECIAL = ("\\", "\t", "\n", "\r", "\x00")


def copy_escape(text: str) -> str:
    """Escape a value for COPY's text format. NUL (PostgreSQL text cannot hold it) becomes U+FFFD."""
    if "\\" in text:
        text = text.replace("\\", "\\\\")
    if "\t" in text:
        text = text.replace("\t", "\\t")
    if "\n" in text:
        text = text.replace("\n", "\\n")
    if "\r" in text:
        text = text.replace("\r", "\\r")
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    return text


def _needs_escape(text: str) -> bool:
    return any(ch in text for ch in _SPECIAL)


def _fmt_generic(value: Any) -> str:
    """Exactly ``arbframe.core.records``' formatting, for values of an unexpected type."""
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def _fmt_decimal(value: Any) -> str:
    return format(value, "f") if type(value) is Decimal else _fmt_text(value)


def _fmt_datetime(value: Any) -> str:
    return value.astimezone(UTC).isoformat() if isinstance(value, datetime) else _fmt_text(value)


def _compile_encoder(spec: Table) -> Callable[[Any], str]:
    """record -> one COPY text line (with newline), spelt like ``arbframe.to_row`` (tested to agree).

    Generated code, because this runs for every record the service writes: one attribute read and one inline
    expression per column, no per-field function calls on the common types.
    """
    env: dict[str, Any] = {
        "_D": Decimal, "_DT": datetime, "_UTC": UTC, "_iso": datetime.isoformat, "_fmt": format,
        "_txt": _fmt_text, "_N": "\\N",
    }
    body = ["def encode(r):"]
    parts = []
    for i, col in enumerate(spec.columns):
        v = f"v{i}"
        body.append(f"    {v} = r.{col.name}")
        if col.kind == "numeric":
            expr = f'((_s if "E" not in (_s := str({v})) else _fmt({v}, "f")) if type({v}) is _D else _txt({v}))'
        elif col.kind == "timestamptz":
            # the records of one tick share one timestamp object: remember the last one spelt
            env["_tsc"] = [(None, "")]
            env["_ts"] = _ts_cached(env["_tsc"])
            expr = f"(_c[1] if {v} is (_c := _tsc[0])[0] else _ts({v}))"
        elif col.kind == "boolean":
            expr = f'("true" if {v} is True else "false" if {v} is False else _txt({v}))'
        elif col.enum is not None:
            env[f"_E{i}"] = col.enum
            if all(isinstance(m.value, str) and not _needs_escape(m.value) for m in col.enum):
                expr = f"({v}._value_ if type({v}) is _E{i} else _txt({v}))"
            else:
                expr = f"_txt({v})"
        else:
            expr = f'({v} if type({v}) is str and {v}.isprintable() and "\\\\" not in {v} else _txt({v}))'
        if col.nullable and col.kind == "text":
            body.append(f"    s{i} = _N if {v} is None or {v} == '' else {expr}")
        elif col.nullable:
            body.append(f"    s{i} = _N if {v} is None else {expr}")
        else:
            body.append(f"    s{i} = {expr}")
        parts.append(f"{{s{i}}}")
    body.append('    return f"' + "\\t".join(parts) + '\\n"')
    exec("\n".join(body), env)
    return env["encode"]  # type: ignore[no-any-return]


def _ts_cached(cache: list[Any]) -> Callable[[Any], str]:
    def spell(value: Any) -> str:
        if type(value) is not datetime:
            return _fmt_text(value)
        text = value.isoformat() if value.tzinfo is UTC else value.astimezone(UTC).isoformat()
        cache[0] = (value, text)  # one atomic store: another thread never sees a half-updated pair
        return text

    return spell


def _fmt_bool(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return copy_escape(_fmt_generic(value))


def _fmt_enum(value: Any) -> str:
    return copy_escape(_fmt_generic(value))


def _fmt_text(value: Any) -> str:
    text = value if type(value) is str else _fmt_generic(value)
    return copy_escape(text) if _needs_escape(text) else text


ENCODERS: dict[str, Callable[[Any], str]] = {name: _compile_encoder(spec) for name, spec in SPECS.items()}


def encode_record(record: Any) -> tuple[str, str]:
    """(table, COPY text line) for a kernel record."""
    table = table_of(record)
    return table, ENCODERS[table](record)


def row_to_copy_line(table: str, row: Sequence[str]) -> str:
    """A ``to_row``-style list of strings (empty = missing) -> a COPY text line."""
    spec = SPECS[table]
    out = []
    for col, text in zip(spec.columns, row, strict=True):
        if text == "" and col.nullable:
            out.append("\\N")
        else:
            out.append(copy_escape(text))
    return "\t".join(out) + "\n"


def copy_line_values(line: str) -> list[str | None]:
    """Inverse of the encoding: a COPY text line -> values (None for NULL)."""
    fields = line.rstrip("\n").split("\t")
    out: list[str | None] = []
    for field in fields:
        if field == "\\N":
            out.append(None)
        elif "\\" in field:
            out.append(_unescape(field))
        else:
            out.append(field)
    return out


def _unescape(field: str) -> str:
    result = []
    i = 0
    mapping = {"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}
    while i < len(field):
        ch = field[i]
        if ch == "\\" and i + 1 < len(field):
            nxt = field[i + 1]
            result.append(mapping.get(nxt, nxt))
            i += 2
        else:
            result.append(ch)
            i += 1
    return "".join(result)


# ------------------------------------------------------------------------------------- CSV row validation
class BadRow(ValueError):
    """A CSV row that cannot be stored; the message names the column and the value."""


def _check_decimal(text: str) -> str:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError("expected a decimal number") from None
    if not value.is_finite():
        raise ValueError("expected a finite decimal number")
    return format(value, "f")


def _check_datetime(text: str) -> str:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError("timestamp has no time zone")
    return value.astimezone(UTC).isoformat()


_TRUE = frozenset(("true", "1", "t", "yes"))
_FALSE = frozenset(("false", "0", "f", "no"))


def _check_bool(text: str) -> str:
    lowered = text.lower()
    if lowered in _TRUE:
        return "true"
    if lowered in _FALSE:
        return "false"
    raise ValueError("expected true or false")


def _enum_checker(enum: type[Enum]) -> Callable[[str], str]:
    values = frozenset(str(m.value) for m in enum)
    choices = ", ".join(sorted(values))

    def check(text: str) -> str:
        if text in values:
            return text
        raise ValueError(f"expected one of {choices}")

    return check


def _default_value(col: Column) -> str | None:
    value = col.default
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


def csv_field(value: str | None) -> str:
    """One value for ``COPY ... (FORMAT csv)``: NULL is an unquoted empty field, an empty string ``""``."""
    if value is None:
        return ""
    if value == "" or any(ch in value for ch in ',"\r\n') or value != value.strip():
        return '"' + value.replace('"', '""') + '"'
    return value


# Fast-path patterns: cheap character classes with possessive quantifiers (no backtracking), because they run
# over every row of a migration. They admit a superset of what PostgreSQL reads (``1.2.3`` passes here); the
# database then refuses the row and the migration isolates and reports it. What they must never admit is a value
# PostgreSQL accepts but ``from_row`` refuses: NaN/Infinity (letters), timestamps without a zone, unknown enum
# values, empty required text.
_NUMBER = r"[-+0-9.eE]++"
_TIMESTAMP = r"\d{4}-\d\d-\d\d[T ][0-9:.]++(?:[+-]\d\d:\d\d|Z)"
_PLAIN = r'[^,"\r\n]'


def _fast_pattern(col: Column) -> str:
    if col.kind == "numeric":
        pattern = _NUMBER
    elif col.kind == "timestamptz":
        pattern = _TIMESTAMP
    elif col.kind == "boolean":
        pattern = "(?:true|false)"
    elif col.enum is not None:
        pattern = "(?:" + "|".join(re.escape(str(m.value)) for m in col.enum) + ")"
    elif col.nullable or col.has_default:
        return _PLAIN + "*+"
    else:
        return _PLAIN + "++"
    return f"(?:{pattern})?+" if col.nullable else pattern


def fast_csv_regex(table: str) -> re.Pattern[str]:
    """Matches a CSV line (no terminator) of ``table``'s columns, in order, that needs no quoting and whose every
    value is already in the form PostgreSQL reads and ``from_row`` accepts: such a line is passed to
    ``COPY ... (FORMAT csv)`` as it is. Anything else takes the slow path (:class:`RowConverter`)."""
    return re.compile(",".join(_fast_pattern(c) for c in SPECS[table].columns))


def force_not_null(table: str) -> tuple[str, ...]:
    """Non-nullable text columns: an empty CSV field there is an empty string, not NULL."""
    return tuple(c.name for c in SPECS[table].columns if c.kind == "text" and not c.nullable)


class RowConverter:
    """Validates CSV rows of one table (matched by the header) and spells them for ``COPY ... (FORMAT csv)``.

    A column missing from the header takes its dataclass default (a file written before the column existed);
    a missing column without default makes the whole file unusable (:class:`BadRow` from the constructor).
    Empty text is NULL for nullable columns, the default where the field has one, else an error.
    """

    def __init__(self, table: str, header: Sequence[str]) -> None:
        self.table = table
        spec = SPECS[table]
        positions = {name: i for i, name in enumerate(header)}
        self.width = len(header)
        self.exact = tuple(header) == spec.names
        self.unknown = [name for name in header if name not in spec.names]
        missing = [c.name for c in spec.columns if c.name not in positions and not c.has_default]
        if missing:
            raise BadRow(f"header lacks column(s) {', '.join(missing)}")
        self._plan: list[tuple[int, str, Callable[[str], str] | None, bool, str | None, bool]] = []
        for col in spec.columns:
            if col.kind == "numeric":
                check: Callable[[str], str] | None = _check_decimal
            elif col.kind == "timestamptz":
                check = _check_datetime
            elif col.kind == "boolean":
                check = _check_bool
            elif col.enum is not None:
                check = _enum_checker(col.enum)
            else:
                check = None
            default = _default_value(col) if col.has_default else None
            self._plan.append((positions.get(col.name, -1), col.name, check, col.nullable, default,
                               col.has_default))
        self.id_index = positions["id"]

    def values(self, row: Sequence[str]) -> list[str | None]:
        """The row's values in column order (None = NULL), or BadRow naming the column and value."""
        if len(row) != self.width:
            raise BadRow(f"expected {self.width} fields, found {len(row)}")
        out: list[str | None] = []
        for index, name, check, nullable, default, has_default in self._plan:
            if index < 0:
                out.append(default)
                continue
            text = row[index]
            if text == "":
                if nullable:
                    out.append(None)
                elif has_default:
                    out.append(default)
                else:
                    raise BadRow(f"column {name!r} is empty")
                continue
            if check is not None:
                try:
                    out.append(check(text))
                except (ValueError, TypeError) as exc:
                    raise BadRow(f"column {name!r}: {text!r}: {exc}") from None
            else:
                out.append(text)
        return out


# ------------------------------------------------------------------------------------------------ reading back
def record_from_db(table: str, values: Sequence[Any]) -> Any:
    """A kernel record from a row fetched with the table's columns in order (psycopg2 native types)."""
    spec = SPECS[table]
    kwargs: dict[str, Any] = {}
    for col, value in zip(spec.columns, values, strict=True):
        if value is None:
            kwargs[col.name] = None
        elif col.kind == "timestamptz":
            kwargs[col.name] = value.astimezone(UTC)
        elif col.enum is not None:
            kwargs[col.name] = col.enum(value)
        else:
            kwargs[col.name] = value
    return spec.cls(**kwargs)
