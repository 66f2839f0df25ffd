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

``--canned`` takes the network and aiohttp out: each worker records the fake server's real answers once, then
serves them from an in-process stand-in for aiohttp's session, so only the client's own code is timed (the
driver, limiter, signing, metrics, error mapping, parsing) -- a far less noisy figure on a shared machine.

Usage: ``python benchmarks/bench_rest_cpu.py [--rounds 6] [--calls 2000] [--venue upbit|binance|both]
[--compare REF ...]`` (``--compare``: more commits measured the same way, e.g. the state before a change; run from
the repository: it needs git and its history).
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
from typing import Any

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


class _CannedResponse:
    def __init__(self, status: int, headers: Any, body: bytes) -> None:
        self.status, self.headers, self._body = status, headers, body

    async def read(self) -> bytes:
        return self._body

    async def __aenter__(self) -> _CannedResponse:
        return self

    async def __aexit__(self, *exc: object) -> bool:
        return False


class _CannedSession:
    """Stands in for an aiohttp session: the answer recorded for the request's path, at once."""

    closed = False

    def __init__(self, answers: dict[str, tuple[int, list[tuple[str, str]], bytes]]) -> None:
        from multidict import CIMultiDict, CIMultiDictProxy

        self.answers = {path: (status, CIMultiDictProxy(CIMultiDict(headers)), body)
                        for path, (status, headers, body) in answers.items()}

    def request(self, method: str, url: Any, **kw: Any) -> _CannedResponse:
        return _CannedResponse(*self.answers[_path(url)])

    async def close(self) -> None:
        return None


def _path(url: Any) -> str:
    return "/" + str(url).split("?", 1)[0].split("//", 1)[1].split("/", 1)[1]


async def _go_canned(ex: Any, calls: list[Any]) -> None:
    """Record one real answer per call, then put a canned session where the client keeps its aiohttp session."""
    import aiohttp

    answers: dict[str, tuple[int, list[tuple[str, str]], bytes]] = {}
    real = aiohttp.ClientSession._request

    async def spy(self: Any, method: str, url: Any, **kw: Any) -> Any:
        resp = await real(self, method, url, **kw)
        answers[_path(url)] = (resp.status, list(resp.headers.items()), await resp.read())
        return resp

    aiohttp.ClientSession._request = spy  # type: ignore[method-assign]
    try:
        for call in calls:
            await call()
    finally:
        aiohttp.ClientSession._request = real  # type: ignore[method-assign]
    canned = _CannedSession(answers)
    http = getattr(ex.rest, "http", None)
    if http is None:  # the pre-port clients own a session attribute
        await ex.rest._session.close()
        ex.rest._session = canned
        return
    transport = getattr(http.transport, "inner", http.transport)
    await transport.session.close()
    if hasattr(transport, "_start"):
        try:
            transport._start(asyncio.get_running_loop(), http.timeout)
        except TypeError:  # before the session took the client's timeout
            transport._start(asyncio.get_running_loop())
        await transport.session.close()
    transport.session, transport._loop = canned, asyncio.get_running_loop()


def _context(mode: str):
    from prometheus_client import CollectorRegistry

    from arbframe import PluginContext

    return PluginContext(config={}, pm=None, registry=CollectorRegistry(), data_dir=Path("."), mode=mode)


async def _measure_both(ex: Any, order: Any, book: Any, canned: bool, calls: int) -> dict[str, float]:
    """CPU and wall time per call of ``book`` then ``order`` (answered from canned replies when ``canned``);
    closes ``ex``."""
    if canned:
        await _go_canned(ex, [order, book])
    out = {}
    out["book_cpu"], out["book_wall"] = await _measure(book, calls)
    out["order_cpu"], out["order_wall"] = await _measure(order, calls)
    await ex.close()
    return out


async def worker_upbit(canned: bool, base_url: str, calls: int) -> dict[str, float]:
    from arbframe_exchange_upbit import UpbitExchange

    huge = {g: 1e9 for g in ("market", "orderbook", "ticker", "default", "order", "order-test")}
    ex = UpbitExchange({"base_url": base_url, "rate_limit": 1e9, "group_limits": huge, "api_key": UPBIT_KEYS[0],
                        "api_secret": UPBIT_KEYS[1], "symbols": ["BTC"]}, _context("live"))
    await ex.connect()
    body = {"market": "KRW-BTC", "side": "bid", "volume": "0.001", "price": "50000000", "ord_type": "limit",
            "identifier": "bench-1"}
    if not hasattr(ex.rest, "call"):  # the pre-port client: request(name, ...), no order-test endpoint entry
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
    return await _measure_both(ex, order, book, canned, calls)


