"""`arbframe migrate csv-to-postgres`: round trip from the CSV plugin's files, idempotency, options, bad rows."""

from __future__ import annotations

import io
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from arbframe import (
    TABLES,
    Direction,
    ErrorRecord,
    FxRate,
    Order,
    OrderStatus,
    OrderType,
    Side,
    Spread,
    Trade,
    to_row,
)
from arbframe.testing.postgres_server import PostgresServer
from arbframe.testing.storage_kit import closed, sample_position

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 7, 8, 9, 10, 11, 654321, tzinfo=timezone.utc)


def make_records() -> dict[str, list[Any]]:
    """Every table, with awkward values; positions logged open, some closed later (two CSV rows per id)."""
    spreads = [
        Spread(
            id=f"sp{i:05d}", ts=T0 + timedelta(seconds=i), symbol=("BTC", "ETH")[i % 2],
            direction=Direction.KIMCHI if i % 3 else Direction.REVERSE, domestic_exchange="upbit",
            foreign_exchange="binance", qty=Decimal("0.00000001") * (i + 1),
            domestic_price=Decimal("135000000.123456789012345") + i, foreign_price=Decimal("97000.10"),
            fx_rate=Decimal("1350.50"), fx_source="static", fx_age_seconds=Decimal("0.000"),
            premium=Decimal("-0.00000000000000000001") * (i + 1), net_premium=Decimal("1E-30"),
            tether_premium=None if i % 2 else Decimal("0.0010"), usdt_premium=Decimal("-0.5"), simulated=bool(i % 2),
        )
        for i in range(60)
    ]
    positions = [sample_position(f"pos{i:03d}", ts=T0 + timedelta(minutes=i)) for i in range(8)]
    orders = [
        Order(id=f"or{i:04d}", ts=T0, exchange="upbit", symbol="BTC", side=Side.BUY if i % 2 else Side.SELL,
              order_type=OrderType.MARKET, qty=Decimal("0.5"), price=None, status=OrderStatus.FILLED,
              filled_qty=Decimal("0.5"), avg_price=Decimal("135000000"), fee=Decimal("0.0005"),
              fee_currency="KRW", position_id=positions[i % 8].id, client_order_id=f"c,{i}",
              exchange_order_id=None, simulated=True)
        for i in range(12)
    ]
    trades = [
        Trade(id=f"tr{i:04d}", ts=T0, order_id=orders[i].id, exchange="binance", symbol="BTC", side=Side.BUY,
              price=Decimal("97000.12345678"), qty=Decimal("0.5"), fee=Decimal("0.00001"), fee_currency="BTC",
              position_id=None)
        for i in range(12)
    ]
    fx = [FxRate(id=f"fx{i}", ts=T0 + timedelta(hours=i), rate=Decimal("1350.123456789"), source="static")
          for i in range(5)]
    errors = [
        ErrorRecord(id="er1", ts=T0, component="upbit", message='a "quoted", comma', kind="timeout",
                    detail="line one\nline two\ttab \\ backslash"),
        ErrorRecord(id="er2", ts=T0, component="binance", message="한국어 메시지", detail=None),
    ]
    return {"spreads": spreads, "positions": positions, "orders": orders, "trades": trades, "fx_rates": fx,
            "errors": errors}


def write_with_csv_plugin(data_dir: Path) -> dict[str, dict[str, Any]]:
    """Write the records with the CSV storage plugin; returns the latest state of each id per table."""
    csv_plugin = pytest.importorskip("arbframe_storage_csv.storage")
    storage = csv_plugin.CsvStorage({"data_dir": str(data_dir)}, None)
    records = make_records()
    log = {"spreads": storage.log_spread, "orders": storage.log_order, "trades": storage.log_trade,
           "fx_rates": storage.log_fx_rate, "errors": storage.log_error}
    for table, items in records.items():
        for item in items:
            if table == "positions":
                storage.log_position_open(item)
            else:
                log[table](item)
    closes = [closed(p) for p in records["positions"][:5]]
    for p in closes:
        storage.log_position_close(p)
    storage.close()
    expected = {table: {r.id: r for r in items} for table, items in records.items()}
    expected["positions"].update({p.id: p for p in closes})
    return expected


@pytest.fixture
def settings(section: dict[str, Any]):  # type: ignore[no-untyped-def]
    from arbframe_storage_pg.settings import Settings

    return Settings.from_section(section)


