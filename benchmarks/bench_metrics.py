"""Does scraping /metrics disturb the trading loop?

The engine ticks on the simulated market (2 symbols, 15 book levels, CSV storage in a temp dir) inside one
event loop that also runs the metrics server, as ``arbframe run`` does. A load generator in a separate process
(keep-alive HTTP clients, a bounded number of connections, optionally rate-capped) scrapes ``/metrics`` while
the engine runs. Reported: /metrics requests per second and latency percentiles, and the engine's tick latency
(one loop iteration: gather books + FX, ``Engine.process``, storage flush) with and without the load.
Scenarios run interleaved, in several rounds, against the default server (on the loop, 1 s render cache, sliced
rendering), the same without the cache, and the server on its own thread; the target is judged on the default.

Target (issue 8): scraping adds under 1 ms to the tick p99.

    python benchmarks/bench_metrics.py [--seconds 7] [--rate 100] [--conns 4]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

TICK_INTERVAL = 0.002  # seconds between ticks: ~250 ticks per second, so a p99 rests on enough ticks
RUNQUEUE: RunQueueClock  # opened in the loop's thread by main()


# ------------------------------------------------------------------------------------------ load generator
def load_main(url: str, seconds: float, rate: float, conns: int) -> None:
    """Child process: ``conns`` keep-alive clients GET ``url`` for ``seconds`` (``rate`` req/s in total, 0 = as
    fast as they can); prints one JSON line with the latencies."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    start = time.perf_counter() + 0.05
    end = start + seconds
    per_conn_gap = conns / rate if rate > 0 else 0.0

    def client(index: int) -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        mine: list[float] = []
        bad = 0
        next_at = start + (per_conn_gap * index / conns if per_conn_gap else 0.0)
        while True:
            now = time.perf_counter()
            if now >= end:
                break
            if per_conn_gap and now < next_at:
                time.sleep(next_at - now)
                continue
            t0 = time.perf_counter()
            try:
                conn.request("GET", parts.path or "/metrics")
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    bad += 1
            except Exception:
                bad += 1
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
            mine.append(time.perf_counter() - t0)
            if per_conn_gap:
                next_at += per_conn_gap
        conn.close()
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    threads = [threading.Thread(target=client, args=(i,)) for i in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"latencies": latencies, "errors": errors[0], "seconds": seconds}))


# ------------------------------------------------------------------------------------------------- engine
class RunQueueClock:
    """Seconds this thread spent runnable but waiting for a CPU (Linux schedstat), or 0 where unavailable.

    The machine running the benchmark may be shared: time other processes take the CPU away from the loop is
    not caused by scraping, so the table also shows tick latency with that wait removed."""

    def __init__(self) -> None:
        try:
            self.fd: int | None = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        except OSError:
            self.fd = None

    def __call__(self) -> float:
        if self.fd is None:
            return 0.0
        return int(os.pread(self.fd, 128, 0).split()[1]) / 1e9


@dataclass
class Phase:
    name: str
    ticks: list[float] = field(default_factory=list)
    ticks_on_cpu: list[float] = field(default_factory=list)
    process: list[float] = field(default_factory=list)
    requests: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def build_service(data_dir: str):  # type: ignore[no-untyped-def]
    from arbframe.kernel.config import load_config
    from arbframe.kernel.instruments import ExchangeMetrics
    from arbframe.kernel.plugin_host import Kernel
    from arbframe.service.runner import TradingService

    config = load_config([], overrides={
        "mock_mode": True,
        "storage": {"backend": "csv", "csv": {"data_dir": data_dir}},
        "service": {"interval_seconds": TICK_INTERVAL},
    })
    kernel = Kernel(config)
    service = TradingService(kernel, mock=True)
    await service.start()
    # the series a live run with both exchange connectors adds (requests per endpoint, latency histograms)
    m = ExchangeMetrics.get(kernel.registry)
    for venue, endpoints in (("upbit", ("/v1/orderbook", "/v1/ticker", "/v1/accounts", "/v1/orders")),
                             ("binance", ("/api/v3/depth", "/api/v3/ticker/bookTicker", "/api/v3/time",
                                          "/api/v3/order"))):
        for endpoint in endpoints:
            for status in ("200", "429", "timeout"):
                m.requests.labels(venue, endpoint, status).inc()
            m.request_seconds.labels(venue, endpoint).observe(0.03)
        m.errors.labels(venue, "timeout").inc()
        m.rate_limit_waits.labels(venue, "default").inc()
        m.rate_limit_wait_seconds.labels(venue, "default").inc(0.1)
        m.ws_reconnects.labels(venue).inc()
        m.ws_message_age_seconds.labels(venue).set(0.05)
        m.clock_offset_seconds.labels(venue).set(0.001)
    return kernel, service