async def worker_binance(canned: bool, base_url: str, calls: int) -> dict[str, float]:
    from arbframe_exchange_binance import BinanceExchange

    ex = BinanceExchange({"base_url": base_url, "rate_limit": 1e9, "weight_limit_per_minute": 10**9,
                          "orders_per_10s": 10**9, "api_key": BINANCE_KEYS[0], "api_secret": BINANCE_KEYS[1],
                          "symbols": ["BTC"]}, _context("live"))
    await ex.connect()
    params = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001",
              "price": "20000", "newClientOrderId": "bench-1", "newOrderRespType": "FULL"}
    if not hasattr(ex.rest, "http"):  # the pre-port client
        async def order():
            return await ex.rest.request("POST", "/api/v3/order/test", params, signed=True, idempotent=False)
    else:
        async def order():
            return await ex.rest.call("POST", "/api/v3/order/test", params, idempotent=False)

    async def book():
        return await ex.rest_order_book("BTC", 5)

    assert await order() is not None and (await book()).bids
    return await _measure_both(ex, order, book, canned, calls)


def worker_main(venue: str, mode: str, base_url: str, calls: int) -> None:
    import logging

    import arbframe

    logging.basicConfig(level=logging.CRITICAL)  # a canned session is never "closed"; nothing to report
    run = worker_upbit if venue == "upbit" else worker_binance
    result = asyncio.run(run(mode == "canned", base_url, calls))
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


def run_worker(venue: str, mode: str, base_url: str, calls: int, pythonpath: str | None) -> dict[str, float]:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    out = subprocess.run([sys.executable, __file__, "--worker", venue, mode, base_url, str(calls)], env=env,
                         capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"{venue} worker ({pythonpath or 'today'}) failed:\n{out.stderr[-3000:]}")
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
    parser.add_argument("--compare", action="append", default=[], metavar="REF",
                        help="another commit to measure (both venues), e.g. the one before a change")
    parser.add_argument("--canned", action="store_true",
                        help="time the client's own code: answers served in-process, no network, no aiohttp")
    parser.add_argument("--worker", nargs=4, metavar=("VENUE", "MODE", "BASE_URL", "CALLS"), help=argparse.SUPPRESS)
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
            refs = {"pre-port": commits[venue], **{ref: ref for ref in args.compare}}
            paths: dict[str, str | None] = {name: old_tree(venue, ref, Path(tmp) / name.replace("/", "_"))
                                            for name, ref in refs.items()}
            paths["today"] = None
            sides = list(paths)
            proc, base_url = start_server(venue)
            figures: dict[str, dict[str, list[float]]] = {side: {} for side in sides}
            try:
                for r in range(args.rounds):
                    for side in sides[r % len(sides):] + sides[:r % len(sides)]:  # each side leads in turn
                        result = run_worker(venue, "canned" if args.canned else "network", base_url, args.calls,
                                            paths[side])
                        for key, value in result.items():
                            if key != "kernel":
                                figures[side].setdefault(key, []).append(value)
                    loads.append(os.getloadavg()[0])
            finally:
                proc.terminate()
                proc.wait(10)
            how = "canned answers, no network" if args.canned else "fake server in its own process"
            print(f"{venue} ({how}): {args.rounds} rounds x {args.calls} calls, sides in rotating order; "
                  f"µs per call, median [min] of the rounds; pre-port = {commits[venue]}")
            print(f"  {'':<11}" + "".join(f"{side:>22}" for side in sides) + f"{'today - pre-port':>20}")
            for key in ("book_cpu", "order_cpu", "book_wall", "order_wall"):
                cells = "".join(f"{statistics.median(figures[side][key]):>13.1f} [{min(figures[side][key]):6.1f}]"
                                for side in sides)
                delta = statistics.median(figures["today"][key]) - statistics.median(figures["pre-port"][key])
                print(f"  {key:<11}{cells}{delta:>+18.1f}")
    print(f"load average (1 min) during the run: {min(loads):.2f}-{max(loads):.2f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
