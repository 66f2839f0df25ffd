"""REST client CPU per call, today's drivers against the pre-port ones (issue 19: "unchanged or better").

Two calls per venue, each measured as the client process's CPU time over many calls (``time.process_time``; the
fake servers run in processes of their own, so their CPU is not counted):

* a public book: the driver's ``rest_order_book`` (Upbit 15 levels, Binance 5: limiter, transport, metrics,
  parsing) -- the calls behind ``bench_upbit`` / ``bench_binance``'s REST rows;
* a signed order: one ``POST`` to the venue's order-test endpoint (``/v1/orders/test``, ``/api/v3/order/test``)
  through the driver's REST client (signing, limiter, transport, metrics, the answer decoded), nothing placed.

The pre-port side is the kernel and plugin as they were before the venues moved onto ``arbframe.venues``
(``--old-upbit`` / ``--old-binance``, default the commits before the ports), taken out of git with ``git archive``
into a temporary directory and put first on ``PYTHONPATH``. Each measurement is a fresh worker process; rounds
alternate which side goes first (the machine is shared); medians and minima of the per-round figures are printed
with the load average.

Usage: ``python benchmarks/bench_rest_cpu.py [--rounds 6] [--calls 2000] [--venue upbit|binance|both]``
(run from the repository: it needs git and its history).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OLD = {"upbit": "187ab18^", "binance": "94dc076^"}  # the commits before each venue's port
UPBIT_KEYS = ("test-access-key", "test-secret-key")
BINANCE_KEYS = ("fake-api-key", "fake-api-secret")


# ----------------------------------------------------------------------------------------------- workers
async def _measure(call, calls: int, warm: int = 100) -> tuple[float, float]:
    """(CPU µs, wall µs) per call over ``calls`` calls after ``warm`` unmeasured ones."""
    for _ in range(warm):
        await call()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        await call()
    return (time.process_time() - cpu) / calls * 1e6, (time.perf_counter() - wall) / calls * 1e6


def _context(mode: str):
    from prometheus_client import CollectorRegistry

    from arbframe import PluginContext

    return PluginContext(config={}, pm=None, registry=CollectorRegistry(), data_dir=Path("."), mode=mode)


async def worker_upbit(side: str, base_url: str, calls: int) -> dict[str, float]:
    from arbframe_exchange_upbit import UpbitExchange

    huge = {g: 1e9 for g in ("market", "orderbook", "ticker", "default", "order", "order-test")}
    ex = UpbitExchange({"base_url": base_url, "rate_limit": 1e9, "group_limits": huge, "api_key": UPBIT_KEYS[0],
                        "api_secret": UPBIT_KEYS[1], "symbols": ["BTC"]}, _context("live"))
    await ex.connect()
    body = {"market": "KRW-BTC", "side": "bid", "volume": "0.001", "price": "50000000", "ord_type": "limit",
            "identifier": "bench-1"}
    if side == "old":
        async def order():
            return await ex.rest.request("place_order_test", body=body)

        from arbframe_exchange_upbit import rest as rest_mod

        rest_mod.ENDPOINTS["place_order_test"] = rest_mod.Endpoint("POST", "/v1/orders/test", "order-test", True)
    else:
        async def order():
            return await ex.rest.call("test_order", body=body)

    async def book():
        return await ex.rest_order_book("BTC", 15)

    assert (await order())["uuid"] and (await book()).bids
    out = {}
    out["book_cpu"], out["book_wall"] = await _measure(book, calls)
    out["order_cpu"], out["order_wall"] = await _measure(order, calls)
    await ex.close()
    return out


async def worker_binance(side: str, base_url: str, calls: int) -> dict[str, float]:
    from arbframe_exchange_binance import BinanceExchange

    ex = BinanceExchange({"base_url": base_url, "rate_limit": 1e9, "weight_limit_per_minute": 10**9,
                          "orders_per_10s": 10**9, "api_key": BINANCE_KEYS[0], "api_secret": BINANCE_KEYS[1],
                          "symbols": ["BTC"]}, _context("live"))
    await ex.connect()
    params = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001",
              "price": "20000", "newClientOrderId": "bench-1", "newOrderRespType": "FULL"}
    if side == "old":
        async def order():
            return await ex.rest.request("POST", "/api/v3/order/test", params, signed=True, idempotent=False)
    else:
        async def order():
            return await ex.rest.call("POST", "/api/v3/order/test", params, idempotent=False)

    async def book():
        return await ex.rest_order_book("BTC", 5)

    assert await order() is not None and (await book()).bids
    out = {}
    out["book_cpu"], out["book_wall"] = await _measure(book, calls)
    out["order_cpu"], out["order_wall"] = await _measure(order, calls)
    await ex.close()
    return out


def worker_main(venue: str, side: str, base_url: str, calls: int) -> None:
    import logging

    import arbframe

    logging.basicConfig(level=logging.ERROR)
    run = worker_upbit if venue == "upbit" else worker_binance
    result = asyncio.run(run(side, base_url, calls))
    result["kernel"] = arbframe.__file__
    print(json.dumps(result), flush=True)


# -------------------------------------------------------------------------------------------------- main
def start_server(venue: str) -> tuple[subprocess.Popen, str]:
    args = (["-m", "arbframe_exchange_upbit.testing.fake_server", "--no-limits", "--ws-interval", "3600"]
            if venue == "upbit" else
            ["-m", "arbframe_exchange_binance.testing.fake_server", "--push-interval", "0",
             "--weight-limit", "1000000000"])
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    match = re.search(r"BASE_URL=(\S+)", proc.stdout.readline())
    if not match:
        proc.kill()
        raise SystemExit(f"the fake {venue} did not start")
    return proc, match.group(1)


def old_tree(venue: str, commit: str, into: Path) -> str:
    """The kernel and the plugin at ``commit`` (``git archive``); returns the PYTHONPATH that imports them."""
    dest = into / venue
    dest.mkdir(parents=True)
    paths = ["arbframe", f"plugins/arbframe_exchange_{venue}/src"]
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, *paths], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return os.pathsep.join([str(dest), str(dest / paths[1])])


def run_worker(venue: str, side: str, base_url: str, calls: int, pythonpath: str | None) -> dict[str, float]:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    out = subprocess.run([sys.executable, __file__, "--worker", venue, side, base_url, str(calls)], env=env,
                         capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"{venue}/{side} worker failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if pythonpath and not result["kernel"].startswith(pythonpath.split(os.pathsep)[0]):
        raise SystemExit(f"the pre-port worker imported today's kernel ({result['kernel']})")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--venue", choices=("upbit", "binance", "both"), default="both")
    parser.add_argument("--old-upbit", default=OLD["upbit"])
    parser.add_argument("--old-binance", default=OLD["binance"])
    parser.add_argument("--worker", nargs=4, metavar=("VENUE", "SIDE", "BASE_URL", "CALLS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        venue, side, base_url, calls = args.worker
        worker_main(venue, side, base_url, int(calls))
        return 0
    venues = ("upbit", "binance") if args.venue == "both" else (args.venue,)
    commits = {"upbit": args.old_upbit, "binance": args.old_binance}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="bench-rest-cpu-") as tmp:
        for venue in venues:
            pythonpath = old_tree(venue, commits[venue], Path(tmp))
            proc, base_url = start_server(venue)
            figures: dict[str, dict[str, list[float]]] = {"old": {}, "new": {}}
            try:
                for r in range(args.rounds):
                    for side in (("old", "new") if r % 2 == 0 else ("new", "old")):
                        result = run_worker(venue, side, base_url, args.calls, pythonpath if side == "old" else None)
                        for key, value in result.items():
                            if key != "kernel":
                                figures[side].setdefault(key, []).append(value)
                    loads.append(os.getloadavg()[0])
            finally:
                proc.terminate()
                proc.wait(10)
            print(f"{venue}: pre-port = {commits[venue]}; {args.rounds} alternating rounds x {args.calls} calls "
                  "(µs per call; median / min of the rounds)")
            for key in ("book_cpu", "order_cpu", "book_wall", "order_wall"):
                old, new = figures["old"][key], figures["new"][key]
                delta = statistics.median(new) - statistics.median(old)
                print(f"  {key:<11} pre-port {statistics.median(old):7.1f} / {min(old):7.1f}   "
                      f"today {statistics.median(new):7.1f} / {min(new):7.1f}   median {delta:+7.1f} µs")
    print(f"load average (1 min) during the run: {min(loads):.2f}-{max(loads):.2f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
