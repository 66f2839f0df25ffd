"""Cost of the cache per tick, and the wall time of ``arbframe health`` (issue: Redis cache and health).

1. Per tick: ``RedisCache.write_tick`` (FX rate + heartbeat + one spread snapshot per symbol, one pipeline)
   against raw redis-py pipelined SETs of the same keys and values, on the same throwaway redis-server in the
   same run. Target: within 1.5x the raw pipeline. The in-memory cache is shown for reference.
2. ``arbframe health`` wall time (a fresh process, as a person or a container healthcheck runs it) with every
   server up and with every server down (nothing listening on their ports). Target: down < 3 s.
   Servers: redis-server always; PostgreSQL too when the PostgreSQL plugin and binaries are installed.

Run: ``python benchmarks/bench_cache.py`` (about 20 s).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from arbframe import FxRate
from arbframe.builtins.memory_cache import MemoryCache
from arbframe.testing.redis_server import RedisServer, free_port

SYMBOLS = ("BTC", "ETH", "XRP", "SOL")
TICKS = 500
ROUNDS = 15
HEALTH_RUNS = 5


def _tick_args():
    ts = datetime.now(timezone.utc)
    fx = FxRate(id="bench", ts=ts, rate=Decimal("1350.0"), source="static")
    spreads = {
        s: {"symbol": s, "direction": "kimchi", "premium": Decimal("0.0312"), "net_premium": Decimal("0.0262"),
            "domestic_price": Decimal("95000000"), "foreign_price": Decimal("68000.5"), "fx_rate": Decimal("1350.0")}
        for s in SYMBOLS
    }
    return {"fx": (fx, 60), "heartbeat": ("bot_service", ts, 60), "spreads": spreads}


def interleaved_us(fns: list) -> list[float]:
    """Per-call cost of each fn in microseconds: ROUNDS rounds, every fn measured once per round in rotating
    order (so load from other processes hits all of them alike); the median round of each."""
    for fn in fns:
        for _ in range(100):
            fn()
    samples: list[list[float]] = [[] for _ in fns]
    for r in range(ROUNDS):
        order = list(range(len(fns)))
        order = order[r % len(order):] + order[: r % len(order)]
        for i in order:
            fn = fns[i]
            started = time.perf_counter()
            for _ in range(TICKS):
                fn()
            samples[i].append((time.perf_counter() - started) / TICKS * 1e6)
    return [statistics.median(s) for s in samples]


def bench_writes(server: RedisServer) -> list[tuple[str, float]]:
    import redis
    from arbframe_cache_redis.cache import RedisCache

    args = _tick_args()
    cache = RedisCache({"url": server.url, "prefix": "arb"}, None)
    assert cache.write_tick(**args), "cache write failed"

    # the raw baseline sends exactly what the cache sends: same keys, same values, same TTLs
    raw = redis.Redis(host=server.host, port=server.port, db=0)
    entries = [*cache._fx_entries(*args["fx"]), cache._heartbeat_entry(*args["heartbeat"])]
    entries += [cache._spread_entry(s, snap, 60) for s, snap in args["spreads"].items()]

    def raw_tick() -> None:
        pipe = raw.pipeline(transaction=False)
        for key, value, ttl in entries:
            pipe.set(key, value, ex=ttl)
        pipe.execute()

    memory = MemoryCache()
    names = ["raw redis-py pipeline (baseline)", "RedisCache.write_tick", "MemoryCache.write_tick"]
    costs = interleaved_us([raw_tick, lambda: cache.write_tick(**args), lambda: memory.write_tick(**args)])
    cache.close()
    raw.close()
    return list(zip(names, costs, strict=True))


def health_wall(config: Path, cwd: Path, env: dict[str, str]) -> tuple[float, float, dict]:
    samples = []
    data: dict = {}
    for _ in range(HEALTH_RUNS):
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "arbframe", "health", "--config", str(config), "--json"],
                             cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
        samples.append(time.perf_counter() - started)
        data = json.loads(out.stdout) if out.stdout.strip() else {"status": f"no output (rc {out.returncode})"}
    return statistics.median(samples), max(samples), data


def _pg_available() -> bool:
    from importlib import metadata

    if not any(ep.name == "postgres" for ep in metadata.entry_points(group="arbframe.storage")):
        return False
    from arbframe.testing.postgres_server import missing_reason

    return missing_reason() is None


def write_config(path: Path, data_dir: Path, redis_url: str, pg_dsn: str | None) -> Path:
    lines = ["storage:", f"  backend: {'postgres' if pg_dsn else 'csv'}", "  csv:", f"    data_dir: {data_dir}"]
    if pg_dsn:
        lines += ["  postgres:", f"    dsn: {pg_dsn}"]
    lines += ["redis:", "  enabled: true", f"  url: {redis_url}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="arbframe-bench-cache-"))
    env = {**os.environ, "XDG_CACHE_HOME": str(work / "xdg")}
    env.pop("REDIS_URL", None)
    env.pop("DATABASE_URL", None)

    with RedisServer() as server:
        rows = bench_writes(server)
        base = rows[0][1]
        print(f"cache writes per tick (FX + heartbeat + {len(SYMBOLS)} spread snapshots, one pipeline), "
              f"{ROUNDS} interleaved rounds of {TICKS} ticks, median round")
        print(f"{'':34} {'us/tick':>9} {'x raw':>7}")
        for name, us in rows:
            print(f"{name:34} {us:9.1f} {us / base:7.2f}")
        ratio = rows[1][1] / base
        print(f"target RedisCache <= 1.5x raw pipeline: {'met' if ratio <= 1.5 else 'NOT met'} ({ratio:.2f}x)\n")

        pg = None
        if _pg_available():
            from arbframe.testing.postgres_server import PostgresServer

            pg = PostgresServer().start()
        try:
            up_cfg = write_config(work / "up.yml", work / "data", server.url, pg.dsn if pg else None)
            dead = free_port()
            down_cfg = write_config(work / "down.yml", work / "data", f"redis://127.0.0.1:{dead}/0",
                                    f"postgresql://postgres@127.0.0.1:{dead}/arbframe" if pg else None)
            base_py = statistics.median(
                _time(lambda: subprocess.run([sys.executable, "-c", "pass"], env=env, check=True))
                for _ in range(HEALTH_RUNS)
            )
            up_med, up_max, up_data = health_wall(up_cfg, work, env)
            server.stop()
            if pg:
                pg.stop()
            down_med, down_max, down_data = health_wall(down_cfg, work, env)
        finally:
            if pg:
                pg.cleanup()
    servers = "redis-server + PostgreSQL" if pg else "redis-server (PostgreSQL plugin not installed)"
    print(f"arbframe health wall time, fresh process, {HEALTH_RUNS} runs ({servers})")
    print(f"{'':34} {'median s':>9} {'max s':>7} {'x python':>9}  status")
    print(f"{'python -c pass (baseline)':34} {base_py:9.3f} {base_py:7.3f} {1:9.2f}")
    print(f"{'every server up':34} {up_med:9.3f} {up_max:7.3f} {up_med / base_py:9.2f}  {up_data.get('status')}")
    print(f"{'every server down':34} {down_med:9.3f} {down_max:7.3f} {down_med / base_py:9.2f}  "
          f"{down_data.get('status')}")
    print(f"target health with every server down < 3 s: {'met' if down_max < 3.0 else 'NOT met'} "
          f"(max {down_max:.2f} s)")


def _time(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
