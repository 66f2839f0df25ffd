"""Throughput of the PostgreSQL storage plugin (issue: PostgreSQL storage plugin).

All on ONE throwaway PostgreSQL server (``arbframe.testing.postgres_server``), in one run, against tables created
with the plugin's own DDL (same columns, primary key and indexes), so the baselines pay the same index costs:

(a) write path: ``PostgresStorage.log_spread`` for N records + ``close()`` (encode, buffer, background COPY into
    a staging table, ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``, commit per batch).
(b) ``migrate csv-to-postgres`` of a 1,000,000-row ``spreads.csv`` (in the CSV plugin's format) into empty
    tables: parse + validate every row, batch transactions.
(c) the same migration again, every row already present (inserts nothing).

Baselines, measured in the same run on the same server:
- raw COPY: ``COPY ... FROM STDIN`` of the same rows already serialised (text format for (a), the CSV file
  itself for (b)/(c)) straight into an empty table, one transaction: the server's bulk-load speed, no checks,
  not idempotent.
- naive per-row: one ``INSERT`` + ``COMMIT`` per row (``ON CONFLICT DO NOTHING`` for (c), where every row
  exists), on a sample, its rate extrapolated.

Targets: (a) and (b) >= 50 % of raw COPY, (c) >= 40 % of raw COPY.

Run: ``python benchmarks/bench_postgres.py [--rows 1000000] [--write-rows 200000]`` (about 1-2 minutes).
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from arbframe import Direction, Spread, columns
from arbframe.testing.postgres_server import PostgresServer, missing_reason

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
PER_ROW_SAMPLE = 1000


_PRICES = [Decimal(135_000_000 + i * 7) / 100 for i in range(997)]
_FOREIGN = [Decimal(9_700_000 + i * 3) / 100 for i in range(991)]
_PREMIUMS = [Decimal(i) / Decimal(1_000_000) for i in range(983)]


def make_spreads(n: int, prefix: str, start: int = 0) -> list[Spread]:
    return [
        Spread(
            id=f"{prefix}{i:012d}", ts=T0 + timedelta(microseconds=i * 1000), symbol=("BTC", "ETH", "XRP")[i % 3],
            direction=Direction.KIMCHI if i & 1 else Direction.REVERSE, domestic_exchange="upbit",
            foreign_exchange="binance", qty=Decimal("0.01"), domestic_price=_PRICES[i % 997],
            foreign_price=_FOREIGN[i % 991], fx_rate=Decimal("1350.25"), fx_source="static",
            fx_age_seconds=Decimal("1.5"), premium=_PREMIUMS[i % 983], net_premium=_PREMIUMS[(i + 7) % 983],
            tether_premium=None if i % 5 else Decimal("0.0012"), usdt_premium=Decimal("-0.0004"),
            simulated=True,
        )
        for i in range(start, start + n)
    ]


def csv_lines(prefix: str, start: int, n: int) -> str:
    """The CSV rows of ``make_spreads(n, prefix, start)``, spelt as the CSV plugin writes them, made fast."""
    prices = [format(d, "f") for d in _PRICES]
    foreign = [format(d, "f") for d in _FOREIGN]
    premiums = [format(d, "f") for d in _PREMIUMS]
    out = []
    for i in range(start, start + n):
        ts = (T0 + timedelta(microseconds=i * 1000)).isoformat()
        out.append(
            f"{prefix}{i:012d},{ts},{('BTC', 'ETH', 'XRP')[i % 3]},{'kimchi' if i & 1 else 'reverse'},upbit,"
            f"binance,0.01,{prices[i % 997]},{foreign[i % 991]},1350.25,static,1.5,{premiums[i % 983]},"
            f"{premiums[(i + 7) % 983]},{'' if i % 5 else '0.0012'},-0.0004,true\r\n"
        )
    return "".join(out)


def write_spreads_csv(path: Path, n: int) -> None:
    """A ``spreads.csv`` of ``n`` rows in the CSV plugin's format (header + ``to_row`` values via ``csv``)."""
    import csv

    from arbframe import to_row

    buf = io.StringIO()
    csv.writer(buf).writerows([list(columns(Spread))] + [to_row(s) for s in make_spreads(500, "m", 1000)])
    header = buf.getvalue().split("\r\n", 1)[0] + "\r\n"
    assert header + csv_lines("m", 1000, 500) == buf.getvalue(), "fast CSV spelling differs from the plugin's"
    with path.open("w", newline="", encoding="utf-8") as handle:
        handle.write(header)
        for start in range(0, n, 100_000):
            handle.write(csv_lines("m", start, min(100_000, n - start)))


