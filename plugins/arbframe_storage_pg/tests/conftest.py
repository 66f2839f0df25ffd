"""Fixtures for the PostgreSQL plugin's tests: one throwaway server per session, a fresh schema per test."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from arbframe import PluginContext
from arbframe.testing.plugin_harness import plugin_context
from arbframe.testing.postgres_server import PostgresServer, postgres_server_fixture

postgres_server = postgres_server_fixture(scope="session")

_counter = itertools.count(1)


@pytest.fixture
def pg(postgres_server: PostgresServer) -> Iterator[PostgresServer]:
    """The session server, guaranteed running at the start and end of the test."""
    postgres_server.start()
    yield postgres_server
    postgres_server.start()


@pytest.fixture
def schema() -> str:
    """A schema name no other test uses."""
    return f"t{os.getpid()}_{next(_counter)}"


@pytest.fixture
def make_context(tmp_path: Path) -> Callable[..., PluginContext]:
    def make(config: dict[str, Any] | None = None) -> PluginContext:
        return plugin_context(config, data_dir=tmp_path / "data")

    return make


@pytest.fixture
def section(pg: PostgresServer, schema: str, tmp_path: Path) -> dict[str, Any]:
    """A storage.postgres section for a fresh schema, with a fast retry for outage tests."""
    return {
        "dsn": pg.dsn,
        "schema": schema,
        "spool_dir": str(tmp_path / "spool"),
        "retry_interval_seconds": 0.05,
        "max_retry_interval_seconds": 0.2,
        "flush_interval_seconds": 0.05,
        "connect_timeout_seconds": 2,
    }


def _read_table(pg: PostgresServer, schema: str, table: str) -> list[Any]:
    """Every row of a table as kernel records."""
    from arbframe_storage_pg.tables import SPECS, record_from_db
    from psycopg2 import sql

    names = SPECS[table].names
    rows = pg.execute(
        sql.SQL("SELECT {} FROM {} ORDER BY id").format(
            sql.SQL(", ").join(map(sql.Identifier, names)), sql.Identifier(schema, table)
        )
    )
    return [record_from_db(table, row) for row in rows]


def _count(pg: PostgresServer, schema: str, table: str) -> int:
    from psycopg2 import sql

    return int(pg.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table)))[0][0])


@pytest.fixture
def read_table() -> Callable[[PostgresServer, str, str], list[Any]]:
    """read_table(server, schema, table) -> every row as kernel records, by id."""
    return _read_table


@pytest.fixture
def count_rows() -> Callable[[PostgresServer, str, str], int]:
    """count_rows(server, schema, table) -> number of rows."""
    return _count


@pytest.fixture
def run_arbframe(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``python -m arbframe ...`` in a subprocess with a private stevedore cache."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg"), **(env or {})}
        return subprocess.run([sys.executable, "-m", "arbframe", *args], capture_output=True, text=True,
                              env=full_env, timeout=timeout, cwd=cwd or tmp_path)

    return run


@pytest.fixture
def open_storage(section: dict[str, Any], make_context: Callable[..., PluginContext]):  # type: ignore[no-untyped-def]
    """Open PostgresStorage instances on the test's schema (overrides per call); all closed afterwards."""
    from arbframe_storage_pg.storage import PostgresStorage

    opened: list[PostgresStorage] = []

    def open_(**overrides: Any) -> PostgresStorage:
        context = make_context()
        storage = PostgresStorage({**section, **overrides}, context)
        storage.context = context  # for the tests' metric reads
        opened.append(storage)
        return storage

    yield open_
    for storage in opened:
        storage.close()