def migrate(settings: Any, data_dir: Path, **kwargs: Any) -> tuple[Any, list[str]]:
    from arbframe_storage_pg.migrate import migrate_csv_to_postgres

    reports: list[str] = []
    summary = migrate_csv_to_postgres(settings, data_dir, report=reports.append, **kwargs)
    return summary, reports


def test_round_trip_exact_then_second_run_inserts_nothing(settings, tmp_path, pg, schema, read_table) -> None:
    data = tmp_path / "data"
    expected = write_with_csv_plugin(data)
    summary, reports = migrate(settings, data)
    assert reports == []
    for table in TABLES:
        back = {r.id: r for r in read_table(pg, schema, table)}
        assert back == expected[table], table
        for rid, record in back.items():
            assert to_row(record) == to_row(expected[table][rid])  # same digits, same scale, same instants
    assert summary.get("spreads").inserted == 60 and summary.get("spreads").read == 60
    assert summary.get("positions").read == 13
    assert (summary.get("positions").inserted, summary.get("positions").updated) == (8, 5)
    assert summary.total("skipped") == 0

    again, reports = migrate(settings, data)
    assert reports == []
    assert again.total("inserted") == 0 and again.total("updated") == 0
    assert again.total("present") == again.total("read") == summary.total("read")
    for table in TABLES:
        assert {r.id: r for r in read_table(pg, schema, table)} == expected[table]


def test_tiny_chunks_and_unicode_line_breaks(settings, tmp_path, pg, schema, read_table, monkeypatch) -> None:
    """Chunk boundaries everywhere (inside quoted multi-line fields too) and U+2028 in data change nothing."""
    from arbframe_storage_pg import migrate as module

    monkeypatch.setattr(module, "CHUNK_CHARS", 37)
    data = tmp_path / "data"
    expected = write_with_csv_plugin(data)
    extra = ErrorRecord(id="er9", ts=T0, component="u2028", message="before\u2028after\x85end", detail='"q"\r\nx')
    csv_plugin = pytest.importorskip("arbframe_storage_csv.storage")
    storage = csv_plugin.CsvStorage({"data_dir": str(data)}, None)
    storage.log_error(extra)
    storage.close()
    expected["errors"][extra.id] = extra
    summary, reports = migrate(settings, data, batch_size=3)
    assert reports == []
    for table in TABLES:
        assert {r.id: r for r in read_table(pg, schema, table)} == expected[table], table
    assert summary.get("spreads").inserted == 60


def test_dry_run_writes_nothing(settings, tmp_path, pg, schema) -> None:
    data = tmp_path / "data"
    write_with_csv_plugin(data)
    summary, _ = migrate(settings, data, dry_run=True)
    assert summary.dry_run and summary.get("spreads").inserted == 60
    assert summary.get("positions").inserted == 8 and summary.get("positions").updated == 5
    assert pg.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,))[0][0] == 0
    assert "dry run" in summary.format()
    # after a real run, a dry run sees everything as present
    migrate(settings, data)
    summary, _ = migrate(settings, data, dry_run=True)
    assert summary.total("inserted") == 0 and summary.total("present") == summary.total("read")


def test_dry_run_without_a_database_still_checks_the_files(settings, tmp_path, pg) -> None:
    data = tmp_path / "data"
    write_with_csv_plugin(data)
    with (data / "orders.csv").open("a") as handle:
        handle.write("bad,row\n")
    pg.stop()
    try:
        summary, reports = migrate(settings, data, dry_run=True)
    finally:
        pg.start()
    assert not summary.database_checked and "not checked" in summary.format()
    assert summary.get("spreads").inserted == 60 and summary.get("orders").skipped == 1
    assert len(reports) == 1 and "orders.csv:14: expected 18 fields, found 2" in reports[0]


def test_limit_takes_the_first_rows_of_each_file(settings, tmp_path, pg, schema, read_table) -> None:
    data = tmp_path / "data"
    write_with_csv_plugin(data)
    summary, _ = migrate(settings, data, limit=7)
    assert [s.read for s in summary.tables] == [7, 7, 7, 7, 5, 2]
    assert sorted(r.id for r in read_table(pg, schema, "spreads")) == [f"sp{i:05d}" for i in range(7)]
    # positions: 8 opens come first in the file, so the first 7 rows are 7 opens
    assert len(read_table(pg, schema, "positions")) == 7