async def run_phase(service, name: str, seconds: float, load: tuple[str, float, int] | None) -> Phase:  # type: ignore[no-untyped-def]
    phase = Phase(name, seconds=seconds)
    proc = None
    if load is not None:
        url, rate, conns = load
        proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--load-child", url, "--seconds", str(seconds), "--rate", str(rate),
            "--conns", str(conns), stdout=asyncio.subprocess.PIPE,
        )
        await asyncio.sleep(0.1)  # let the clients connect before measuring
    engine = service.engine
    storage = service.storage
    waited = RUNQUEUE
    gc.collect()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        w0 = waited()
        t0 = time.perf_counter()
        snap = await service.snapshot()
        p0 = time.perf_counter()
        engine.process(snap)
        p1 = time.perf_counter()
        storage.flush()
        t1 = time.perf_counter()
        w1 = waited()
        phase.ticks.append(t1 - t0)
        phase.ticks_on_cpu.append(max(0.0, (t1 - t0) - (w1 - w0)))
        phase.process.append(p1 - p0)
        await asyncio.sleep(TICK_INTERVAL)
    if proc is not None:
        out, _ = await proc.communicate()
        data = json.loads(out.decode().strip().splitlines()[-1])
        phase.requests = data["latencies"]
        phase.errors = data["errors"]
    return phase


DEFAULT_MODE = "on loop, cache 1 s"  # MetricsServer's defaults, what `arbframe run` starts
SCENARIOS = [
    # label, server options (None = no server load), load rate (None = no load, 0 = unbounded)
    ("no load", None, None),
    ("{rate} req/s, on loop", dict(cache_seconds=1.0), "rate"),
    ("{rate} req/s, on loop, no cache", dict(cache_seconds=0.0), "rate"),
    ("{rate} req/s, own thread", dict(cache_seconds=1.0, own_thread=True), "rate"),
    ("unbounded, on loop", dict(cache_seconds=1.0), 0.0),
]


