"""A stalled PostgreSQL must not stall the tick (issue 16). Runs in about 30 s on a throwaway PostgreSQL.

A paper run (mock market, BTC and ETH, every spread recorded) ticks at 10 ticks/s on the PostgreSQL storage behind
the kernel's storage writer, exactly as ``arbframe run`` does (snapshot -> engine -> ``storage.flush()``, paced by
the runner's own ``paced``). After ``WARMUP`` seconds another connection takes ``LOCK TABLE spreads IN ACCESS
EXCLUSIVE MODE`` and holds it for ``STALL`` seconds.

Reported: ticks completed during the stall / ticks expected (target >= 0.95), p50/p99/max tick time during the
stall beside the same before it (unloaded) in the same run, then the records in PostgreSQL after the lock is gone
(every spread exactly once).

Usage: ``python benchmarks/bench_storage_stall.py`` (needs the PostgreSQL server binaries, as the tests do).
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

WARMUP = 5.0
STALL = 15.0
AFTER = 5.0
INTERVAL = 0.1


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(pg, tmp: Path) -> int:  # type: ignore[no-untyped-def]
    from arbframe.kernel.config import load_config
    from arbframe.kernel.plugin_host import Kernel
    from arbframe.service.runner import RunOptions, StopSignal, TradingService, paced

    schema = "bench_stall"
    config = load_config([], overrides={
        "mock_mode": True,
        "service": {"interval_seconds": INTERVAL},
        "arbitrage": {"symbols": ["BTC", "ETH"], "spread_log_interval_seconds": 0, "log_spreads": True},
        "storage": {"backend": "postgres", "csv": {"data_dir": str(tmp / "data")},
                    "postgres": {"dsn": pg.dsn, "schema": schema, "flush_interval_seconds": 0.5}},
    }, env={})
    kernel = Kernel(config, mode="paper", mock=True)
    service = TradingService(kernel, mock=True)
    await service.start()
    storage, engine = service.storage, service.engine
    assert storage is not None and engine is not None
    stop = StopSignal()
    ticks: list[tuple[float, float]] = []  # (start offset, duration)
    t0 = time.monotonic()
    window = (WARMUP, WARMUP + STALL)
    locked = threading.Event()

    def hold_lock() -> None:
        conn = pg.connect()
        conn.autocommit = False
        time.sleep(max(0.0, t0 + WARMUP - time.monotonic()))
        with conn.cursor() as cur:
            cur.execute(f'LOCK TABLE "{schema}".spreads IN ACCESS EXCLUSIVE MODE')
        locked.set()
        time.sleep(max(0.0, t0 + WARMUP + STALL - time.monotonic()))
        conn.rollback()
        conn.close()

    holder = threading.Thread(target=hold_lock, daemon=True)
    holder.start()
    opts = RunOptions(duration=WARMUP + STALL + AFTER, interval=INTERVAL)
    async for _ in paced(opts, INTERVAL, stop):
        started = time.monotonic()
        snap = await service.snapshot()
        engine.process(snap)
        storage.flush()
        ticks.append((started - t0, time.monotonic() - started))
    holder.join()
    assert locked.is_set()
    before = [d for s, d in ticks if 1.0 <= s < window[0]]
    during = [d for s, d in ticks if window[0] <= s < window[1]]
    expected = int(STALL / INTERVAL)
    ok = storage.sync(30)
    time.sleep(2)
    deadline = time.monotonic() + 30
    while "spool" in storage.active_backend() or getattr(storage.inner, "spool_depth", 0):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    storage.sync(30)
    await service.close()
    rows = pg.execute(f'SELECT count(*), count(DISTINCT id) FROM "{schema}".spreads')[0]

    def ms(x: float) -> str:
        return f"{x * 1000:.2f} ms"

    print(f"paper run at {1 / INTERVAL:g} ticks/s; LOCK TABLE spreads IN ACCESS EXCLUSIVE MODE held {STALL:g}s")
    print(f"ticks during the stall: {len(during)} / {expected} expected = {len(during) / expected:.3f}"
          f"   (target >= 0.95)")
    print(f"tick time unloaded (before): p50 {ms(statistics.median(before))}  p99 {ms(pct(before, 0.99))}  "
          f"max {ms(max(before))}  n={len(before)}")
    print(f"tick time during the stall:  p50 {ms(statistics.median(during))}  p99 {ms(pct(during, 0.99))}  "
          f"max {ms(max(during))}  n={len(during)}")
    print(f"spreads in PostgreSQL after the stall: {rows[0]} rows, {rows[1]} distinct ids; writer synced={ok}")
    return 0 if len(during) / expected >= 0.95 and rows[0] == rows[1] else 1


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("arbframe.service.runner", "arbframe.trading.engine"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from arbframe.testing.postgres_server import PostgresServer

    with tempfile.TemporaryDirectory() as tmp, PostgresServer() as pg:
        return asyncio.run(run(pg, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())