# ------------------------------------------------------------------------------------------------ helpers
def fresh_tables(pg: PostgresServer, schema: str) -> None:
    from arbframe_storage_pg.db import connect, ensure_schema
    from arbframe_storage_pg.settings import Settings
    from psycopg2 import sql

    pg.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    conn = connect(Settings.from_section({"dsn": pg.dsn, "schema": schema}))
    try:
        ensure_schema(conn, Settings.from_section({"dsn": pg.dsn, "schema": schema}))
    finally:
        conn.close()
    pg.execute("CHECKPOINT")


def raw_copy(pg: PostgresServer, schema: str, source: Any, *, csv_header: bool) -> float:
    """Seconds to COPY ``source`` (a file-like) into <schema>.spreads in one transaction."""
    from psycopg2 import sql

    conn = pg.connect()
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            options = sql.SQL(" WITH (FORMAT csv, HEADER true)") if csv_header else sql.SQL("")
            stmt = sql.SQL("COPY {} FROM STDIN{}").format(sql.Identifier(schema, "spreads"), options)
            started = time.perf_counter()
            cur.copy_expert(stmt, source, size=1 << 20)
            conn.commit()
            return time.perf_counter() - started
    finally:
        conn.close()


def per_row_inserts(pg: PostgresServer, schema: str, spreads: list[Spread], *, on_conflict: bool) -> float:
    """Rows/s of one INSERT + COMMIT per row."""
    from psycopg2 import sql

    from arbframe import to_row

    conn = pg.connect()
    conn.autocommit = False
    names = columns(Spread)
    stmt = sql.SQL("INSERT INTO {} ({}) VALUES ({}){}").format(
        sql.Identifier(schema, "spreads"), sql.SQL(", ").join(map(sql.Identifier, names)),
        sql.SQL(", ").join(sql.Placeholder() * len(names)),
        sql.SQL(" ON CONFLICT DO NOTHING") if on_conflict else sql.SQL(""),
    )
    values = [[v if v != "" else None for v in to_row(s)] for s in spreads]
    try:
        with conn.cursor() as cur:
            started = time.perf_counter()
            for row in values:
                cur.execute(stmt, row)
                conn.commit()
            elapsed = time.perf_counter() - started
    finally:
        conn.close()
    return len(spreads) / elapsed


def count(pg: PostgresServer, schema: str) -> int:
    from psycopg2 import sql

    return int(pg.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "spreads")))[0][0])


# ----------------------------------------------------------------------------------------------- scenarios
def bench_write_path(pg: PostgresServer, n: int, tmp: Path, rounds: int) -> dict[str, float]:
    """Raw COPY and the plugin alternately, ``rounds`` times on fresh tables; the median of each."""
    from arbframe_storage_pg.storage import PostgresStorage
    from arbframe_storage_pg.tables import ENCODERS
    from prometheus_client import CollectorRegistry

    from arbframe import PluginContext

    records = make_spreads(n, "w")
    encode = ENCODERS["spreads"]
    text = "".join(encode(s) for s in records)

    fresh_tables(pg, "bench_row_a")
    per_row = per_row_inserts(pg, "bench_row_a", records[:PER_ROW_SAMPLE], on_conflict=False)

    raws, plugins = [], []
    for k in range(rounds):
        fresh_tables(pg, "bench_raw_a")
        raws.append(n / raw_copy(pg, "bench_raw_a", io.StringIO(text), csv_header=False))

        fresh_tables(pg, "bench_plugin_a")
        context = PluginContext(config={}, pm=None, registry=CollectorRegistry(), data_dir=tmp)  # type: ignore[arg-type]
        storage = PostgresStorage({"dsn": pg.dsn, "schema": "bench_plugin_a", "batch_size": 5000,
                                   "flush_interval_seconds": 60, "spool_dir": str(tmp / f"spool{k}")}, context)
        log = storage.log_spread
        started = time.perf_counter()
        for record in records:
            log(record)
        storage.close()
        plugins.append(n / (time.perf_counter() - started))
        assert count(pg, "bench_plugin_a") == n
        print(f"  round {k + 1}: raw COPY {raws[-1]:,.0f} rows/s, write path {plugins[-1]:,.0f} rows/s",
              file=sys.stderr)
    return {"plugin": statistics.median(plugins), "raw": statistics.median(raws), "per_row": per_row}


