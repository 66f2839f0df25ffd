"""Control records (the kill switch) in ``<schema>.control``: one row per name, a JSON value, replaced in place.

Every runner on the schema reads the same row, so ``arbframe kill`` on any host stops them all, and a restart
stays killed. The table is created on first use; a connection of its own (autocommit) serves reads and writes.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from arbframe_storage_pg.db import PostgresUnavailable, connect, dsn_password, endpoint, error_reason, safe_close
from arbframe_storage_pg.settings import Settings


class ControlTable:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._conn: Any = None
        self._lock = threading.Lock()

    def _cursor_call(self, fn: Any) -> Any:
        from psycopg2 import sql

        with self._lock:
            try:
                if self._conn is None:
                    conn = connect(self.settings, bounded=True)
                    conn.autocommit = True
                    with conn.cursor() as cur:
                        cur.execute("SET client_min_messages = warning")
                        cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                            sql.Identifier(self.settings.schema)))
                        cur.execute(sql.SQL(
                            "CREATE TABLE IF NOT EXISTS {} (name text PRIMARY KEY, value text NOT NULL, "
                            "ts timestamptz NOT NULL DEFAULT now())").format(self.table))
                    self._conn = conn
                with self._conn.cursor() as cur:
                    return fn(cur)
            except Exception as exc:
                safe_close(self._conn)
                self._conn = None
                reason = error_reason(exc, dsn_password(self.settings.dsn))
                raise PostgresUnavailable(
                    f"control records at {endpoint(self.settings.dsn)} unavailable: {reason}") from None

    @property
    def table(self) -> Any:
        from psycopg2 import sql

        return sql.Identifier(self.settings.schema, "control")

    def read(self, name: str) -> dict[str, Any] | None:
        from psycopg2 import sql

        def run(cur: Any) -> Any:
            cur.execute(sql.SQL("SELECT value FROM {} WHERE name = %s").format(self.table), (name,))
            return cur.fetchone()

        row = self._cursor_call(run)
        if row is None:
            return None
        value = json.loads(row[0])
        return value if isinstance(value, dict) else None

    def write(self, name: str, value: Any) -> None:
        from psycopg2 import sql

        text = json.dumps(dict(value))

        def run(cur: Any) -> None:
            cur.execute(sql.SQL(
                "INSERT INTO {} (name, value, ts) VALUES (%s, %s, now()) "
                "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, ts = EXCLUDED.ts").format(self.table),
                (name, text))

        self._cursor_call(run)

    def close(self) -> None:
        with self._lock:
            safe_close(self._conn)
            self._conn = None
