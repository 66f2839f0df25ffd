"""Connections, schema set-up and the batched, idempotent COPY write path (psycopg2, imported lazily).

A batch is written in ONE transaction: per table, its rows are ``COPY``-ed (text format) into a temporary
staging table, then ``INSERT INTO target SELECT ... FROM stage ON CONFLICT DO NOTHING`` moves the new ones, so
writing a row whose id is already stored is a no-op (replays, migrations, a spool replayed twice).
``positions`` are upserted instead: the row of an id is inserted when it opens and updated when it closes,
and an older state (``open``) never overwrites a newer one (``closed``).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from arbframe import ArbframeError
from arbframe_storage_pg.settings import Settings
from arbframe_storage_pg.tables import HYPERTABLES, SPECS, add_columns_sql, create_index_sql, create_table_sql

log = logging.getLogger("arbframe.storage.postgres")

COPY_CHUNK = 1 << 20
STAGE_PREFIX = "_arbframe_stage_"


class PostgresUnavailable(ArbframeError, ConnectionError):
    """The database cannot be reached or refuses us; the message names the server, never the password."""


class ConnectionLost(Exception):
    """The connection broke while writing; the batch was not committed."""


# -------------------------------------------------------------------------------------------- DSN helpers
def dsn_params(dsn: str) -> dict[str, str]:
    """libpq's own reading of a URL or key=value DSN (empty dict when it cannot parse it)."""
    try:
        from psycopg2.extensions import parse_dsn

        return dict(parse_dsn(dsn))
    except Exception:
        return {}


def dsn_password(dsn: str) -> str:
    return dsn_params(dsn).get("password", "") or ""


def endpoint(dsn: str) -> str:
    """``host:port/db`` of a DSN (libpq defaults filled in); never the user or password."""
    params = dsn_params(dsn)
    if not params and dsn:
        return "<unparsable dsn>"
    host = params.get("host") or params.get("hostaddr") or "localhost"
    if "," in host:
        host = host.split(",")[0]
    port = params.get("port") or "5432"
    if "," in port:
        port = port.split(",")[0]
    db = params.get("dbname") or params.get("user") or ""
    return f"{host}:{port}/{db}"


def scrub(text: str, *secrets: str) -> str:
    """``text`` with every non-empty secret replaced by ``***`` (and URL/key=value passwords masked)."""
    from arbframe import mask_url

    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return mask_url(text) if ("://" in text or "password" in text.lower()) else text


def error_reason(exc: BaseException, *secrets: str) -> str:
    """One line saying why, from a psycopg2 error, with secrets removed."""
    text = str(exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = "; ".join(lines[:2]) if lines else type(exc).__name__
    return scrub(reason, *secrets)


# ------------------------------------------------------------------------------------------- connections
def connect(settings: Settings, *, readonly: bool = False) -> Any:
    """A new connection (UTC session time zone, bounded connect time), or PostgresUnavailable."""
    try:
        import psycopg2
    except ImportError as exc:
        raise PostgresUnavailable(
            f"psycopg2 is not installed ({exc}); install it with: pip install psycopg2-binary"
        ) from None
    where = endpoint(settings.dsn)
    try:
        conn = psycopg2.connect(
            settings.dsn,
            connect_timeout=max(2, int(settings.connect_timeout_seconds)),
            application_name=settings.application_name,
            options="-c TimeZone=UTC",
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
        )
    except psycopg2.Error as exc:
        raise PostgresUnavailable(
            f"cannot connect to PostgreSQL at {where}: {error_reason(exc, dsn_password(settings.dsn))}"
        ) from None
    if readonly:
        conn.set_session(readonly=True)
    return conn


def is_connection_error(exc: BaseException, conn: Any) -> bool:
    """True when ``exc`` means the connection is gone (server stopped, network cut), not bad data."""
    import psycopg2

    if conn is None or conn.closed:
        return True
    if not isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)):
        return False
    try:
        conn.rollback()
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
        conn.rollback()
        return False
    except Exception:
        return True


def safe_rollback(conn: Any) -> None:
    try:
        if conn is not None and not conn.closed:
            conn.rollback()
    except Exception:
        pass


def safe_close(conn: Any) -> None:
    try:
        if conn is not None and not conn.closed:
            conn.close()
    except Exception:
        pass


