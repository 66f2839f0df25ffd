"""The throwaway PostgreSQL fixture: skips without binaries (fails under CI=true), own port, stop/start."""

from __future__ import annotations

import pytest

from arbframe.testing import postgres_server as module
from arbframe.testing.postgres_server import PostgresServer


def test_missing_binaries_skip_or_fail_under_ci(monkeypatch) -> None:
    monkeypatch.setattr(module, "missing_reason", lambda: "no initdb here")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no initdb here"):
        module.start_or_skip()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        module.start_or_skip()


def test_free_port_is_never_the_system_one() -> None:
    assert all(module.free_port() != 5432 for _ in range(20))


@pytest.mark.postgres
def test_server_stop_start_keeps_port_and_data(pg: PostgresServer) -> None:
    assert pg.port != 5432 and str(pg.root).startswith("/")
    pg.execute("CREATE TABLE IF NOT EXISTS keep_me (x int)")
    pg.execute("INSERT INTO keep_me VALUES (7)")
    port = pg.port
    pg.stop()
    assert not pg.running
    pg.start()
    assert pg.port == port and pg.execute("SELECT max(x) FROM keep_me") == [(7,)]
    assert pg.endpoint == f"127.0.0.1:{port}/arbframe"
