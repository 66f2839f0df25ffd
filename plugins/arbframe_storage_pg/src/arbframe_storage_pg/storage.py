"""``PostgresStorage``: the ``postgres`` storage driver.

Writes are buffered per table as COPY text lines and flushed in batches — when ``batch_size`` rows are waiting
(by a background flusher thread, so the trading loop does not wait for the database), every
``flush_interval_seconds``, on ``flush()``, before ``load_positions()``, on shutdown and on ``close()``. Each
flush is one transaction (see :mod:`arbframe_storage_pg.db`).

When the connection is lost, the flush that noticed it and every later one append their batches to a local
spool file (fsync-ed) instead, health turns WARN and ``arbframe_storage_spool_depth`` shows the backlog. The
flusher reconnects with exponential back-off; once the database answers, the spool is replayed in order, then
the buffers — nothing lost, nothing duplicated (every write is idempotent by id). A spool left by a process
that died during an outage is replayed by the next one that connects.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from arbframe import (
    BookKey,
    BookLock,
    Direction,
    ErrorRecord,
    FileBookLock,
    FxRate,
    HealthCheck,
    HealthResult,
    HealthStatus,
    Order,
    PluginContext,
    Position,
    Spread,
    Storage,
    Trade,
    hookimpl,
)
from arbframe_storage_pg.db import (
    BatchWriter,
    ConnectionLost,
    PostgresLibraryMissing,
    PostgresUnavailable,
    ServerStalled,
    connect,
    dsn_password,
    endpoint,
    ensure_schema,
    error_reason,
    is_connection_error,
    is_stall,
    safe_close,
    safe_rollback,
)
from arbframe_storage_pg.settings import CONFIG_SCHEMA, Settings
from arbframe_storage_pg.spool import Spool
from arbframe_storage_pg.tables import ENCODERS, SPECS, record_from_db

log = logging.getLogger("arbframe.storage.postgres")

BACKEND = "postgres"


class PostgresStorage(Storage):
    """PostgreSQL (optionally TimescaleDB) storage; see the module docstring."""

    name = "postgres"

    def __init__(self, section: Mapping[str, Any], context: PluginContext | None = None) -> None:
        data_dir = context.data_dir if context is not None else Path("data")
        try:
            self.settings = Settings.from_section(section, data_dir)
        except ValueError as exc:
            raise PostgresUnavailable(f"bad storage.postgres config: {exc}") from None
        self.endpoint = endpoint(self.settings.dsn)
        self._password = dsn_password(self.settings.dsn)
        self._metrics = None
        if context is not None:
            from arbframe import StorageMetrics

            self._metrics = StorageMetrics.get(context.registry)
        self._buf_lock = threading.Lock()
        self._io_lock = threading.RLock()
        self._buffers: dict[str, list[str]] = {table: [] for table in SPECS}
        self._pending = 0
        self._batch_size = self.settings.batch_size
        self._max_buffered = max(self.settings.max_buffered_rows, self._batch_size)
        self._closed = False
        self._conn: Any = None
        self._writer: BatchWriter | None = None
        self.hypertables = False
        # outage state
        self._spooling_since: float | None = None
        self._last_error = ""
        self._retry_at = 0.0
        self._retry_delay = self.settings.retry_interval_seconds

        self._spool = Spool.open_for(self.settings.spool_file)
        self._mirror = open(self.settings.mirror_file, "a", encoding="utf-8")  # noqa: SIM115 - held while open
        self._book_conn: Any = None
        self._control_table: Any = None  # control records (kill switch), on a connection of their own
        try:
            self._open_connection()
        except PostgresLibraryMissing:
            self._spool.close()
            self._mirror.close()
            raise  # no retry can help: the kernel falls back to CSV
        except PostgresUnavailable as exc:
            # down at start is the same story as down mid-run: spool, keep retrying, replay when it answers
            self._enter_spooling(str(exc))
        self._set_depth()
        if len(self._spool):
            # replayed by the flusher right away (and before any flush or load_positions), not here: the
            # constructor stays quick
            log.info("%d records spooled by an earlier run wait in %s; replaying", len(self._spool),
                     self._spool.path)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="arbframe-pg-flusher", daemon=True)
        self._thread.start()
        if len(self._spool):
            self._wake.set()
        ref = weakref.ref(self)
        self._atexit = lambda: (lambda s: s.close() if s is not None else None)(ref())
        atexit.register(self._atexit)

    # ---------------------------------------------------------------------------------------- description
    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        return CONFIG_SCHEMA

    def describe(self) -> str:
        return f"PostgresStorage({self.endpoint}, schema={self.settings.schema!r})"

    @property
    def spooling(self) -> bool:
        return self._spooling_since is not None

    @property
    def spool_depth(self) -> int:
        return len(self._spool)

    @property
    def spool_path(self) -> Path:
        return self._spool.path

    # ------------------------------------------------------------------------------------------ connection
    def _open_connection(self) -> None:
        conn = connect(self.settings, bounded=True)
        try:
            self.hypertables = ensure_schema(conn, self.settings)
        except Exception as exc:
            safe_close(conn)
            raise PostgresUnavailable(
                f"PostgreSQL at {self.endpoint}: cannot create the tables in schema "
                f"{self.settings.schema!r}: {error_reason(exc, self._password)}"
            ) from None
        self._conn = conn
        self._writer = BatchWriter(conn, self.settings.schema)

    def _drop_connection(self) -> None:
        safe_close(self._conn)
        self._conn = None
        self._writer = None

    def _enter_spooling(self, reason: str) -> None:
        self._last_error = reason
        self._drop_connection()
        now = time.monotonic()
        if self._spooling_since is None:
            self._spooling_since = now
            self._retry_delay = self.settings.retry_interval_seconds
            log.warning(
                "PostgreSQL at %s unreachable (%s); spooling records to %s until it answers",
                self.endpoint, reason, self._spool.path,
            )
        else:
            self._retry_delay = min(self._retry_delay * 2, self.settings.max_retry_interval_seconds)
        self._retry_at = now + self._retry_delay
        wake = getattr(self, "_wake", None)
        if wake is not None:
            wake.set()  # the flusher re-arms its wait on the retry time, whatever its flush interval

    def _try_recover(self, *, force: bool = False) -> bool:
        """Reconnect (respecting the back-off unless ``force``) and replay the spool. Holds the io lock."""
        if self._conn is not None and self._spooling_since is None and not len(self._spool):
            return True
        if not force and time.monotonic() < self._retry_at:
            return False
        if self._conn is None:
            try:
                self._open_connection()
            except PostgresUnavailable as exc:
                self._enter_spooling(str(exc))
                return False
        if not self._replay_spool():
            self._enter_spooling(self._last_error)
            return False
        if self._spooling_since is not None:
            log.warning(
                "PostgreSQL at %s answers again after %.1f s; spool replayed",
                self.endpoint, time.monotonic() - self._spooling_since,
            )
        self._spooling_since = None
        self._retry_delay = self.settings.retry_interval_seconds
        return True

    def _replay_spool(self) -> bool:
        """Write every spooled batch (in order, grouped into transactions); empty the spool on success."""
        if not len(self._spool):
            return True
        group: dict[str, list[str]] = {}
        size = 0
        limit = max(self.settings.batch_size, 5000)
        try:
            for table, lines in self._spool.batches():
                if table not in SPECS:
                    log.error("spool entry for unknown table %r skipped", table)
                    continue
                group.setdefault(table, []).extend(lines)
                size += len(lines)
                if size >= limit:
                    self._write_batch(group)
                    group, size = {}, 0
            if group:
                self._write_batch(group)
        except ConnectionLost as exc:
            self._last_error = str(exc)
            return False
        self._spool.clear()
        self._set_depth()
        return True

    # ------------------------------------------------------------------------------------------ write path
    def _write_batch(self, batch: dict[str, list[str]]) -> None:
        """One transaction; bad rows isolated and rejected; ConnectionLost when the server went away."""
        import psycopg2

        if self._writer is None:
            raise ConnectionLost(self._last_error or "not connected")
        started = time.perf_counter()
        try:
            results = self._writer.write(batch)
        except psycopg2.Error as exc:
            if is_stall(exc):
                self._count_error()
                raise ServerStalled(error_reason(exc, self._password)) from None
            if is_connection_error(exc, self._conn):
                self._count_error()
                raise ConnectionLost(error_reason(exc, self._password)) from None
            self._write_isolating(batch)
            return
        if self._metrics is not None:
            self._metrics.flush_seconds.labels(backend=BACKEND).observe(time.perf_counter() - started)
            for table, result in results.items():
                self._metrics.rows_written.labels(backend=BACKEND, table=table).inc(result.rows)

    def _write_isolating(self, batch: dict[str, list[str]]) -> None:
        """A batch the database refused for its data: write table by table, halving to find the bad rows."""
        for table, lines in batch.items():
            if lines:
                self._bisect(table, lines)

    def _bisect(self, table: str, lines: list[str]) -> None:
        import psycopg2

        assert self._writer is not None
        try:
            results = self._writer.write({table: lines})
        except psycopg2.Error as exc:
            if is_stall(exc):
                self._count_error()
                raise ServerStalled(error_reason(exc, self._password)) from None
            if is_connection_error(exc, self._conn):
                self._count_error()
                raise ConnectionLost(error_reason(exc, self._password)) from None
            if len(lines) == 1:
                self._reject(table, lines[0], error_reason(exc, self._password))
                return
            half = len(lines) // 2
            self._bisect(table, lines[:half])
            self._bisect(table, lines[half:])
            return
        if self._metrics is not None:
            self._metrics.rows_written.labels(backend=BACKEND, table=table).inc(results[table].rows)

    def _reject(self, table: str, line: str, reason: str) -> None:
        """A row PostgreSQL will never take: kept in the rejects file, logged, counted."""
        import json

        record_id = line.split("\t", 1)[0]
        self._count_error()
        log.error("%s row %s refused by PostgreSQL (%s); kept in %s", table, record_id, reason,
                  self.settings.rejects_file)
        path = self.settings.rejects_file
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"table": table, "reason": reason, "line": line}) + "\n")

    def _count_error(self) -> None:
        if self._metrics is not None:
            self._metrics.write_errors.labels(backend=BACKEND).inc()

    def _set_depth(self) -> None:
        if self._metrics is not None:
            self._metrics.spool_depth.labels(backend=BACKEND).set(len(self._spool))

    def _take(self) -> dict[str, list[str]]:
        with self._buf_lock:
            if not self._pending:
                return {}
            batch = {table: rows for table, rows in self._buffers.items() if rows}
            self._buffers = {table: [] for table in SPECS}
            self._pending = 0
            return batch

    def _flush_once(self, *, force_retry: bool = False) -> None:
        """Move everything buffered to the database (or to the spool while it is away)."""
        with self._io_lock:
            batch = self._take()
            if (self._spooling_since is not None or self._conn is None or len(self._spool)) and not (
                self._try_recover(force=force_retry)
            ):
                if batch:
                    self._spool.append(batch)
                    self._set_depth()
                return
            if not batch:
                return
            try:
                self._write_batch(batch)
            except ServerStalled as exc:
                # statement_timeout / lock_timeout: the server is stuck (a held table lock); no immediate retry
                self._enter_spooling(f"stalled: {exc}")
                self._spool.append(batch)
                self._set_depth()
            except ConnectionLost as exc:
                reason = str(exc)
                # a connection dropped while idle (server restart, idle timeout, pg_terminate_backend): one
                # immediate reconnect before calling it an outage
                self._drop_connection()
                try:
                    self._open_connection()
                    self._write_batch(batch)
                    log.info("PostgreSQL connection to %s re-established (%s)", self.endpoint, reason)
                    return
                except (PostgresUnavailable, ConnectionLost) as again:
                    reason = str(again)
                self._enter_spooling(reason)
                self._spool.append(batch)
                self._set_depth()

    def _append(self, table: str, line: str) -> None:
        if self._closed:
            raise RuntimeError("PostgresStorage is closed")
        with self._buf_lock:
            self._buffers[table].append(line)
            self._pending = pending = self._pending + 1
        if pending >= self._batch_size:
            if pending % self._batch_size == 0:
                self._wake.set()  # once per batch_size rows, not on every write while the flusher wakes up
            if pending >= self._max_buffered:
                self._flush_once()  # back-pressure: the flusher is not keeping up

    def _run(self) -> None:
        while not self._stop.is_set():
            timeout = self.settings.flush_interval_seconds
            if self._spooling_since is not None:
                timeout = max(0.05, min(timeout, self._retry_at - time.monotonic()))
            self._wake.wait(timeout)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self._flush_once()
            except Exception as exc:  # the flusher must never die; the records stay buffered or spooled
                self._count_error()
                log.error("PostgreSQL flush failed: %s", error_reason(exc, self._password))

    # ---------------------------------------------------------------------------------------------- Storage
    def log_spread(self, spread: Spread) -> None:
        self._append("spreads", _SPREAD(spread))

    def log_position_open(self, position: Position) -> None:
        self._append_position(_POSITION(position))

    def log_position_close(self, position: Position) -> None:
        self._append_position(_POSITION(position))

    def _append_position(self, line: str) -> None:
        self._append("positions", line)
        with self._buf_lock:
            self._mirror.write(line)
            self._mirror.flush()

    def log_order(self, order: Order) -> None:
        self._append("orders", _ORDER(order))

    def log_trade(self, trade: Trade) -> None:
        self._append("trades", _TRADE(trade))

    def log_fx_rate(self, fx: FxRate) -> None:
        self._append("fx_rates", _FX(fx))

    def log_error(self, error: ErrorRecord) -> None:
        self._append("errors", _ERROR(error))

    def flush(self) -> None:
        """Everything logged so far is durable when this returns: in the database, or in the spool."""
        self._flush_once()

    def load_positions(self) -> list[Position]:
        """Open positions (latest state of each id). Flushes first; needs the database."""
        return self._positions("open", "opened_at")

    def load_closed_positions(self) -> list[Position]:
        """Closed positions, oldest close first (PnL totals after a restart). Flushes first; needs the database."""
        return self._positions("closed", "closed_at")

    def load_last_fx_rate(self) -> FxRate | None:
        """The newest FX rate (by ``ts``, then ``id``). Flushes first; needs the database (raises
        ``PostgresUnavailable`` naming the reason while it is away)."""
        from psycopg2 import sql

        rows = self._select("fx_rates", sql.SQL("ORDER BY ts DESC, id DESC LIMIT 1"), (), "the last FX rate")
        if rows is None:
            raise PostgresUnavailable(f"cannot read the last FX rate: PostgreSQL at {self.endpoint} unreachable "
                                      f"({self._last_error})")
        return record_from_db("fx_rates", rows[0]) if rows else None

    def load_last_spreads(self, symbols: Sequence[str]) -> list[Spread]:
        """The newest spread of each (symbol, direction) of ``symbols``: one indexed query per symbol. Flushes
        first; needs the database (raises ``PostgresUnavailable`` while it is away)."""
        from psycopg2 import sql

        out: list[Spread] = []
        for symbol in dict.fromkeys(s.upper() for s in symbols):
            rows = self._select(
                "spreads", sql.SQL("WHERE symbol = %s AND direction = %s ORDER BY ts DESC, id DESC LIMIT 1"),
                None, "the last spreads", params_each=[(symbol, d.value) for d in Direction])
            if rows is None:
                raise PostgresUnavailable(f"cannot read the last spreads: PostgreSQL at {self.endpoint} "
                                          f"unreachable ({self._last_error})")
            out.extend(record_from_db("spreads", row) for row in rows)
        return out

    def _positions(self, status: str, order: str) -> list[Position]:
        from psycopg2 import sql

        rows = self._select("positions", sql.SQL("WHERE status = %s ORDER BY {}, id").format(sql.Identifier(order)),
                            (status,), f"{status} positions")
        if rows is None:
            return self._local_positions(status)
        return [record_from_db("positions", row) for row in rows]


    def load_orders(self, since: Any = None) -> list[Order]:
        """Order rows at or after ``since`` (every state the execution layer wrote), oldest first. Flushes
        first; needs the database (``PostgresUnavailable`` while it is away)."""
        from psycopg2 import sql

        if since is None:
            rows = self._select("orders", sql.SQL("ORDER BY ts, id"), None, "orders")
        else:
            rows = self._select("orders", sql.SQL("WHERE ts >= %s ORDER BY ts, id"), (since,), "orders")
        if rows is None:
            raise PostgresUnavailable(f"cannot load orders: PostgreSQL at {self.endpoint} is unreachable "
                                      f"({self._last_error})")
        return [record_from_db("orders", row) for row in rows]

    def _select(self, table: str, tail: Any, params: tuple[Any, ...] | None, what: str, *,
                params_each: Sequence[tuple[Any, ...]] = ()) -> list[Any] | None:
        """``SELECT <every column> FROM <table> <tail>`` once with ``params`` (or once per ``params_each``, rows
        joined), after flushing what is buffered. None while PostgreSQL is away (spooling); a failed query
        raises ``PostgresUnavailable`` naming ``what``."""
        from psycopg2 import sql

        with self._io_lock:
            self._flush_once(force_retry=True)
            if self._conn is None or self._spooling_since is not None:
                return None
            spec = SPECS[table]
            query = sql.SQL("SELECT {} FROM {} ").format(
                sql.SQL(", ").join(map(sql.Identifier, spec.names)), sql.Identifier(self.settings.schema, table),
            ) + tail
            rows: list[Any] = []
            try:
                with self._conn.cursor() as cur:
                    for each in (params_each or [params or ()]):
                        cur.execute(query, each)
                        rows.extend(cur.fetchall())
                self._conn.rollback()
            except Exception as exc:
                reason = error_reason(exc, self._password)
                if is_connection_error(exc, self._conn):
                    self._enter_spooling(reason)
                else:
                    safe_rollback(self._conn)
                raise PostgresUnavailable(f"cannot load {what} from {self.endpoint}: {reason}") from None
        return rows

    def _controls(self) -> Any:
        table = self._control_table
        if table is None:
            from arbframe_storage_pg.control import ControlTable

            table = self._control_table = ControlTable(self.settings)
        return table

    def read_control(self, name: str) -> dict[str, Any] | None:
        """The control record ``name`` (the kill switch) from ``<schema>.control``; ``PostgresUnavailable``
        while the database is away (the kill switch then keeps its last known state)."""
        return self._controls().read(name)

    def write_control(self, name: str, value: Mapping[str, Any]) -> None:
        self._controls().write(name, value)

    def _local_positions(self, status: str) -> list[Position]:
        """PostgreSQL is down: the latest state of each position from what this host wrote last (the mirror of
        every position row, then the spool)."""
        from arbframe import Position as PositionRecord
        from arbframe import from_row
        from arbframe_storage_pg.tables import copy_line_values

        names = SPECS["positions"].names
        latest: dict[str, Position] = {}
        lines: list[str] = []
        if self.settings.mirror_file.exists():
            with open(self.settings.mirror_file, encoding="utf-8") as handle:
                lines.extend(line for line in handle if line.endswith("\n"))
        lines.extend(line for table, batch in self._spool.batches() if table == "positions" for line in batch)
        for line in lines:
            try:
                values = copy_line_values(line)
                position = from_row(PositionRecord, dict(zip(names, values, strict=True)))
            except (ValueError, TypeError) as exc:
                log.error("unreadable local position row skipped: %s", exc)
                continue
            known = latest.get(position.id)
            if known is None or known.is_open or not position.is_open:  # closed beats open
                latest[position.id] = position
        found = [p for p in latest.values() if p.status.value == status]
        log.warning("PostgreSQL at %s unreachable (%s): %d %s positions read from the local copy %s",
                    self.endpoint, self._last_error, len(found), status, self.settings.mirror_file)
        return found

    def active_backend(self) -> str:
        """``postgres``, or ``spool(...)`` while PostgreSQL is away (heartbeat line, health)."""
        if self._spooling_since is not None or self._conn is None:
            return f"spool(postgres unreachable; {len(self._spool)} records)"
        return "postgres"

    def abandon(self) -> None:
        """The kernel gave up waiting for a stuck write: let go without blocking (its records are kept by the
        kernel's spool, and every write is idempotent by id)."""
        self._closed = True
        atexit.unregister(self._atexit)
        self._stop.set()
        self._wake.set()

    def close(self) -> None:
        """Stop the flusher, flush (to the database or the spool), disconnect. Twice is harmless. A write stuck in
        another thread (a frozen server) is not waited for beyond a few seconds."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._atexit)
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=min(5.0, self.settings.connect_timeout_seconds + 2))
        if not self._io_lock.acquire(timeout=2.0):
            log.warning("PostgreSQL at %s: a write is still stuck at close; %d records in %s wait for the next "
                        "run", self.endpoint, len(self._spool), self._spool.path)
            return
        try:
            self._flush_once(force_retry=True)
        finally:
            if len(self._spool):
                log.warning(
                    "PostgreSQL at %s still unreachable at close: %d records stay in %s and will be "
                    "replayed by the next run", self.endpoint, len(self._spool), self._spool.path,
                )
            self._spool.close()
            self._mirror.close()
            self._release_book()
            self._drop_connection()
            if self._control_table is not None:
                self._control_table.close()
            self._io_lock.release()

    # ------------------------------------------------------------------------------------------ book lock
    def lock_book(self, book: BookKey) -> BookLock:
        """One session-level advisory lock per (schema, venue pair, symbol) on a connection of its own; the
        holder is written to ``book_locks`` so a second runner can name it. PostgreSQL down at start: a lock file
        beside the spool guards this host, with a warning."""
        from arbframe_storage_pg.booklock import PgBookLock

        try:
            lock = PgBookLock.acquire(self.settings, book)
        except PostgresUnavailable as exc:
            log.warning("book lock: PostgreSQL unreachable (%s); holding a local lock file only, which does not "
                        "guard against a runner on another host", exc)
            lock = FileBookLock.acquire(self.settings.spool_dir / "locks", book)
        self._book_lock = lock
        return lock

    def _release_book(self) -> None:
        lock, self._book_lock = getattr(self, "_book_lock", None), None
        if lock is not None:
            lock.release()

    # ------------------------------------------------------------------------------------- health & hooks
    def health(self) -> HealthResult:
        """A fresh bounded connection: OK or ERROR (never the password). While records are spooled: ERROR when
        the server still does not answer (the kernel's STORAGE row says the records are safe), WARN when it
        answers and the spool waits for its replay."""
        result = probe(self.settings)
        if self._spooling_since is not None or len(self._spool):
            reason = f" ({self._last_error})" if self._last_error else ""
            spooled = f"{len(self._spool)} records spooled to {self._spool.path}"
            details = {"spool_depth": len(self._spool), "endpoint": self.endpoint}
            if result.status is HealthStatus.OK:
                return HealthResult("postgres", HealthStatus.WARN, f"PostgreSQL at {self.endpoint} answers again; "
                                    f"{spooled} wait for replay", details)
            return HealthResult("postgres", HealthStatus.ERROR,
                                f"PostgreSQL at {self.endpoint} unreachable{reason}; {spooled}", details)
        return result

    @hookimpl
    def arbframe_health_checks(self, config: Mapping[str, Any], context: PluginContext) -> list[HealthCheck]:
        timeout = max(2, self.settings.connect_timeout_seconds) + 1.0
        return [HealthCheck("postgres", self.health, timeout_seconds=timeout)]

    @hookimpl
    def arbframe_register_metrics(self, registry: Any, context: PluginContext) -> None:
        from arbframe import StorageMetrics

        self._metrics = StorageMetrics.get(registry)
        self._metrics.precreate(BACKEND, tuple(SPECS))  # at 0, so the first write error is an increase
        self._set_depth()

    @hookimpl
    def arbframe_shutdown(self, context: PluginContext) -> None:
        """Wake the flusher; never waits (a stalled server must not hold up shutdown): ``close`` is the flush."""
        if not self._closed:
            self._wake.set()


def probe(settings: Settings) -> HealthResult:
    """Connect (bounded by ``connect_timeout_seconds``), ``SELECT 1``, disconnect."""
    where = endpoint(settings.dsn)
    try:
        conn = connect(settings)
    except PostgresUnavailable as exc:
        return HealthResult("postgres", HealthStatus.ERROR, str(exc), {"endpoint": where})
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()
        info = conn.info
        db = info.dbname
        host = info.host if info.host and not info.host.startswith("/") else where.split(":", 1)[0]
        return HealthResult("postgres", HealthStatus.OK, f"Connected to {host}:{info.port}/{db}",
                            {"endpoint": f"{host}:{info.port}/{db}", "server_version": info.server_version})
    except Exception as exc:
        return HealthResult("postgres", HealthStatus.ERROR,
                            f"PostgreSQL at {where}: {error_reason(exc, dsn_password(settings.dsn))}",
                            {"endpoint": where})
    finally:
        safe_close(conn)


_SPREAD = ENCODERS["spreads"]
_POSITION = ENCODERS["positions"]
_ORDER = ENCODERS["orders"]
_TRADE = ENCODERS["trades"]
_FX = ENCODERS["fx_rates"]
_ERROR = ENCODERS["errors"]
