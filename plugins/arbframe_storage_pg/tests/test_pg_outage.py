"""Outages: the server stops and comes back while the storage writes; start-up failures fall back to CSV."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from arbframe import Direction, HealthStatus, Spread
from arbframe.testing.postgres_server import PostgresServer
from arbframe.testing.storage_kit import closed, sample_position

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 5, 6, 7, 8, 9, tzinfo=timezone.utc)
PASSWORD = "Sup3r-S3cret-Pa55"


def spread(i: int) -> Spread:
    return Spread(
        id=f"out{i:06d}", ts=T0 + timedelta(milliseconds=i), symbol="BTC", direction=Direction.KIMCHI,
        domestic_exchange="upbit", foreign_exchange="binance", qty=Decimal("0.01"),
        domestic_price=Decimal("135000000.5") + i, foreign_price=Decimal("97000.01"), fx_rate=Decimal("1350.5"),
        fx_source="static", fx_age_seconds=Decimal("0"), premium=Decimal(i) / 1000, net_premium=Decimal("0.02"),
    )


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def ids_in(pg: PostgresServer, schema: str, table: str) -> list[str]:
    from psycopg2 import sql

    return [r[0] for r in pg.execute(sql.SQL("SELECT id FROM {}").format(sql.Identifier(schema, table)))]


def test_server_stopped_and_restarted_while_writing(open_storage, pg, schema, read_table) -> None:
    storage = open_storage(batch_size=25, flush_interval_seconds=0.02)
    reg = storage.context.registry
    positions = [sample_position(f"p{i}") for i in range(6)]
    for p in positions[:3]:
        storage.log_position_open(p)
    total = 600
    saw_warn = False
    for i in range(total):
        storage.log_spread(spread(i))
        if i == 150:
            pg.stop()  # mid-run: the flusher is writing batches meanwhile
        if i == 300:
            storage.flush()  # durable in the spool
            assert storage.spooling and storage.spool_depth > 0
            assert storage.spool_path.stat().st_size > 0
            result = storage.health()
            assert result.status is HealthStatus.ERROR and "spooled" in result.message
            assert reg.get_sample_value("arbframe_storage_spool_depth", {"backend": "postgres"}) > 0
            saw_warn = True
            storage.log_position_close(closed(positions[0]))
            storage.log_position_open(positions[3])
        if i == 450:
            pg.start()
        if i % 50 == 0:
            time.sleep(0.01)  # let the flusher run between writes, as between ticks
    storage.log_position_open(positions[4])
    assert saw_warn
    assert wait_for(lambda: not storage.spooling and storage.spool_depth == 0)
    storage.flush()
    got = ids_in(pg, schema, "spreads")
    assert len(got) == total and set(got) == {f"out{i:06d}" for i in range(total)}  # all, exactly once
    back = {p.id: p for p in read_table(pg, schema, "positions")}
    assert back["p0"] == closed(positions[0])
    assert {p.id for p in storage.load_positions()} == {"p1", "p2", "p3", "p4"}
    assert storage.health().status is HealthStatus.OK
    assert reg.get_sample_value("arbframe_storage_spool_depth", {"backend": "postgres"}) == 0
    assert reg.get_sample_value("arbframe_storage_write_errors_total", {"backend": "postgres"}) >= 1


def test_spool_outlives_the_process_and_is_replayed_by_the_next(open_storage, pg, schema, caplog) -> None:
    first = open_storage(batch_size=1000, flush_interval_seconds=3600)
    pg.stop()
    for i in range(40):
        first.log_spread(spread(i))
    caplog.set_level(logging.WARNING)
    first.close()  # cannot reach the database: the records stay in the spool
    assert any("still unreachable at close" in r.getMessage() for r in caplog.records)
    spool_file = first.spool_path
    assert spool_file.stat().st_size > 0
    pg.start()
    second = open_storage(batch_size=1000, flush_interval_seconds=3600)
    second.log_spread(spread(40))
    second.flush()
    got = ids_in(pg, schema, "spreads")
    assert sorted(got) == [f"out{i:06d}" for i in range(41)]
    assert second.spool_depth == 0 and spool_file.stat().st_size == 0


def test_spool_of_a_dead_process_is_adopted(open_storage, pg, schema, section) -> None:
    from arbframe_storage_pg.settings import Settings
    from arbframe_storage_pg.tables import ENCODERS

    main = Settings.from_section(section).spool_file
    orphan = main.with_name(f"{main.stem}.999999{main.suffix}")
    orphan.parent.mkdir(parents=True, exist_ok=True)
    lines = "".join(ENCODERS["spreads"](spread(i)) for i in range(5))
    orphan.write_text(json.dumps({"table": "spreads", "rows": 5, "lines": lines}) + "\n" + '{"table": "sp')
    storage = open_storage()
    storage.flush()
    assert sorted(ids_in(pg, schema, "spreads")) == [f"out{i:06d}" for i in range(5)]
    assert not orphan.exists()


def test_load_positions_during_an_outage_reads_the_local_copy(open_storage, pg, caplog) -> None:
    storage = open_storage(connect_timeout_seconds=2)
    storage.log_position_open(sample_position("before"))
    storage.log_position_open(sample_position("gone"))
    storage.flush()
    pg.stop()
    storage.log_position_close(closed(sample_position("gone")))
    storage.log_position_open(sample_position("during"))
    caplog.set_level(logging.WARNING)
    assert sorted(p.id for p in storage.load_positions()) == ["before", "during"]
    assert [p.id for p in storage.load_closed_positions()] == ["gone"]
    assert any("read from the local copy" in r.getMessage() for r in caplog.records)
    pg.start()
    assert sorted(p.id for p in storage.load_positions()) == ["before", "during"]
    assert [p.id for p in storage.load_closed_positions()] == ["gone"]


def test_health_error_when_the_server_is_down_is_bounded(open_storage, pg) -> None:
    from arbframe_storage_pg.settings import Settings
    from arbframe_storage_pg.storage import probe

    storage = open_storage()
    settings = storage.settings
    pg.stop()
    started = time.monotonic()
    result = probe(settings)
    assert time.monotonic() - started < settings.connect_timeout_seconds + 1
    assert result.status is HealthStatus.ERROR and pg.endpoint in result.message
    pg.start()
    wrong = Settings.from_section({"dsn": pg.dsn_for(user="nobody", password=PASSWORD)})
    result = probe(wrong)
    assert result.status is HealthStatus.ERROR and PASSWORD not in result.message


# --------------------------------------------------------------------------------------- start-up fallback
def _kernel_config(tmp_path: Path, dsn: str, schema: str) -> dict[str, Any]:
    from arbframe import load_config

    return load_config(
        [],
        overrides={"storage": {"backend": "postgres", "csv": {"data_dir": str(tmp_path / "csvdata")},
                               "postgres": {"dsn": dsn, "schema": schema, "connect_timeout_seconds": 2}}},
        env={},
    )


def test_wrong_password_spools_retries_and_never_logs_it(pg, schema, tmp_path, caplog) -> None:
    """A refused login at start is an outage like any other: spool, retry, say why (never the password)."""
    from arbframe.testing.plugin_harness import PluginHarness as Kernel  # builds storage the kernel's way

    role = f"app_{schema}"
    good = pg.create_role(role, "the-right-one")
    wrong = good.replace("the-right-one", PASSWORD)
    caplog.set_level(logging.DEBUG)
    kernel = Kernel(_kernel_config(tmp_path, wrong, schema))
    storage = kernel.load_storage()
    try:
        assert type(storage).__name__ == "PostgresStorage" and storage.spooling
        assert storage.active_backend().startswith("spool(")
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        message = warnings[0].getMessage()
        assert "password authentication failed" in message and "spooling" in message
        health = storage.health()
        assert health.status is HealthStatus.ERROR and PASSWORD not in health.message
        everything = "\n".join(r.getMessage() for r in caplog.records) + caplog.text
        assert PASSWORD not in everything
    finally:
        kernel.close()
    # the right password works through the same path
    kernel = Kernel(_kernel_config(tmp_path, good, schema))
    try:
        storage = kernel.load_storage()
        assert type(storage).__name__ == "PostgresStorage" and storage.active_backend() == "postgres"
    finally:
        kernel.close()


def test_server_down_at_start_spools_instead_of_csv_forever(pg, schema, tmp_path, caplog) -> None:
    from arbframe.testing.plugin_harness import PluginHarness as Kernel  # builds storage the kernel's way

    pg.stop()
    caplog.set_level(logging.WARNING)
    kernel = Kernel(_kernel_config(tmp_path, pg.dsn, schema))
    try:
        started = time.monotonic()
        storage = kernel.load_storage()
        assert time.monotonic() - started < 5
        assert type(storage).__name__ == "PostgresStorage" and storage.spooling
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
        storage.log_spread(spread(1))
        storage.flush()
        assert storage.spool_depth == 1
        pg.start()
        assert wait_for(lambda: storage.active_backend() == "postgres" and storage.spool_depth == 0)
        assert ids_in(pg, schema, "spreads") == ["out000001"]
    finally:
        kernel.close()
        pg.start()


def test_spool_dir_defaults_under_the_data_dir(pg, schema, make_context) -> None:
    from arbframe_storage_pg.storage import PostgresStorage

    context = make_context()
    storage = PostgresStorage({"dsn": pg.dsn, "schema": schema}, context)
    try:
        assert storage.spool_path.parent == Path(context.data_dir) / "pg_spool"
    finally:
        storage.close()


def test_describe_never_shows_the_password(pg, schema, make_context) -> None:
    from arbframe_storage_pg.storage import PostgresStorage

    dsn = pg.create_role(f"d_{schema}", PASSWORD)
    storage = PostgresStorage({"dsn": dsn, "schema": schema}, make_context())
    try:
        assert PASSWORD not in storage.describe()
        assert PASSWORD not in storage.health().message
    finally:
        storage.close()


def test_a_dropped_idle_connection_is_not_an_outage(open_storage, pg, schema, caplog) -> None:
    storage = open_storage(batch_size=1000, flush_interval_seconds=3600)
    storage.log_spread(spread(1))
    storage.flush()
    pid = storage._conn.get_backend_pid()
    pg.execute("SELECT pg_terminate_backend(%s)", (pid,))
    caplog.set_level(logging.INFO, logger="arbframe.storage.postgres")
    storage.log_spread(spread(2))
    storage.flush()
    assert not storage.spooling and storage.spool_depth == 0
    assert sorted(ids_in(pg, schema, "spreads")) == ["out000001", "out000002"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("re-established" in r.getMessage() for r in caplog.records)