# -------------------------------------------------------------------------------------------------- schema
def ensure_schema(conn: Any, settings: Settings) -> bool:
    """Create schema, tables and indexes if missing; with ``enable_timescale`` try hypertables.

    Returns True when the time-series tables are hypertables. Commits.
    """
    from psycopg2 import sql

    schema = settings.schema
    timescale = False
    if settings.enable_timescale:
        timescale = _enable_timescale(conn)
    with conn.cursor() as cur:
        cur.execute("SET LOCAL client_min_messages = warning")
        cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        for table in SPECS:
            cur.execute(create_table_sql(schema, table, timescale=timescale))
            for stmt in add_columns_sql(schema, table):  # tables of an older version get the new columns
                cur.execute(stmt)
        if timescale:
            timescale = _make_hypertables(cur, conn, schema)
        for table in SPECS:
            for stmt in create_index_sql(schema, table):
                cur.execute(stmt)
    conn.commit()
    return timescale


_TIMESCALE_WARNED = False


def _warn_no_timescale(reason: str) -> None:
    global _TIMESCALE_WARNED
    if not _TIMESCALE_WARNED:
        _TIMESCALE_WARNED = True
        log.warning("enable_timescale is set but TimescaleDB is not available (%s); using plain tables", reason)


def _enable_timescale(conn: Any) -> bool:
    """Is the extension usable? Creates it when available. One WARNING (per process) when it is not."""
    import psycopg2

    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
        if cur.fetchone() is None:
            conn.rollback()
            _warn_no_timescale("extension 'timescaledb' is not installed on the server")
            return False
        try:
            cur.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            conn.commit()
        except psycopg2.Error as exc:
            conn.rollback()
            _warn_no_timescale(f"CREATE EXTENSION timescaledb failed: {error_reason(exc)}")
            return False
    return True


def _make_hypertables(cur: Any, conn: Any, schema: str) -> bool:
    """``create_hypertable`` on each time-series table (no-op when it already is one).

    Tables created earlier as plain tables with a primary key on ``id`` alone cannot become hypertables
    (TimescaleDB needs the time column in every unique index): they stay plain, with a warning.
    """
    import psycopg2
    from psycopg2 import sql

    ok = True
    for table in HYPERTABLES:
        qualified = sql.Identifier(schema, table).as_string(conn)
        time_col = SPECS[table].time_column
        cur.execute("SAVEPOINT hypertable")
        try:
            cur.execute(
                "SELECT create_hypertable(%s::regclass, %s, if_not_exists => TRUE, migrate_data => TRUE)",
                (qualified, time_col),
            )
            cur.execute("RELEASE SAVEPOINT hypertable")
        except psycopg2.Error as exc:
            cur.execute("ROLLBACK TO SAVEPOINT hypertable")
            ok = False
            log.warning("%s stays a plain table: create_hypertable failed: %s", qualified, error_reason(exc))
    return ok


def table_exists(conn: Any, schema: str, table: str) -> bool:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = %s AND tablename = %s", (schema, table)
        )
        return cur.fetchone() is not None


# ---------------------------------------------------------------------------------------------- write path
@dataclass
class TableResult:
    rows: int = 0
    inserted: int = 0
    updated: int = 0

    @property
    def present(self) -> int:
        return self.rows - self.inserted - self.updated