def test_bad_rows_are_reported_and_skipped(settings, tmp_path, pg, schema, read_table) -> None:
    data = tmp_path / "data"
    expected = write_with_csv_plugin(data)
    path = data / "spreads.csv"
    lines = path.read_text().splitlines(keepends=True)
    header = lines[0].rstrip("\n").split(",")
    qty = header.index("qty")
    ts = header.index("ts")
    direction = header.index("direction")

    def broken(line: str, index: int, value: str) -> str:
        cells = line.rstrip("\n").split(",")
        cells[index] = value
        return ",".join(cells) + "\n"

    lines[2] = broken(lines[2], qty, "12abc")          # line 3
    lines[4] = broken(lines[4], ts, "2026-01-01T00:00:00")  # line 5: no time zone
    lines[6] = "only,three,fields\n"                     # line 7
    lines[8] = broken(lines[8], direction, "sideways")   # line 9
    lines[10] = broken(lines[10], qty, "NaN")            # line 11
    lines[12] = broken(lines[12], header.index("symbol"), "")  # line 13: required and empty
    path.write_text("".join(lines))
    (data / "fx_rates.csv").unlink()  # a missing file is skipped with a warning
    summary, reports = migrate(settings, data)
    text = "\n".join(reports)
    for number, reason in ((3, "qty"), (5, "time zone"), (7, "expected 18 fields"), (9, "direction"),
                           (11, "finite"), (13, "symbol")):
        assert re.search(rf"spreads\.csv:{number}: .*{reason}", text), (number, text)
    assert len(reports) == 6
    s = summary.get("spreads")
    assert (s.read, s.inserted, s.skipped) == (60, 54, 6)
    assert summary.get("fx_rates").missing and "file not found" in summary.format()
    assert len(read_table(pg, schema, "spreads")) == 54
    assert {r.id: r for r in read_table(pg, schema, "orders")} == expected["orders"]


def test_torn_last_line_and_database_refusals(settings, tmp_path, pg, schema, read_table) -> None:
    data = tmp_path / "data"
    write_with_csv_plugin(data)
    path = data / "errors.csv"
    path.write_text(path.read_text() + "er3,2026-01-01T00:00:00+00:00,comp,half a li")  # crash mid-write
    trades = data / "trades.csv"
    lines = trades.read_text().splitlines(keepends=True)
    cells = lines[1].split(",")
    cells[lines[0].split(",").index("price")] = "1e999999"  # Python accepts it, the range check does not
    lines[1] = ",".join(cells)
    cells = lines[5].split(",")
    cells[lines[0].split(",").index("qty")] = "1.2.3"
    lines[5] = ",".join(cells)
    cells = lines[7].split(",")
    cells[lines[0].split(",").index("symbol")] = "a" * 3000  # a huge text: valid for from_row, refused by nothing
    lines[7] = ",".join(cells)
    cells = lines[8].split(",")
    cells[lines[0].split(",").index("side")] = "BUY"  # upper case: not the enum value; PostgreSQL would take it
    lines[8] = ",".join(cells)
    cells = lines[9].split(",")
    cells[lines[0].split(",").index("ts")] = "2026-13-01T00:00:00+00:00"  # looks right to the fast path only
    lines[9] = ",".join(cells)
    trades.write_text("".join(lines))
    summary, reports = migrate(settings, data, batch_size=4)
    text = "\n".join(reports)
    assert re.search(r"errors\.csv:\d+: torn last line", text)
    assert re.search(r"trades\.csv:2: column 'price': '1e999999': out of range", text), text
    assert re.search(r"trades\.csv:6: column 'qty': '1\.2\.3': expected a decimal number", text), text
    assert re.search(r"trades\.csv:9: column 'side'", text), text
    assert re.search(r"trades\.csv:10: refused by PostgreSQL", text), text
    assert summary.get("trades").rejected == 4 and summary.get("trades").inserted == 8
    assert summary.get("errors").inserted == 2


def test_unreachable_database_is_fatal(settings, tmp_path, pg) -> None:
    from arbframe_storage_pg.db import PostgresUnavailable

    data = tmp_path / "data"
    write_with_csv_plugin(data)
    pg.stop()
    try:
        with pytest.raises(PostgresUnavailable):
            migrate(settings, data)
    finally:
        pg.start()