async def bench(seconds: float, rate: float, conns: int, rounds: int) -> list[tuple[Phase, str]]:
    """Every scenario ``rounds`` times, interleaved, so slow drifts in machine load hit all of them alike."""
    from arbframe.service.metrics_server import MetricsServer, render_metrics

    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="arbframe-bench-metrics-") as tmp:
        kernel, service = await build_service(tmp)
        servers: dict[str, MetricsServer] = {}
        try:
            await run_phase(service, "warm-up", 0.5, None)  # every series exists after a few ticks
            body = render_metrics(kernel.registry)
            t0 = time.perf_counter()
            renders = 100
            for _ in range(renders):
                render_metrics(kernel.registry)
            render_us = (time.perf_counter() - t0) / renders * 1e6
            load1, _, _ = os.getloadavg()
            print(f"machine: {os.cpu_count()} CPUs, load average {load1:.2f} (wall-clock p99 suffers on a busy "
                  "machine; p99* does not)")
            print(f"registry: {len(body.splitlines())} lines, {len(body)} bytes; one rendering "
                  f"(generate_latest) takes {render_us:.0f} µs")
            pooled: dict[str, tuple[Phase, str]] = {}
            for label, options, _ in SCENARIOS:
                name = label.format(rate=f"{rate:g}")
                mode = "-"
                if options is not None:
                    servers[name] = await MetricsServer(kernel.registry, port=0, **options).start()
                    mode = ("own thread" if options.get("own_thread") else "on loop") + (
                        ", cache 1 s" if options["cache_seconds"] else ", no cache")
                pooled[name] = (Phase(name), mode)
            for _ in range(rounds):
                for label, _options, load_rate in SCENARIOS:
                    name = label.format(rate=f"{rate:g}")
                    load = None
                    if load_rate is not None:
                        load = (f"{servers[name].url}/metrics", rate if load_rate == "rate" else 0.0, conns)
                    phase = await run_phase(service, name, seconds / rounds, load)
                    total = pooled[name][0]
                    total.ticks += phase.ticks
                    total.ticks_on_cpu += phase.ticks_on_cpu
                    total.process += phase.process
                    total.requests += phase.requests
                    total.errors += phase.errors
                    total.seconds += phase.seconds
            return list(pooled.values())
        finally:
            for server in servers.values():
                await server.stop()
            await service.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=7.0, help="seconds per scenario (default 7)")
    parser.add_argument("--rate", type=float, default=100.0, help="bounded load in requests/s (default 100)")
    parser.add_argument("--conns", type=int, default=4, help="concurrent keep-alive clients (default 4)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds per scenario (default 7)")
    parser.add_argument("--load-child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_child:
        load_main(args.load_child, args.seconds, args.rate, args.conns)
        return 0
    os.environ.setdefault("XDG_CACHE_HOME", tempfile.mkdtemp(prefix="arbframe-xdg-"))
    global RUNQUEUE
    RUNQUEUE = RunQueueClock()
    results = asyncio.run(bench(args.seconds, args.rate, args.conns, args.rounds))
    base = results[0][0]
    base_p99 = pct(base.ticks, 99)
    base_cpu_p99 = pct(base.ticks_on_cpu, 99)
    header = (f"{'scenario':<30} {'server':<22} {'ticks':>5} {'tick p50':>9} {'tick p99':>9} {'x base':>6} "
              f"{'p99*':>8} {'Δp99*':>8} {'req/s':>6} {'req p50':>8} {'req p99':>8} {'err':>3}")
    print()
    print(header)
    print("-" * len(header))
    worst = {"wall": float("-inf"), "cpu": float("-inf")}
    for phase, mode in results:
        p99 = pct(phase.ticks, 99)
        cpu_p99 = pct(phase.ticks_on_cpu, 99)
        delta = (cpu_p99 - base_cpu_p99) * 1000
        if phase.requests and mode == DEFAULT_MODE and "unbounded" not in phase.name:
            worst["wall"] = max(worst["wall"], (p99 - base_p99) * 1000)
            worst["cpu"] = max(worst["cpu"], delta)
        reqs = len(phase.requests) / phase.seconds if phase.requests else 0.0
        req_cols = (f"{reqs:6.0f} {pct(phase.requests, 50) * 1000:6.2f}ms {pct(phase.requests, 99) * 1000:6.2f}ms"
                    f" {phase.errors:3d}") if phase.requests else f"{'-':>6} {'-':>8} {'-':>8} {'-':>3}"
        print(f"{phase.name:<30} {mode:<22} {len(phase.ticks):5d} {statistics.median(phase.ticks) * 1000:7.3f}ms "
              f"{p99 * 1000:7.3f}ms {p99 / base_p99:6.2f} {cpu_p99 * 1000:6.3f}ms {delta:+6.3f}ms {req_cols}")
    print()
    print("tick = one loop iteration (books + FX, Engine.process, storage flush); p99* = tick p99 without the time "
          "the\nloop's thread waited for a CPU taken by other processes (Linux schedstat; equals p99 elsewhere).")
    print(f"target: bounded scraping of the default server ({DEFAULT_MODE}) adds < 1 ms to tick p99 -> added "
          f"{worst['cpu']:+.3f} ms (p99*), {worst['wall']:+.3f} ms (wall): "
          f"{'met' if worst['cpu'] < 1.0 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
