"""PostgresStorage on the throwaway server: schema, write path, positions, metrics, quoting, TimescaleDB."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from arbframe import (
    TABLES,
    Direction,
    ErrorRecord,
    HealthStatus,
    PositionStatus,
    Spread,
    columns,
    to_row,
)
from arbframe.testing.postgres_server import PostgresServer
from arbframe.testing.storage_kit import closed, sample_position, sample_records

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=timezone.utc)


def spread(i: int, **changes: Any) -> Spread:
    base = Spread(
        id=f"s{i:08d}", ts=T0 + timedelta(seconds=i), symbol=("BTC", "ETH", "XRP")[i % 3],
        direction=Direction.KIMCHI if i % 2 else Direction.REVERSE, domestic_exchange="upbit",
        foreign_exchange="binance", qty=Decimal("0.01"), domestic_price=Decimal(135000000 + i),
        foreign_price=Decimal("97000.01"), fx_rate=Decimal("1350.5"), fx_source="static",
        fx_age_seconds=Decimal("1.5"), premium=Decimal("0.0305123456789"), net_premium=Decimal("0.0275"),
        tether_premium=None, usdt_premium=Decimal("-0.001"), simulated=True,
    )
    return dataclasses.replace(base, **changes)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll a condition that another thread (the flusher) makes true; bounded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


# --------------------------------------------------------------------------------------------------- schema
def test_tables_columns_and_indexes(open_storage, pg: PostgresServer, schema: str) -> None:
    open_storage().close()
    rows = pg.execute(
        "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_schema = %s ORDER BY table_name, ordinal_position", (schema,),
    )
    found: dict[str, list[tuple[str, str, str]]] = {}
    for table, column, data_type, nullable in rows:
        found.setdefault(table, []).append((column, data_type, nullable))
    assert set(found) == set(TABLES)
    expected_types = {"numeric": "numeric", "timestamptz": "timestamp with time zone", "boolean": "boolean",
                      "text": "text"}
    from arbframe_storage_pg.tables import SPECS

    for table, cls in TABLES.items():
        assert [c for c, _, _ in found[table]] == list(columns(cls)), table
        for (name, data_type, nullable), col in zip(found[table], SPECS[table].columns, strict=True):
            assert data_type == expected_types[col.kind], (table, name)
            assert (nullable == "YES") == col.nullable, (table, name)
    assert found["spreads"][columns(Spread).index("premium")][1] == "numeric"
    indexes = {row[0] for row in pg.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s", (schema,))}
    for wanted in ("spreads_ts_idx", "spreads_symbol_ts_idx", "orders_position_id_idx", "trades_position_id_idx",
                   "positions_open_idx", "fx_rates_ts_idx", "errors_ts_idx", "spreads_pkey"):
        assert wanted in indexes


def test_an_older_positions_table_gets_the_new_columns_idempotently(open_storage, pg, schema, read_table) -> None:
    """A positions table made before the accounting columns existed gains them (NULL in its rows) when the storage
    opens; opening again changes nothing; new rows carry the columns."""
    from arbframe import Position

    old = [c for c in columns(Position) if c not in ("balance_changes", "coin_residue", "exit_coin_mark_krw")]
    assert len(old) == len(columns(Position)) - 3
    open_storage().close()  # every table as today ...
    for name in ("balance_changes", "coin_residue", "exit_coin_mark_krw"):  # ... then as an older version had it
        pg.execute(f'ALTER TABLE "{schema}".positions DROP COLUMN {name}')
    position = sample_position()
    values = to_row(position)[: len(old)]
    placeholders = ", ".join(["%s"] * len(old))
    pg.execute(f'INSERT INTO "{schema}".positions ({", ".join(old)}) VALUES ({placeholders})',
               tuple(None if v == "" and c != "instance_id" else v for c, v in zip(old, values, strict=True)))
    for _ in range(2):  # the migration runs on every start: the second time it does nothing
        open_storage().close()
        cols = [r[0] for r in pg.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                                         "AND table_name = 'positions' ORDER BY ordinal_position", (schema,))]
        assert cols == list(columns(Position))
    rows = read_table(pg, schema, "positions")
    assert rows == [position] and rows[0].balance_changes is None
    storage = open_storage()
    done = dataclasses.replace(closed(position), balance_changes="binance:BTC=0.0001 upbit:KRW=5",
                               coin_residue=Decimal("0.0001"), exit_coin_mark_krw=Decimal("135000000.5"))
    storage.log_position_close(done)
    storage.close()
    assert read_table(pg, schema, "positions") == [done]


def test_encoder_spells_rows_like_to_row() -> None:
    from arbframe_storage_pg.tables import ENCODERS, SPECS, copy_line_values, row_to_copy_line

    records = [r for items in sample_records().values() for r in items]
    records.append(ErrorRecord(id="e1", ts=T0, component="x", message="tab\there \\ back\r\nnul\x00 \u2028 é"))
    records.append(spread(1, qty=Decimal("1E+3"), premium=Decimal("-0.000000012"), usdt_premium=None))
    seoul = T0.astimezone(timezone(timedelta(hours=9)))
    records += [spread(2, ts=seoul), spread(3, ts=seoul), spread(4, ts=T0), spread(5, ts=seoul)]
    for record in records:
        table = next(t for t, c in TABLES.items() if isinstance(record, c))
        line = ENCODERS[table](record)
        assert line == row_to_copy_line(table, to_row(record).copy()) or "\x00" in str(record)
        values = copy_line_values(line)
        expected = [None if v == "" and c.nullable else v.replace("\x00", "\ufffd")
                    for v, c in zip(to_row(record), SPECS[table].columns, strict=True)]
        assert values == expected


# ----------------------------------------------------------------------------------------------- write path
def test_every_record_exact_and_aware(open_storage, pg, schema, read_table) -> None:
    storage = open_storage()
    records = sample_records()
    weird = ErrorRecord(id="weird", ts=T0, component="c", message="tab\t nl\n cr\r bs\\ \u2028 한국어",
                        detail=None)
    storage.log_error(weird)
    for s in records["spreads"]:
        storage.log_spread(s)
    for o in records["orders"]:
        storage.log_order(o)
    for t in records["trades"]:
        storage.log_trade(t)
    for f in records["fx_rates"]:
        storage.log_fx_rate(f)
    for p in records["positions"]:
        storage.log_position_open(p)
    for e in records["errors"]:
        storage.log_error(e)
    storage.flush()
    for table, items in records.items():
        back = {r.id: r for r in read_table(pg, schema, table)}
        for item in items:
            assert back[item.id] == item
            assert to_row(back[item.id]) == to_row(item)  # decimals keep their exact digits and scale
    assert {r.id: r for r in read_table(pg, schema, "errors")}["weird"] == weird


def test_flush_by_size_runs_in_the_background(open_storage, pg, schema, count_rows) -> None:
    storage = open_storage(batch_size=10, flush_interval_seconds=3600)
    for i in range(25):
        storage.log_spread(spread(i))
    assert wait_for(lambda: count_rows(pg, schema, "spreads") >= 20)
    storage.flush()
    assert count_rows(pg, schema, "spreads") == 25


def test_flush_by_time(open_storage, pg, schema, count_rows) -> None:
    storage = open_storage(batch_size=100000, flush_interval_seconds=0.05)
    storage.log_spread(spread(1))
    assert wait_for(lambda: count_rows(pg, schema, "spreads") == 1)


def test_close_flushes_and_shutdown_hook_wakes_the_flusher(open_storage, pg, schema, count_rows) -> None:
    import time

    storage = open_storage(batch_size=100000, flush_interval_seconds=3600)
    storage.log_spread(spread(1))
    started = time.monotonic()
    storage.arbframe_shutdown(storage.context)  # never waits: the flusher thread writes
    assert time.monotonic() - started < 0.05
    deadline = time.monotonic() + 10
    while count_rows(pg, schema, "spreads") != 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert count_rows(pg, schema, "spreads") == 1
    storage.log_spread(spread(2))
    storage.close()
    storage.close()
    assert count_rows(pg, schema, "spreads") == 2
    with pytest.raises(RuntimeError):
        storage.log_spread(spread(3))


def test_one_flush_is_one_transaction(open_storage, pg, schema, count_rows) -> None:
    """A batch with a row PostgreSQL refuses: the good rows land, the bad one is isolated and kept aside."""
    storage = open_storage(batch_size=100000, flush_interval_seconds=3600)
    storage.log_spread(spread(1))
    storage.log_spread(spread(2))
    storage.log_spread(spread(3))
    # a value PostgreSQL refuses although the encoder passed it: a NaN-free decimal with an absurd exponent
    storage._append("spreads", storage_line_with(spread(4), "qty", "1e999999"))
    storage.flush()
    assert count_rows(pg, schema, "spreads") == 3
    rejected = storage.settings.rejects_file.read_text()
    assert "s00000004" in rejected
    assert storage.context.registry.get_sample_value(
        "arbframe_storage_write_errors_total", {"backend": "postgres"}) >= 1


def storage_line_with(record: Any, column: str, text: str) -> str:
    from arbframe_storage_pg.tables import ENCODERS, SPECS

    values = ENCODERS["spreads"](record).rstrip("\n").split("\t")
    values[SPECS["spreads"].names.index(column)] = text
    return "\t".join(values) + "\n"


def test_positions_open_then_close_and_old_state_never_wins(open_storage, pg, schema, read_table) -> None:
    storage = open_storage()
    a, b = sample_position("pos-a"), sample_position("pos-b")
    storage.log_position_open(a)
    storage.log_position_open(b)
    storage.flush()
    storage.log_position_close(closed(a))
    storage.flush()
    # a replay of the open state (spool, migration, a restart) must not reopen it
    storage.log_position_open(a)
    storage.flush()
    rows = {p.id: p for p in read_table(pg, schema, "positions")}
    assert len(rows) == 2
    assert rows["pos-a"] == closed(a) and rows["pos-a"].status is PositionStatus.CLOSED
    assert storage.load_positions() == [b]
    # open and close in the same batch (and in reverse order) -> closed
    c = sample_position("pos-c")
    storage.log_position_close(closed(c))
    storage.log_position_open(c)
    assert [p.id for p in storage.load_positions()] == ["pos-b"]
    assert {p.id: p for p in read_table(pg, schema, "positions")}["pos-c"] == closed(c)


def test_load_positions_flushes_first(open_storage) -> None:
    storage = open_storage(batch_size=100000, flush_interval_seconds=3600)
    p = sample_position("pos-flush")
    storage.log_position_open(p)
    assert storage.load_positions() == [p]


def test_metrics(open_storage) -> None:
    storage = open_storage(batch_size=100000, flush_interval_seconds=3600)
    for i in range(7):
        storage.log_spread(spread(i))
    storage.log_fx_rate(sample_records()["fx_rates"][0])
    storage.flush()
    reg = storage.context.registry
    assert reg.get_sample_value("arbframe_storage_rows_written_total",
                                {"backend": "postgres", "table": "spreads"}) == 7
    assert reg.get_sample_value("arbframe_storage_rows_written_total",
                                {"backend": "postgres", "table": "fx_rates"}) == 1
    assert reg.get_sample_value("arbframe_storage_flush_duration_seconds_count", {"backend": "postgres"}) >= 1
    assert reg.get_sample_value("arbframe_storage_spool_depth", {"backend": "postgres"}) == 0


def test_describe_and_health_ok(open_storage, pg: PostgresServer) -> None:
    storage = open_storage()
    assert storage.describe().startswith("PostgresStorage(127.0.0.1:")
    result = storage.health()
    assert result.status is HealthStatus.OK
    assert result.message == f"Connected to {pg.endpoint}"
    checks = storage.arbframe_health_checks({}, storage.context)
    assert [c.component for c in checks] == ["postgres"] and checks[0].timeout_seconds <= 10


# ------------------------------------------------------------------------------------------------- quoting
@pytest.mark.parametrize("hostile", [
    'evil"; DROP TABLE victim; --',
    "Mixed Case With Spaces",
    "x'); DELETE FROM victim; --",
    "스키마-ünïcode",
])
def test_hostile_schema_names_are_quoted(hostile, section, make_context, pg, read_table, count_rows) -> None:
    from arbframe_storage_pg.storage import PostgresStorage

    pg.execute("CREATE TABLE IF NOT EXISTS public.victim (x int)")
    pg.execute("INSERT INTO public.victim VALUES (1)")
    storage = PostgresStorage({**section, "schema": hostile}, make_context())
    try:
        storage.log_spread(spread(1))
        storage.log_position_open(sample_position("hp"))
        assert [p.id for p in storage.load_positions()] == ["hp"]
    finally:
        storage.close()
    assert pg.execute("SELECT nspname FROM pg_namespace WHERE nspname = %s", (hostile,)) == [(hostile,)]
    assert [s.id for s in read_table(pg, hostile, "spreads")] == ["s00000001"]
    assert pg.execute("SELECT count(*) FROM public.victim")[0][0] >= 1


@pytest.mark.parametrize("bad", ["a" * 64, "nul\x00name", 42])
def test_unusable_schema_names_are_refused_clearly(bad, section, make_context) -> None:
    from arbframe_storage_pg.db import PostgresUnavailable
    from arbframe_storage_pg.storage import PostgresStorage

    with pytest.raises(PostgresUnavailable, match=r"storage\.postgres\.schema"):
        PostgresStorage({**section, "schema": bad}, make_context())


# ---------------------------------------------------------------------------------------------- timescale
def test_timescale_unavailable_one_warning_plain_tables(section, make_context, pg, schema, caplog,
                                                          monkeypatch) -> None:
    from arbframe_storage_pg import db
    from arbframe_storage_pg.storage import PostgresStorage

    monkeypatch.setattr(db, "_TIMESCALE_WARNED", False)
    caplog.set_level(logging.WARNING, logger="arbframe.storage.postgres")
    for _ in range(2):
        storage = PostgresStorage({**section, "enable_timescale": True}, make_context())
        assert storage.hypertables is False
        storage.log_spread(spread(1))
        storage.close()
    warnings = [r for r in caplog.records if "TimescaleDB" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert "plain tables" in warnings[0].getMessage()
    pkey = pg.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'spreads_pkey' "
        "AND connamespace = %s::regnamespace", (f'"{schema}"',),
    )
    assert pkey == [("PRIMARY KEY (id)",)]


def test_hypertable_ddl_puts_time_in_the_primary_key(pg) -> None:
    """The hypertable path (not runnable here: no timescaledb package) creates PKs TimescaleDB accepts."""
    from arbframe_storage_pg.tables import HYPERTABLES, create_table_sql

    conn = pg.connect()
    try:
        for table in HYPERTABLES:
            text = create_table_sql("s", table, timescale=True).as_string(conn)
            assert 'PRIMARY KEY ("id", "ts")' in text
        assert 'PRIMARY KEY ("id")' in create_table_sql("s", "positions", timescale=True).as_string(conn)
    finally:
        conn.close()


def test_tables_of_an_older_version_get_instance_id_idempotently(open_storage, pg, schema, read_table) -> None:
    """Tables made before ``instance_id`` existed: the next start adds the column (old rows get ''), a second
    start changes nothing, and new rows carry their instance id."""
    from dataclasses import replace

    from psycopg2 import sql

    from arbframe.testing.storage_kit import sample_position

    first = open_storage()
    first.log_position_open(sample_position("old"))
    first.close()
    for table in TABLES:
        pg.execute(sql.SQL("ALTER TABLE {} DROP COLUMN instance_id").format(sql.Identifier(schema, table)))
    second = open_storage()
    second.log_position_open(replace(sample_position("new"), instance_id="bot-a"))
    second.close()
    open_storage().close()  # again: nothing left to add
    back = {p.id: p.instance_id for p in read_table(pg, schema, "positions")}
    assert back == {"old": "", "new": "bot-a"}
    count = pg.execute(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = %s AND column_name = 'instance_id'",
        (schema,),
    )[0][0]
    assert count == len(TABLES)