def test_progress_goes_to_the_stream(settings, tmp_path, monkeypatch) -> None:
    from arbframe_storage_pg import migrate as module

    data = tmp_path / "data"
    write_with_csv_plugin(data)
    monkeypatch.setattr(module, "PROGRESS_EVERY_SECONDS", 0.0)
    lines = (data / "spreads.csv").read_text().splitlines(keepends=True)
    body = lines[1:]
    (data / "spreads.csv").write_text(lines[0] + "".join(
        re.sub(r"^sp(\d+)", lambda m, k=k: f"x{k}sp{m.group(1)}", row) for k in range(300) for row in body))
    stream = io.StringIO()
    migrate(settings, data, progress=stream, tables=["spreads"])
    assert "spreads.csv:" in stream.getvalue() and "rows read" in stream.getvalue()


# ---------------------------------------------------------------------------------------------------- CLI
def write_config(tmp_path: Path, pg: PostgresServer, schema: str, dsn: str | None = None) -> Path:
    config = tmp_path / "pg.yml"
    config.write_text(
        "storage:\n"
        "  backend: postgres\n"
        f"  csv:\n    data_dir: {tmp_path / 'data'}\n"
        f"  postgres:\n    dsn: {dsn or pg.dsn}\n    schema: {schema}\n    connect_timeout_seconds: 2\n"
    )
    return config


def test_cli_round_trip_second_run_dry_run_and_limit(tmp_path, pg, schema, run_arbframe, count_rows) -> None:
    write_with_csv_plugin(tmp_path / "data")
    config = str(write_config(tmp_path, pg, schema))

    dry = run_arbframe("migrate", "csv-to-postgres", "--config", config, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "dry run" in dry.stdout and "would import" in dry.stdout
    assert pg.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,))[0][0] == 0

    limited = run_arbframe("migrate", "csv-to-postgres", "--config", config, "--limit", "10")
    assert limited.returncode == 0, limited.stderr
    assert count_rows(pg, schema, "spreads") == 10

    first = run_arbframe("migrate", "csv-to-postgres", "--config", config)
    assert first.returncode == 0, first.stderr
    row = re.search(r"^spreads\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", first.stdout, re.M)
    assert row and row.groups() == ("60", "50", "0", "10", "0"), first.stdout
    assert count_rows(pg, schema, "spreads") == 60

    second = run_arbframe("migrate", "csv-to-postgres", "--config", config)
    assert second.returncode == 0, second.stderr
    total = re.search(r"^total\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", second.stdout, re.M)
    assert total and total.group(2) == "0" and total.group(3) == "0" and total.group(1) == total.group(4)


def test_cli_bad_rows_exit_zero_fatal_exit_one_no_password(tmp_path, pg, schema, run_arbframe) -> None:
    data = tmp_path / "data"
    write_with_csv_plugin(data)
    with (data / "orders.csv").open("a") as handle:
        handle.write("broken,row\n")
    config = str(write_config(tmp_path, pg, schema))
    result = run_arbframe("migrate", "csv-to-postgres", "--config", config)
    assert result.returncode == 0, result.stderr
    assert re.search(r"orders\.csv:\d+: expected 18 fields, found 2", result.stderr)

    secret = "N0t-Th3-Pa55w0rd"
    role_dsn = pg.create_role(f"m_{schema}", "right-password")
    bad = write_config(tmp_path, pg, schema, dsn=role_dsn.replace("right-password", secret))
    failed = run_arbframe("migrate", "csv-to-postgres", "--config", str(bad))
    assert failed.returncode == 1
    assert "password authentication failed" in failed.stderr
    assert secret not in failed.stderr + failed.stdout


def test_cli_help_lists_options(run_arbframe) -> None:
    result = run_arbframe("migrate", "csv-to-postgres", "--help")
    assert result.returncode == 0
    for option in ("--config", "--dry-run", "--limit"):
        assert option in result.stdout


def _trades(n: int) -> list[Trade]:
    return [Trade(id=f"tq{i:04d}", ts=T0 + timedelta(seconds=i), order_id=f"or{i:04d}", exchange="binance",
                  symbol="BTC", side=Side.BUY, price=Decimal("97000.5"), qty=Decimal("0.01"), fee=Decimal("0.00001"),
                  fee_currency="BTC") for i in range(n)]


def _write_table(path: Path, records: list[Any]) -> list[str]:
    """The table's CSV lines as the CSV storage writes them (header first, LF endings)."""
    import csv as csv_module

    from arbframe import columns

    out = io.StringIO()
    writer = csv_module.writer(out, lineterminator="\n")
    writer.writerow(columns(type(records[0])))
    for r in records:
        writer.writerow(to_row(r))
    path.write_text(out.getvalue(), encoding="utf-8")
    return out.getvalue().splitlines(keepends=True)


