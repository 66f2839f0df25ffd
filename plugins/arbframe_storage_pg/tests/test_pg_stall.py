"""A hung PostgreSQL (table locked, server frozen) never blocks the writer's caller; down at start is the same
story as down mid-run; one writer per book."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from arbframe import BookKey, BookLocked
from arbframe.testing.plugin_harness import PluginHarness
from arbframe.testing.postgres_server import PostgresServer
from arbframe.testing.storage_kit import closed, sample_position

from .test_pg_outage import ids_in, spread, wait_for

pytestmark = pytest.mark.postgres


def _kernel(tmp_path: Path, pg: PostgresServer, schema: str, **pg_extra: Any) -> PluginHarness:
    """The kernel a service run builds on PostgreSQL (no ARBFRAME_* variables of the caller's environment)."""
    return PluginHarness.from_config({
        "arbitrage": {"symbols": ["BTC"]},
        "storage": {"backend": "postgres", "writer": {"stall_seconds": 0.3, "close_timeout_seconds": 5},
                    "postgres": {"dsn": pg.dsn, "schema": schema, "connect_timeout_seconds": 2,
                                 "retry_interval_seconds": 0.1, "max_retry_interval_seconds": 0.3,
                                 "flush_interval_seconds": 0.05, "lock_timeout_seconds": 0.5, **pg_extra}},
    }, env={}, data_dir=tmp_path / "data")


@contextmanager
def table_locked(pg: PostgresServer, schema: str, table: str = "spreads") -> Iterator[None]:
    from psycopg2 import sql

    conn = pg.connect()
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(schema, table)))
        yield
    finally:
        conn.rollback()
        conn.close()


def server_pids(pg: PostgresServer) -> list[int]:
    """The postmaster this fixture started and its children (every backend)."""
    pid_file = Path(pg.datadir) / "postmaster.pid"
    root = int(pid_file.read_text().split()[0])
    pids = [root]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == root:
                pids.append(int(entry))
    return pids


@contextmanager
def frozen(pg: PostgresServer) -> Iterator[None]:
    pids = server_pids(pg)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass


def _tick_times(storage: Any, n: int, start: int) -> list[float]:
    times = []
    for i in range(start, start + n):
        t = time.perf_counter()
        storage.log_spread(spread(i))
        storage.flush()
        times.append(time.perf_counter() - t)
        time.sleep(0.01)
    return times


def test_locked_table_never_blocks_and_every_record_lands_once(tmp_path, pg, schema) -> None:
    kernel = _kernel(tmp_path, pg, schema)
    storage = kernel.load_storage_writer()
    try:
        _tick_times(storage, 20, 0)
        assert storage.sync(10)
        with table_locked(pg, schema):
            times = _tick_times(storage, 150, 20)
            assert max(times) < 0.05, max(times)
            assert "spool" in storage.active_backend() or storage.inner.spooling
        assert wait_for(lambda: storage.active_backend() == "postgres" and not storage.inner.spool_depth, 20)
        assert storage.sync(10)
        got = ids_in(pg, schema, "spreads")
        assert len(got) == 170 and set(got) == {f"out{i:06d}" for i in range(170)}
    finally:
        kernel.close()


def test_frozen_server_never_blocks_and_shutdown_is_bounded(tmp_path, pg, schema) -> None:
    kernel = _kernel(tmp_path, pg, schema)
    storage = kernel.load_storage_writer()
    with frozen(pg):
        times = _tick_times(storage, 100, 0)
        assert max(times) < 0.05, max(times)
        assert wait_for(lambda: storage.diverting, 5)
        started = time.monotonic()
        kernel.close()  # the writer is stuck in libpq: close gives up within close_timeout_seconds
        assert time.monotonic() - started < 10
    # thawed: the next run replays what the frozen one kept
    kernel = _kernel(tmp_path, pg, schema)
    storage = kernel.load_storage_writer()
    try:
        assert storage.sync(15)
        assert wait_for(lambda: not storage.diverting and not storage.inner.spool_depth, 20)
        got = ids_in(pg, schema, "spreads")
        assert len(got) == 100 and set(got) == {f"out{i:06d}" for i in range(100)}
    finally:
        kernel.close()


def test_down_at_start_resumes_locally_then_moves_everything_in_once(tmp_path, pg, schema) -> None:
    from dataclasses import replace

    # an earlier run left one open position in PostgreSQL (and in its local copy)
    kernel = _kernel(tmp_path, pg, schema)
    storage = kernel.load_storage_writer()
    storage.log_position_open(sample_position("before"))
    kernel.close()
    pg.stop()
    kernel = _kernel(tmp_path, pg, schema)
    storage = kernel.load_storage_writer()
    try:
        assert storage.inner.spooling and "spool" in storage.active_backend()
        assert [p.id for p in storage.load_positions()] == ["before"]  # resumed from what was written last
        storage.log_position_close(closed(sample_position("before")))
        storage.log_position_open(replace(sample_position("during"), symbol="BTC"))
        _tick_times(storage, 50, 0)
        assert storage.sync(10)
        assert storage.inner.spool_depth > 0
        pg.start()
        assert wait_for(lambda: storage.active_backend() == "postgres" and not storage.inner.spool_depth, 20)
        assert storage.sync(10)
        got = ids_in(pg, schema, "spreads")
        assert len(got) == 50 and set(got) == {f"out{i:06d}" for i in range(50)}
        rows = pg.execute(f'SELECT id, status, instance_id FROM "{schema}".positions ORDER BY id')
        assert rows == [("before", "closed", "upbit-binance-BTC"), ("during", "open", "upbit-binance-BTC")]
    finally:
        kernel.close()


def test_one_writer_per_book_names_the_holder_disjoint_books_share(tmp_path, pg, schema) -> None:
    first = _kernel(tmp_path, pg, schema).load_storage_writer()
    second = _kernel(tmp_path / "other", pg, schema).load_storage_writer()
    try:
        first.lock_book(BookKey("upbit", "binance", ("BTC", "ETH"), "bot-a"))
        with pytest.raises(BookLocked, match=rf"held by instance 'bot-a' on host .* pid {os.getpid()} since"):
            second.lock_book(BookKey("upbit", "binance", ("ETH",), "bot-b"))
        second.lock_book(BookKey("upbit", "binance", ("XRP",), "bot-b"))  # disjoint: fine
    finally:
        first.close()
        second.close()
    third = _kernel(tmp_path / "third", pg, schema).load_storage_writer()
    try:
        third.lock_book(BookKey("upbit", "binance", ("ETH",), "bot-c"))  # freed when its holder closed
    finally:
        third.close()


def test_stall_error_is_not_bisected(open_storage, pg, schema) -> None:
    """A lock_timeout is an outage (spooled, retried), not bad data: no bisection, no rejects file."""
    storage = open_storage(batch_size=1000, flush_interval_seconds=3600, lock_timeout_seconds=0.3)
    storage.log_spread(spread(0))
    storage.flush()
    with table_locked(pg, schema):
        for i in range(1, 40):
            storage.log_spread(spread(i))
        started = time.monotonic()
        storage.flush()
        assert time.monotonic() - started < 3
        assert storage.spooling and storage.spool_depth == 39
    assert not storage.settings.rejects_file.exists()
    assert wait_for(lambda: not storage.spooling and storage.spool_depth == 0, 15)
    assert len(ids_in(pg, schema, "spreads")) == 40


_ = threading  # keep the import for readers: the writer thread is what these tests exercise
