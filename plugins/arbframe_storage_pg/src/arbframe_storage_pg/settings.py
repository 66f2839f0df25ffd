"""The ``storage.postgres`` config section: its JSON Schema and the parsed settings."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arbframe_storage_pg.tables import check_identifier

DEFAULT_DSN = "postgresql://arbitrage:arbitrage@localhost:5432/arbitrage"

CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "PostgreSQL / TimescaleDB storage (plugin arbframe-storage-pg)",
    "properties": {
        "dsn": {
            "type": "string",
            "minLength": 1,
            "writeOnly": True,
            "description": "libpq connection URL or key=value string (e.g. ${DATABASE_URL}); contains the password",
        },
        "schema": {
            "type": "string",
            "minLength": 1,
            "maxLength": 63,
            "description": "schema holding the tables; always quoted as an identifier, created if missing",
        },
        "enable_timescale": {
            "type": "boolean",
            "description": "make time-series tables TimescaleDB hypertables when the extension is available",
        },
        "batch_size": {
            "type": "integer",
            "minimum": 1,
            "description": "buffered rows that trigger a flush (one COPY transaction)",
        },
        "flush_interval_seconds": {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "longest time a record waits in the buffer before it is flushed",
        },
        "max_buffered_rows": {
            "type": "integer",
            "minimum": 1,
            "description": "buffered rows at which a write waits for the flush (back-pressure)",
        },
        "connect_timeout_seconds": {
            "type": "integer",
            "minimum": 1,
            "description": "bound on connecting (start-up, reconnects, health check); libpq waits at least 2 s",
        },
        "statement_timeout_seconds": {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "server-side bound on every statement of the storage's connection (statement_timeout)",
        },
        "lock_timeout_seconds": {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "longest wait for a table lock (lock_timeout): a locked table is an outage, spooled",
        },
        "retry_interval_seconds": {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "first wait before reconnecting after the database went away (doubles each failure)",
        },
        "max_retry_interval_seconds": {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "longest wait between reconnect attempts while spooling",
        },
        "spool_dir": {
            "type": ["string", "null"],
            "description": "directory of the outage spool (default: <storage.csv.data_dir>/pg_spool)",
        },
        "migrate_batch_size": {
            "type": "integer",
            "minimum": 1,
            "description": "rows per transaction in `arbframe migrate csv-to-postgres`",
        },
        "application_name": {"type": "string", "description": "shown in pg_stat_activity"},
    },
    "additionalProperties": False,
}


@dataclass(frozen=True)
class Settings:
    dsn: str
    schema: str = "public"
    enable_timescale: bool = False
    batch_size: int = 1000
    flush_interval_seconds: float = 1.0
    max_buffered_rows: int = 100_000
    connect_timeout_seconds: int = 5
    statement_timeout_seconds: float = 5.0
    lock_timeout_seconds: float = 1.0
    retry_interval_seconds: float = 1.0
    max_retry_interval_seconds: float = 30.0
    spool_dir: Path = Path("data/pg_spool")
    migrate_batch_size: int = 20_000
    application_name: str = "arbframe"

    @classmethod
    def from_section(cls, section: Mapping[str, Any] | None, data_dir: Path | str | None = None) -> Settings:
        section = dict(section or {})
        unknown = sorted(set(section) - set(CONFIG_SCHEMA["properties"]))
        if unknown:
            raise ValueError(f"storage.postgres: unknown key(s) {', '.join(unknown)}")
        dsn = section.get("dsn") or DEFAULT_DSN
        if not isinstance(dsn, str):
            raise ValueError("storage.postgres.dsn: expected a string")
        schema = check_identifier(section.get("schema") or "public")
        spool = section.get("spool_dir")
        spool_dir = Path(str(spool)) if spool else Path(str(data_dir or "data")) / "pg_spool"
        return cls(
            dsn=dsn,
            schema=schema,
            enable_timescale=bool(section.get("enable_timescale", False)),
            batch_size=_positive(section, "batch_size", 1000, int),
            flush_interval_seconds=_positive(section, "flush_interval_seconds", 1.0, float),
            max_buffered_rows=_positive(section, "max_buffered_rows", 100_000, int),
            connect_timeout_seconds=_positive(section, "connect_timeout_seconds", 5, int),
            statement_timeout_seconds=_positive(section, "statement_timeout_seconds", 5.0, float),
            lock_timeout_seconds=_positive(section, "lock_timeout_seconds", 1.0, float),
            retry_interval_seconds=_positive(section, "retry_interval_seconds", 1.0, float),
            max_retry_interval_seconds=_positive(section, "max_retry_interval_seconds", 30.0, float),
            spool_dir=spool_dir,
            migrate_batch_size=_positive(section, "migrate_batch_size", 20_000, int),
            application_name=str(section.get("application_name") or "arbframe"),
        )

    @property
    def spool_file(self) -> Path:
        """One spool per schema (its name made file-safe, plus a hash so distinct names never share it)."""
        import hashlib

        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", self.schema)[:40]
        digest = hashlib.sha1(self.schema.encode("utf-8")).hexdigest()[:8]
        return self.spool_dir / f"postgres-{safe}-{digest}.spool"

    @property
    def mirror_file(self) -> Path:
        """Every position row written, kept locally too: open positions resume from it when PostgreSQL is down
        at start."""
        return self.spool_file.with_suffix(".positions")

    @property
    def rejects_file(self) -> Path:
        return self.spool_file.with_suffix(".rejected")


def _positive(section: Mapping[str, Any], key: str, default: Any, kind: type) -> Any:
    value = section.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"storage.postgres.{key}: expected a positive number, got {value!r}")
    return kind(value)
