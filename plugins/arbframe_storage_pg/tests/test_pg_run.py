"""`arbframe run` writing to PostgreSQL while the server stops and comes back: every record present exactly once.

An independent witness — a tiny ``arbframe.plugins`` module on PYTHONPATH implementing the event hooks — writes
down the id of every spread, order and trade the engine produced; afterwards the database holds exactly those
ids, each once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from arbframe.testing.postgres_server import PostgresServer

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

WITNESS = '''
import os
from arbframe import hookimpl

ARBFRAME_API_VERSION = 1
_PATH = os.environ["ARBFRAME_PG_WITNESS"]


def _note(table, record_id):
    with open(_PATH, "a", encoding="utf-8") as handle:
        handle.write(f"{table} {record_id}\\n")


@hookimpl
def arbframe_on_spread(spread):
    _note("spreads", spread.id)


@hookimpl
def arbframe_on_order_filled(order, trade):
    _note("orders", order.id)
    _note("trades", trade.id)
'''


def witness_site(root: Path) -> Path:
    site = root / "site"
    info = site / "arbframe_pg_witness-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: arbframe-pg-witness\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[arbframe.plugins]\npg_witness = arbframe_pg_witness\n")
    (site / "arbframe_pg_witness.py").write_text(WITNESS)
    return site


def witnessed(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            table, record_id = line.split(" ", 1)
            out.setdefault(table, []).append(record_id)
    return out


def wait_until(condition, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_run_survives_a_database_outage(tmp_path: Path, pg: PostgresServer, schema: str) -> None:
    from psycopg2 import sql

    site = witness_site(tmp_path)
    witness = tmp_path / "witness.txt"
    config = tmp_path / "run.yml"
    config.write_text(
        "mock_mode: true\n"
        "storage:\n  backend: postgres\n"
        f"  csv:\n    data_dir: {tmp_path / 'data'}\n"
        f"  postgres:\n    dsn: {pg.dsn}\n    schema: {schema}\n    flush_interval_seconds: 0.1\n"
        "    retry_interval_seconds: 0.1\n    max_retry_interval_seconds: 0.3\n    connect_timeout_seconds: 2\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg"), "PYTHONPATH": str(site),
           "ARBFRAME_PG_WITNESS": str(witness)}
    log_path = tmp_path / "run.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "arbframe", "run", "--config", str(config), "--mock", "--interval", "0.05",
             "--duration", "6"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
        )
        try:
            assert wait_until(lambda: len(witnessed(witness).get("spreads", [])) >= 40, 30), log_path.read_text()
            pg.stop()
            stopped_at = len(witnessed(witness)["spreads"])
            # several ticks while the database is away
            assert wait_until(lambda: len(witnessed(witness)["spreads"]) >= stopped_at + 60, 30)
            pg.start()
            assert proc.wait(timeout=60) == 0, log_path.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
            pg.start()
    output = log_path.read_text()
    assert "spooling records" in output and "answers again" in output, output
    seen = witnessed(witness)
    assert len(seen["spreads"]) > stopped_at + 60
    for table in ("spreads", "orders", "trades"):
        stored = [r[0] for r in pg.execute(
            sql.SQL("SELECT id FROM {}").format(sql.Identifier(schema, table)))]
        assert len(stored) == len(set(stored))
        assert sorted(stored) == sorted(set(seen.get(table, []))), table
    assert sorted(set(seen["spreads"])) == sorted(seen["spreads"])  # the engine never repeats an id
