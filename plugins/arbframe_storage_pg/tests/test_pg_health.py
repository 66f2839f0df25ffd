"""`arbframe health` with the PostgreSQL storage: OK, ERROR (server down, wrong password), bounded, no secrets."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from arbframe.testing.postgres_server import PostgresServer

pytestmark = pytest.mark.postgres

SECRET = "H3alth-Pa55-w0rd"


def config_file(tmp_path: Path, dsn: str, schema: str) -> str:
    path = tmp_path / "health.yml"
    path.write_text(
        "storage:\n  backend: postgres\n"
        f"  csv:\n    data_dir: {tmp_path / 'data'}\n"
        f"  postgres:\n    dsn: '{dsn}'\n    schema: {schema}\n    connect_timeout_seconds: 2\n"
    )
    return str(path)


def postgres_line(output: str) -> str:
    match = re.search(r"^\[POSTGRES\s*\].*$", output, re.M)
    assert match, output
    return match.group(0)


def test_health_ok(tmp_path, pg: PostgresServer, schema, run_arbframe) -> None:
    result = run_arbframe("health", "--config", config_file(tmp_path, pg.dsn, schema))
    line = postgres_line(result.stdout)
    assert "OK" in line and line.endswith(f"Connected to {pg.endpoint}"), result.stdout
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(run_arbframe("health", "--json", "--config",
                                     config_file(tmp_path, pg.dsn, schema)).stdout)
    assert "postgres" in json.dumps(report).lower()


def test_health_error_when_down_is_bounded(tmp_path, pg: PostgresServer, schema, run_arbframe) -> None:
    config = config_file(tmp_path, pg.dsn, schema)
    pg.stop()
    try:
        started = time.monotonic()
        result = run_arbframe("health", "--config", config)
        elapsed = time.monotonic() - started
    finally:
        pg.start()
    line = postgres_line(result.stdout)
    assert "ERROR" in line and pg.endpoint in line and "refused" in line.lower(), line
    assert result.returncode == 1
    assert elapsed < 15  # process start-up included; the checks themselves are bounded to ~2 s


def test_health_error_on_wrong_password_never_shows_it(tmp_path, pg: PostgresServer, schema, run_arbframe) -> None:
    good = pg.create_role(f"h_{schema}", "correct-horse")
    result = run_arbframe("health", "--verbose", "--config",
                          config_file(tmp_path, good.replace("correct-horse", SECRET), schema))
    line = postgres_line(result.stdout)
    assert "ERROR" in line and "password authentication failed" in line, line
    assert result.returncode == 1
    assert SECRET not in result.stdout + result.stderr