def bench_migration(pg: PostgresServer, n: int, tmp: Path) -> tuple[dict[str, float], dict[str, float]]:
    """Raw COPY of the CSV file before AND after the two migrations (its mean is the baseline), so load
    drifting during the minute this takes hits baseline and plugin alike."""
    from arbframe_storage_pg.migrate import migrate_csv_to_postgres
    from arbframe_storage_pg.settings import Settings

    data = tmp / "data"
    data.mkdir()
    path = data / "spreads.csv"
    started = time.perf_counter()
    write_spreads_csv(path, n)
    print(f"  generated {n:,} CSV rows ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - started:.1f} s",
          file=sys.stderr)

    def raw() -> float:
        fresh_tables(pg, "bench_raw_b")
        with path.open("r", encoding="utf-8") as handle:
            rate = n / raw_copy(pg, "bench_raw_b", handle, csv_header=True)
        pg.execute("DROP SCHEMA bench_raw_b CASCADE")
        print(f"  raw COPY of the CSV: {rate:,.0f} rows/s", file=sys.stderr)
        return rate

    sample = make_spreads(PER_ROW_SAMPLE, "r")
    fresh_tables(pg, "bench_row_b")
    per_row_first = per_row_inserts(pg, "bench_row_b", sample, on_conflict=False)
    per_row_again = per_row_inserts(pg, "bench_row_b", sample, on_conflict=True)

    raw_before = raw()
    fresh_tables(pg, "bench_plugin_b")
    settings = Settings.from_section({"dsn": pg.dsn, "schema": "bench_plugin_b"}, tmp)
    reports: list[str] = []
    first = migrate_csv_to_postgres(settings, data, tables=["spreads"], report=reports.append)
    assert not reports, reports[:5]
    assert first.get("spreads").inserted == n, first.format()
    print(f"  migration, 1st run: {n / first.seconds:,.0f} rows/s", file=sys.stderr)
    again = migrate_csv_to_postgres(settings, data, tables=["spreads"], report=reports.append)
    assert again.get("spreads").inserted == 0 and again.get("spreads").present == n, again.format()
    print(f"  migration, re-run: {n / again.seconds:,.0f} rows/s", file=sys.stderr)
    baseline = (raw_before + raw()) / 2
    return (
        {"plugin": n / first.seconds, "raw": baseline, "per_row": per_row_first},
        {"plugin": n / again.seconds, "raw": baseline, "per_row": per_row_again},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="CSV rows migrated in (b) and (c)")
    parser.add_argument("--write-rows", type=int, default=100_000, help="records written in (a), per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating raw/plugin rounds of (a)")
    args = parser.parse_args(argv)
    reason = missing_reason()
    if reason:
        print(f"skipped: {reason}")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    started = time.perf_counter()
    try:
        with PostgresServer(settings={"max_wal_size": "4GB", "checkpoint_timeout": "30min"}) as pg:
            print(f"PostgreSQL throwaway server on port {pg.port}", file=sys.stderr)
            print(f"(a) write path, {args.write_rows:,} records x {args.rounds} rounds ...", file=sys.stderr)
            a = bench_write_path(pg, args.write_rows, tmp, args.rounds)
            print(f"(b)/(c) migration of {args.rows:,} CSV rows, twice ...", file=sys.stderr)
            b, c = bench_migration(pg, args.rows, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = [
        ("(a) write path (PostgresStorage.log_spread + close)", a, 0.50),
        ("(b) migrate csv-to-postgres, 1st run (all new)", b, 0.50),
        ("(c) migrate csv-to-postgres, re-run (all present)", c, 0.40),
    ]
    print()
    print(f"{'scenario':<52} {'rows/s':>9} {'raw COPY':>9} {'per-row':>8} {'vs COPY':>8} {'vs row':>7} "
          f"{'target':>7}  ok")
    ok_all = True
    for label, r, target in rows:
        ratio = r["plugin"] / r["raw"]
        ok = ratio >= target
        ok_all &= ok
        print(f"{label:<52} {r['plugin']:>9,.0f} {r['raw']:>9,.0f} {r['per_row']:>8,.0f} {ratio:>7.0%} "
              f"{r['plugin'] / r['per_row']:>6.0f}x {target:>6.0%}  {'yes' if ok else 'NO'}")
    print(f"\nraw COPY: COPY FROM STDIN of the same rows pre-serialised (text for (a), the CSV file for (b)/(c)) "
          f"into an empty table with the same DDL, one transaction ((a): median of {args.rounds} rounds "
          f"alternating with the plugin; (b)/(c): mean of one run before and one after the migrations)."
          f"\nper-row: one INSERT + COMMIT per row on a "
          f"{PER_ROW_SAMPLE:,}-row sample ((c): ON CONFLICT DO NOTHING, every row present), rate extrapolated."
          f"\ntotal bench time {time.perf_counter() - started:.0f} s")
    print(f"targets: {'all met' if ok_all else 'NOT all met'} (the exit status stays 0: figures from a shared "
          "machine vary; read the table)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
