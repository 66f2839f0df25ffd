"""One writer per book in PostgreSQL: a session-level advisory lock per (schema, venue pair, symbol).

Advisory locks carry no holder, so the holder (instance, host, pid, since) is upserted into ``<schema>.book_locks``
after the lock is taken; a runner that cannot take the lock reads that row to name who has it. The lock lives as
long as its connection: a runner that dies (or whose connection drops) frees it at once.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from arbframe import BookKey, BookLock, BookLocked, Holder
from arbframe_storage_pg.db import connect, endpoint, error_reason, safe_close
from arbframe_storage_pg.settings import Settings

log = logging.getLogger("arbframe.storage.postgres")


def lock_key(schema: str, part: str) -> int:
    """A stable signed 64-bit advisory lock key for one book part in one schema."""
    digest = hashlib.blake2b(f"arbframe-book\0{schema}\0{part}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PgBookLock(BookLock):
    def __init__(self, conn: Any, settings: Settings, book: BookKey) -> None:
        super().__init__(book, f"PostgreSQL {endpoint(settings.dsn)} schema {settings.schema!r}")
        self._conn = conn

    @classmethod
    def acquire(cls, settings: Settings, book: BookKey) -> PgBookLock:
        """Every part or none; :class:`BookLocked` names the holder; PostgresUnavailable when unreachable."""
        from psycopg2 import sql

        conn = connect(settings)
        conn.autocommit = True
        table = sql.Identifier(settings.schema, "book_locks")
        me = Holder.me(book.instance_id)
        try:
            with conn.cursor() as cur:
                cur.execute("SET client_min_messages = warning")
                cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(settings.schema)))
                cur.execute(sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (book text PRIMARY KEY, instance_id text NOT NULL, "
                    "host text NOT NULL, pid integer NOT NULL, since text NOT NULL)"
                ).format(table))
                for part in book.parts():
                    cur.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(settings.schema, part),))
                    if not cur.fetchone()[0]:
                        cur.execute(sql.SQL("SELECT instance_id, host, pid, since FROM {} WHERE book = %s")
                                    .format(table), (part,))
                        row = cur.fetchone()
                        who = Holder(*row).describe() if row else "another session"
                        raise BookLocked(
                            f"book {part} in PostgreSQL {endpoint(settings.dsn)} schema {settings.schema!r} is held "
                            f"by {who}; one runner per book: stop that runner or trade other symbols"
                        )
                    cur.execute(sql.SQL(
                        "INSERT INTO {} (book, instance_id, host, pid, since) VALUES (%s, %s, %s, %s, %s) "
                        "ON CONFLICT (book) DO UPDATE SET instance_id = EXCLUDED.instance_id, host = EXCLUDED.host, "
                        "pid = EXCLUDED.pid, since = EXCLUDED.since"
                    ).format(table), (part, me.instance_id, me.host, me.pid, me.since))
        except BookLocked:
            safe_close(conn)  # frees the parts taken so far
            raise
        except Exception as exc:
            safe_close(conn)
            from arbframe_storage_pg.db import PostgresUnavailable, dsn_password

            reason = error_reason(exc, dsn_password(settings.dsn))
            raise PostgresUnavailable(f"cannot take the book lock at {endpoint(settings.dsn)}: {reason}") from None
        return cls(conn, settings, book)

    def release(self) -> None:
        conn, self._conn = self._conn, None
        safe_close(conn)  # session-level advisory locks end with the session