class BatchWriter:
    """Writes batches of rows (COPY text lines, or CSV lines with ``fmt="csv"``). Not thread-safe.

    Two idempotent paths per table, picked adaptively:

    - direct (optimistic): ``COPY`` straight into the table inside a savepoint. When no row is there yet — the
      normal case for a live service and a first migration — this is the server's raw bulk-load speed.
    - staged: when the direct COPY hits an id already stored (a replay, a re-run), the savepoint is rolled back
      and the rows go ``COPY`` -> temporary staging table -> ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``.
      The table stays on this path until a staged batch finds no row already present.

    ``positions`` always take the staged path (an upsert where ``closed`` beats ``open``).
    """

    def __init__(self, conn: Any, schema: str) -> None:
        self.conn = conn
        self.schema = schema
        self._staged: set[str] = set()
        self._sql: dict[tuple[str, str], tuple[Any, Any, Any]] = {}
        self._direct: dict[str, bool] = {}

    def _stage(self, cur: Any, table: str) -> None:
        if table in self._staged:
            return
        from psycopg2 import sql

        extra = sql.SQL(", _seq bigserial") if table == "positions" else sql.SQL("")
        cur.execute(
            sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {}{}) ON COMMIT DELETE ROWS").format(
                sql.Identifier(STAGE_PREFIX + table), sql.Identifier(self.schema, table), extra
            )
        )
        self._staged.add(table)

    def _statements(self, table: str, fmt: str) -> tuple[Any, Any, Any]:
        """(COPY into the table, COPY into the staging table, merge from the staging table)."""
        found = self._sql.get((table, fmt))
        if found is not None:
            return found
        from psycopg2 import sql

        from arbframe_storage_pg.tables import force_not_null

        spec = SPECS[table]
        cols = sql.SQL(", ").join(map(sql.Identifier, spec.names))
        stage = sql.Identifier(STAGE_PREFIX + table)
        target = sql.Identifier(self.schema, table)
        if fmt == "csv":
            options = [sql.SQL("FORMAT csv")]
            keep = force_not_null(table)
            if keep:
                options.append(sql.SQL("FORCE_NOT_NULL ({})").format(sql.SQL(", ").join(map(sql.Identifier, keep))))
            with_ = sql.SQL(" WITH ({})").format(sql.SQL(", ").join(options))
        else:
            with_ = sql.SQL("")
        copy_direct = sql.SQL("COPY {} ({}) FROM STDIN{}").format(target, cols, with_)
        copy_stage = sql.SQL("COPY {} ({}) FROM STDIN{}").format(stage, cols, with_)
        if table == "positions":
            updates = sql.SQL(", ").join(
                sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(n), sql.Identifier(n))
                for n in spec.names if n != "id"
            )
            merge = sql.SQL(
                "INSERT INTO {target} AS t ({cols}) "
                "SELECT DISTINCT ON (id) {cols} FROM {stage} ORDER BY id, (status = 'closed') DESC, _seq DESC "
                "ON CONFLICT (id) DO UPDATE SET {updates} "
                "WHERE t.status IS DISTINCT FROM 'closed' AND EXCLUDED.status = 'closed' "
                "RETURNING (xmax = 0)"
            ).format(target=target, cols=cols, stage=stage, updates=updates)
        else:
            merge = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT DO NOTHING").format(
                target, cols, cols, stage
            )
        self._sql[(table, fmt)] = (copy_direct, copy_stage, merge)
        return copy_direct, copy_stage, merge

    def write_table(self, cur: Any, table: str, lines: Sequence[str], fmt: str = "text",
                    rows: int | None = None) -> TableResult:
        """Write one table's rows inside the caller's transaction (idempotent by id).

        ``lines`` are rows (or runs of rows: then ``rows`` says how many) in COPY ``fmt`` (text or csv).
        """
        import psycopg2.errors

        result = TableResult(rows=len(lines) if rows is None else rows)
        if not lines:
            return result
        copy_direct, copy_stage, merge = self._statements(table, fmt)
        data = "".join(lines)
        if table != "positions" and self._direct.get(table, True):
            cur.execute("SAVEPOINT arbframe_direct")
            try:
                cur.copy_expert(copy_direct, io.StringIO(data), size=COPY_CHUNK)
            except psycopg2.errors.UniqueViolation:
                cur.execute("ROLLBACK TO SAVEPOINT arbframe_direct")
                self._direct[table] = False  # some ids are there already: merge through the staging table
            else:
                cur.execute("RELEASE SAVEPOINT arbframe_direct")
                result.inserted = result.rows
                return result
        self._stage(cur, table)
        cur.copy_expert(copy_stage, io.StringIO(data), size=COPY_CHUNK)
        cur.execute(merge)
        if table == "positions":
            flags = [row[0] for row in cur.fetchall()]
            result.inserted = sum(1 for f in flags if f)
            result.updated = len(flags) - result.inserted
        else:
            result.inserted = max(cur.rowcount, 0)
            if result.inserted == result.rows:
                self._direct[table] = True  # nothing was there: back to the direct path
        return result

    def write(self, batch: Mapping[str, Sequence[str]]) -> dict[str, TableResult]:
        """Every table of ``batch`` in one transaction; commits. Raises psycopg2 errors (rolled back)."""
        results: dict[str, TableResult] = {}
        try:
            with self.conn.cursor() as cur:
                for table, lines in batch.items():
                    if lines:
                        results[table] = self.write_table(cur, table, lines)
            self.conn.commit()
        except BaseException:
            self.rolled_back()
            raise
        return results

    def rolled_back(self) -> None:
        """Roll back; staging tables created in the aborted transaction are gone, so forget them all."""
        safe_rollback(self.conn)
        self._staged.clear()

    def positions_state(self, ids: Iterable[str]) -> dict[str, str]:
        """id -> status of the positions already stored (inside the current transaction)."""
        from psycopg2 import sql

        id_list = list(ids)
        if not id_list:
            return {}
        with self.conn.cursor() as cur:
            cur.execute(
                sql.SQL("SELECT id, status FROM {} WHERE id = ANY(%s)").format(
                    sql.Identifier(self.schema, "positions")
                ),
                (id_list,),
            )
            return {row[0]: row[1] for row in cur.fetchall()}
