"""CSV storage: one append-only file per table, exact decimals, crash-safe appends."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO, TypeVar

from arbframe import (
    TABLES,
    BookKey,
    BookLock,
    ErrorRecord,
    FileBookLock,
    FxRate,
    HealthCheck,
    HealthResult,
    HealthStatus,
    Order,
    PluginContext,
    Position,
    RowError,
    Spread,
    Storage,
    StorageMetrics,
    Trade,
    columns,
    from_row,
    hookimpl,
    read_csv_table,
    to_row,
)

log = logging.getLogger("arbframe.storage.csv")

#: rows buffered across all tables before a write is forced
AUTO_FLUSH_ROWS = 1000
#: the newest-row reads (``load_last_*``) stop after this many rows in a row that changed nothing
TAIL_SLACK_ROWS = 1000
R = TypeVar("R")


class CsvStorage(Storage):
    name = "csv"

    def __init__(self, section: Mapping[str, Any], context: PluginContext | None = None) -> None:
        self.data_dir = Path(str(section.get("data_dir") or (context.data_dir if context else "data")))
        self.fsync = bool(section.get("fsync", False))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._files: dict[str, TextIO] = {}
        self._pending: dict[str, list[list[str]]] = {table: [] for table in TABLES}
        self._pending_rows = 0
        self._metrics = None
        if context is not None:
            self._metrics = StorageMetrics.get(context.registry)
            # at 0 from the start; CSV writes raise instead of counting errors, and it keeps no spool
            self._metrics.precreate("csv", tuple(TABLES), errors=False, spool=False)
        self._closed = False
        self._book_lock: BookLock | None = None

    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {
                "data_dir": {"type": "string", "minLength": 1, "description": "directory of the CSV files"},
                "fsync": {"type": "boolean", "description": "fsync every flush (slower, survives power loss)"},
            },
            "additionalProperties": False,
        }

    def describe(self) -> str:
        return f"CsvStorage({self.data_dir})"

    # --------------------------------------------------------------------------------------------- files
    def path(self, table: str) -> Path:
        return self.data_dir / f"{table}.csv"

    def _open(self, table: str) -> TextIO:
        handle = self._files.get(table)
        if handle is not None:
            return handle
        path = self.path(table)
        wanted = list(columns(TABLES[table]))
        if path.exists() and path.stat().st_size > 0:
            _repair_torn_tail(path)
            with path.open("r", newline="", encoding="utf-8") as existing:
                header = next(csv.reader(existing), None)
            if header is not None and header != wanted:
                _upgrade_columns(path, table, header, wanted)
            handle = path.open("a", newline="", encoding="utf-8")
        else:
            handle = path.open("a", newline="", encoding="utf-8")
            if handle.tell() == 0:
                csv.writer(handle).writerow(wanted)
        self._files[table] = handle
        return handle

    def _append(self, table: str, record: Any) -> None:
        if self._closed:
            raise RuntimeError("CsvStorage is closed")
        self._pending[table].append(to_row(record))
        self._pending_rows += 1
        if self._pending_rows >= AUTO_FLUSH_ROWS:
            self.flush()

    # ------------------------------------------------------------------------------------------- Storage
    def log_spread(self, spread: Spread) -> None:
        self._append("spreads", spread)

    def log_position_open(self, position: Position) -> None:
        self._append("positions", position)

    def log_position_close(self, position: Position) -> None:
        self._append("positions", position)

    def log_order(self, order: Order) -> None:
        self._append("orders", order)

    def log_trade(self, trade: Trade) -> None:
        self._append("trades", trade)

    def log_fx_rate(self, fx: FxRate) -> None:
        self._append("fx_rates", fx)

    def log_error(self, error: ErrorRecord) -> None:
        self._append("errors", error)

    def flush(self) -> None:
        if not self._pending_rows:
            return
        started = time.perf_counter()
        for table, rows in self._pending.items():
            if not rows:
                continue
            handle = self._open(table)
            buffer = io.StringIO()
            csv.writer(buffer).writerows(rows)
            # one write per table: a crash leaves at most one torn line at the end
            handle.write(buffer.getvalue())
            handle.flush()
            if self.fsync:
                os.fsync(handle.fileno())
            if self._metrics is not None:
                self._metrics.rows_written.labels(backend="csv", table=table).inc(len(rows))
            rows.clear()
        self._pending_rows = 0
        if self._metrics is not None:
            self._metrics.flush_seconds.labels(backend="csv").observe(time.perf_counter() - started)

    def load_positions(self) -> list[Position]:
        return [p for p in self._latest_positions() if p.is_open]

    def load_closed_positions(self) -> list[Position]:
        return [p for p in self._latest_positions() if not p.is_open]

    def _latest_positions(self) -> list[Position]:
        """The last row of each position id in ``positions.csv`` (a position is written when it opens and when it
        closes); bad rows are reported with their line number and skipped."""
        self.flush()
        path = self.path("positions")
        if not path.exists():
            return []
        latest: dict[str, Position] = {}
        for _line, position in read_csv_table(path, Position, on_error=log.warning):
            latest[position.id] = position
        return list(latest.values())

    def load_last_fx_rate(self) -> FxRate | None:
        """The newest row of ``fx_rates.csv`` by time, read from the end of the file (rates are appended in time
        order; rows out of order within ``TAIL_SLACK_ROWS`` of the newest still count)."""
        found = self.load_newest("fx_rates", FxRate, lambda fx: "fx")
        return found[0] if found else None

    def load_last_spreads(self, symbols: Sequence[str]) -> list[Spread]:
        """The newest row of each (symbol, direction) of ``symbols`` in ``spreads.csv``, read from the end of the
        file (see :meth:`load_newest` for where the scan stops)."""
        wanted = {s.upper() for s in symbols}
        if not wanted:
            return []
        return self.load_newest(
            "spreads", Spread, lambda s: (s.symbol, s.direction.value) if s.symbol.upper() in wanted else None)

    def load_newest(self, table: str, cls: type[R], key: Callable[[R], Any]) -> list[R]:
        """The newest record (largest ``ts``, then ``id``) of each ``key(record)`` (None: not wanted) in
        ``table``'s file, read backwards from its end. The scan stops once ``TAIL_SLACK_ROWS`` rows in a row
        changed nothing, or at the file's start: a key last seen further back than that is not found."""
        newest: dict[Any, Any] = {}
        quiet = 0
        for record in self._tail(table, cls):
            k = key(record)
            known = newest.get(k) if k is not None else None
            if k is not None and (known is None or (record.ts, record.id) > (known.ts, known.id)):  # type: ignore[attr-defined]
                newest[k] = record
                quiet = 0
            else:
                quiet += 1
                if quiet >= TAIL_SLACK_ROWS:
                    break
        return list(newest.values())

    def _tail(self, table: str, cls: type[R]) -> Iterator[R]:
        """The rows of ``table``'s file as records, LAST row first (buffered rows are flushed first); a torn last
        line is left out and an unreadable row skipped with a warning."""
        self.flush()
        path = self.path(table)
        if not path.exists() or path.stat().st_size == 0:
            return
        with path.open("r", newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), None)
        if not header:
            return
        for raw in _lines_backwards(path):
            try:
                values = next(csv.reader([raw]))
                if len(values) != len(header):
                    raise RowError(f"expected {len(header)} fields, found {len(values)}")
                record = from_row(cls, dict(zip(header, values, strict=True)))
            except (RowError, csv.Error) as exc:
                log.warning("%s: a row near the end skipped: %s", path, exc)
                continue
            yield record
    def load_orders(self, since: datetime | None = None) -> list[Order]:
        """Every row of ``orders.csv`` at or after ``since`` (each order state is a row); bad rows are reported
        with their line number and skipped."""
        self.flush()
        path = self.path("orders")
        if not path.exists():
            return []
        return [o for _line, o in read_csv_table(path, Order, on_error=log.warning) if since is None or o.ts >= since]

    def _control_path(self, name: str) -> Path:
        return self.data_dir / "control" / f"{name}.json"

    def read_control(self, name: str) -> dict[str, Any] | None:
        """``<data_dir>/control/<name>.json`` (the kill switch), None when never written."""
        path = self._control_path(name)
        if not path.exists():
            return None
        value = json.loads(path.read_text(encoding="utf-8"))
        return value if isinstance(value, dict) else None

    def write_control(self, name: str, value: Mapping[str, Any]) -> None:
        """Replaced atomically (write, fsync, rename): a reader sees the old record or the new one."""
        path = self._control_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            json.dump(dict(value), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    def lock_book(self, book: BookKey) -> BookLock:
        """One runner per book in this data dir: a ``flock``-ed file per symbol under ``locks/`` naming its holder."""
        self._book_lock = FileBookLock.acquire(self.data_dir / "locks", book)
        return self._book_lock

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.flush()
        finally:
            for handle in self._files.values():
                handle.close()
            self._files.clear()
            self._closed = True
            if self._book_lock is not None:
                self._book_lock.release()
                self._book_lock = None

    # --------------------------------------------------------------------------------------------- hooks
    @hookimpl
    def arbframe_health_checks(self, config: Mapping[str, Any], context: PluginContext) -> list[HealthCheck]:
        return [HealthCheck("csv", self._health, timeout_seconds=2.0)]

    def _health(self) -> HealthResult:
        if not self.data_dir.is_dir():
            return HealthResult("csv", HealthStatus.ERROR, f"CSV data dir {self.data_dir} does not exist")
        if not os.access(self.data_dir, os.W_OK):
            return HealthResult("csv", HealthStatus.ERROR, f"CSV data dir {self.data_dir} is not writable")
        return HealthResult("csv", HealthStatus.OK, f"CSV storage at {self.data_dir}")


def _lines_backwards(path: Path, block: int = 1 << 16) -> Iterator[str]:
    """The complete lines of ``path`` after its first (the header), last first, without their line ends; an
    unterminated last line (a torn write) is left out. Reads ``block`` bytes at a time from the end."""
    with path.open("rb") as handle:
        header_end = len(handle.readline())
        pos = handle.seek(0, os.SEEK_END)
        while pos > header_end:  # the end of the last complete line
            start = max(header_end, pos - block)
            handle.seek(start)
            cut = handle.read(pos - start).rfind(b"\n")
            if cut >= 0:
                pos = start + cut + 1
                break
            pos = start
        carry = b""  # the start of a line whose beginning lies in an earlier block
        while pos > header_end:
            start = max(header_end, pos - block)
            handle.seek(start)
            lines = (handle.read(pos - start) + carry).split(b"\n")
            pos = start
            carry = lines.pop(0) if pos > header_end else b""
            for line in reversed(lines):
                if line.strip():
                    yield line.rstrip(b"\r").decode("utf-8", errors="replace")


def _upgrade_columns(path: Path, table: str, header: list[str], wanted: list[str]) -> None:
    """A file written by an older version (e.g. before ``instance_id``): rewrite it once with this version's
    columns, the new ones empty (their defaults), through a temporary file and an atomic rename. Columns this
    version does not know, or a missing column without a default, stop the service with the file named."""
    import dataclasses

    cls = TABLES[table]
    defaults = {f.name for f in dataclasses.fields(cls)
                if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}
    unknown = [c for c in header if c not in wanted]
    missing = [c for c in wanted if c not in header]
    if unknown or any(c not in defaults for c in missing):
        raise RuntimeError(f"{path} has columns {header} but this version writes {wanted}; move the file aside")
    tmp = path.with_name(path.name + ".upgrade")
    index = [header.index(c) if c in header else None for c in wanted]
    with path.open("r", newline="", encoding="utf-8") as src, tmp.open("w", newline="", encoding="utf-8") as dst:
        reader = csv.reader(src)
        writer = csv.writer(dst)
        next(reader)
        writer.writerow(wanted)
        for row in reader:
            writer.writerow([row[i] if i is not None and i < len(row) else "" for i in index])
        dst.flush()
        os.fsync(dst.fileno())
    os.replace(tmp, path)
    log.warning("%s: added column(s) %s (written by an older version; old rows get the default)", path,
                ", ".join(missing))


def _repair_torn_tail(path: Path) -> None:
    """Cut an unterminated last line (a write interrupted by a crash) into ``<file>.torn``, with a warning."""
    with path.open("rb+") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        if size == 0:
            return
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return
        chunk = min(size, 1 << 20)
        handle.seek(size - chunk)
        tail = handle.read(chunk)
        cut = tail.rfind(b"\n")
        keep = size - chunk + cut + 1 if cut >= 0 else 0
        handle.seek(keep)
        torn = handle.read()
        with path.with_suffix(path.suffix + ".torn").open("ab") as aside:
            aside.write(torn + b"\n")
        handle.truncate(keep)
    log.warning("%s: torn last line (%d bytes, interrupted write) moved to %s.torn", path, len(torn), path.name)


def _add_columns(path: Path, header: list[str], wanted: list[str]) -> None:
    """Rewrite ``path`` with the header ``wanted``, every row padded with empty cells (NULL) for the columns a
    newer version added at the end; written to a temporary file first, then renamed over the old one."""
    tmp = path.with_name(path.name + ".upgrade")
    with path.open("r", newline="", encoding="utf-8") as src, tmp.open("w", newline="", encoding="utf-8") as dst:
        reader = csv.reader(src)
        next(reader, None)
        writer = csv.writer(dst)
        writer.writerow(wanted)
        for row in reader:
            writer.writerow(row + [""] * (len(wanted) - len(row)))
        dst.flush()
        os.fsync(dst.fileno())
    os.replace(tmp, path)
    log.info("%s: added the columns %s", path, ", ".join(wanted[len(header):]))