def test_a_stray_quote_costs_its_own_row_only(settings, tmp_path, pg, schema, read_table) -> None:
    data = tmp_path / "data"
    data.mkdir()
    lines = _write_table(data / "trades.csv", _trades(36))
    lines[4] = lines[4].replace(",BTC,", ',"BTC,', 1)  # line 5: a quote that never closes
    lines[20] = lines[20].replace(",binance,", ',bin"ance,', 1)  # line 21: a literal quote inside a field
    (data / "trades.csv").write_text("".join(lines), encoding="utf-8")
    summary, reports = migrate(settings, data, tables=["trades"])
    s = summary.get("trades")
    assert (s.read, s.inserted, s.rejected) == (36, 35, 1), reports
    assert len(reports) == 1 and re.search(r"trades\.csv:5: unbalanced quote", reports[0]), reports
    stored = {t.id: t for t in read_table(pg, schema, "trades")}
    assert "tq0003" not in stored and len(stored) == 35
    assert stored["tq0019"].exchange == 'bin"ance'


def test_invalid_utf8_is_reported_and_nul_is_stored_as_replacement(settings, tmp_path, pg, schema,
                                                                    read_table) -> None:
    data = tmp_path / "data"
    data.mkdir()
    errors = [ErrorRecord(id=f"e{i}", ts=T0, component="upbit", message=f"message {i}") for i in range(5)]
    lines = _write_table(data / "errors.csv", errors)
    raw = "".join(lines).encode()
    raw = raw.replace(b"message 1", b"mess\xffage 1").replace(b"message 3", b"mess\x00age 3")
    (data / "errors.csv").write_bytes(raw)
    summary, reports = migrate(settings, data, tables=["errors"])
    s = summary.get("errors")
    assert (s.read, s.inserted, s.rejected) == (5, 4, 1)
    assert len(reports) == 1 and re.search(r"errors\.csv:3: invalid UTF-8 \(byte 0xff", reports[0]), reports
    stored = {e.id: e for e in read_table(pg, schema, "errors")}
    assert "e1" not in stored and stored["e3"].message == "mess\ufffdage 3"  # as docs/DB_SCHEMA.md says


def test_numbers_out_of_range_are_rejected_with_their_line(settings, tmp_path, pg, schema, read_table) -> None:
    data = tmp_path / "data"
    data.mkdir()
    lines = _write_table(data / "trades.csv", _trades(6))
    lines[2] = lines[2].replace(",97000.5,", ",1e400,", 1)            # line 3
    lines[4] = lines[4].replace(",97000.5,", "," + "9" * 5000 + ",", 1)  # line 5
    lines[5] = lines[5].replace(",0.01,", ",0." + "1" * 41 + ",", 1)     # line 6
    (data / "trades.csv").write_text("".join(lines), encoding="utf-8")
    summary, reports = migrate(settings, data, tables=["trades"])
    text = "\n".join(reports)
    for number, column in ((3, "price"), (5, "price"), (6, "qty")):
        assert re.search(rf"trades\.csv:{number}: column '{column}': .*out of range", text), text
    assert all(len(r) < 400 for r in reports), "a 5,000-digit value is not echoed whole"
    assert summary.get("trades").inserted == 3 and summary.get("trades").rejected == 3


def test_conflicting_ids_are_counted_and_listed(settings, tmp_path, pg, schema, read_table) -> None:
    data = tmp_path / "data"
    data.mkdir()
    trades = _trades(8)
    _write_table(data / "trades.csv", trades)
    first, _ = migrate(settings, data, tables=["trades"])
    assert first.get("trades").inserted == 8
    changed = list(trades)
    changed[2] = Trade(**{**{f: getattr(trades[2], f) for f in ("id", "ts", "order_id", "exchange", "symbol",
                                                                 "side", "price", "qty", "fee", "fee_currency")},
                          "price": Decimal("1.5")})
    extra = _trades(10)[8:]  # two new rows
    _write_table(data / "trades.csv", [*changed, *extra, changed[5]])  # one duplicate of an identical row
    summary, reports = migrate(settings, data, tables=["trades"])
    assert reports == []
    s = summary.get("trades")
    assert (s.read, s.inserted, s.present, s.conflicting, s.rejected) == (11, 2, 8, 1, 0)
    assert s.conflicts == ["tq0002"]
    text = summary.format()
    assert "conflicting" in text and "id tq0002 is stored with other content" in text
    stored = {t.id: t for t in read_table(pg, schema, "trades")}
    assert stored["tq0002"].price == Decimal("97000.5")  # the stored row is kept
