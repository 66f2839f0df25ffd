"""Live path benchmark (issue 20, Benchmark): tick-to-order latency and event-driven scale on the fake venues.

The Upbit and Binance fake servers (``arbframe_exchange_{upbit,binance}.testing.fake_server``) run in a separate
process on 127.0.0.1, so the figures are those of the client process alone. The client is the service's own
code: a :class:`~arbframe.service.runner.TradingService` built from a kernel config with both real drivers
(``use_websocket: true``), their WebSocket streams (kernel ``BookStream``), and the event-driven ticks
(:class:`~arbframe.service.events.EventTicks`, ``service.event_driven``).

**(a) tick-to-order latency** (``--mode live``, one symbol, BTC): from the moment a book frame is read off the
WebSocket (the stream's ``parse`` is entered) to the moment the bodies of *both* signed order requests (Upbit
JWT ``POST /v1/orders``, Binance HMAC ``POST /api/v3/order``) have been written to their sockets (aiohttp's
``on_request_chunk_sent``). In between: stream parse, EventTicks coalescing and wake-up, the event snapshot, the
engine's decision (``Engine.decide_symbol``: premium maths and the strategy), both legs, and
``LiveExecutor.execute`` (bounds, client order ids, the order state machine, ``sent`` written to the storage, the
drivers' signing and HTTP). The entry goes straight from the decision to the executor: the engine's position
bookkeeping (``Engine.process``) is left out so that 1,000 entries do not pile up as positions (``bench_engine.py``
measures the tick). Beside it, **bare**: the same two requests signed (the plugins' own JWT / HMAC helpers) and
POSTed concurrently with a plain aiohttp session, start -> both bodies written. One trigger at a time: the hedge
finishes and the bare pair is sent before the next frame may trigger again. A stage table follows: wall time and
the client's main-thread CPU time (``time.thread_time``, much less sensitive to a loaded machine) from the frame
read to the evaluation, through the decision, the executor (to the first ``place_order`` call; of which the
durable write of both ``sent`` states) and the drivers (to both bodies written), and the bare pair.

**(b) scale** (``--mode paper``): 150 symbol pairs streaming on both fake venues at once (one Upbit connection with
a 150-code subscription, one Binance combined-streams connection), each venue updating every book every 100 ms
(3,000 books/s in all). Every book change is evaluated event-driven (coalesced per symbol; ``Engine.process`` over
the changed symbols). Measured over a window: CPU time of the client process (``time.process_time``) over wall
time (share of one core), and book-to-decision latency: from a frame read off the WebSocket to the end of the
evaluation that covered its symbol (p50/p99). The premium is kept below the entry threshold, as when scanning the
market: the evaluations decide, they do not trade.

Usage: ``python benchmarks/bench_live.py [--triggers 1000] [--pairs 150] [--window 30] [--part a|b|both]``. ~1 to
2 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

UPBIT_KEYS = ("test-access-key", "test-secret-key")
BINANCE_KEYS = ("fake-api-key", "fake-api-secret")


def names(n: int) -> list[str]:
    """``n`` distinct three-letter coin names (QAA, QAB, ...)."""
    return [f"Q{chr(65 + i // 26 % 26)}{chr(65 + i % 26)}" for i in range(n)]


# ------------------------------------------------------------------------------------------------- servers
def serve(pairs: int, interval: float) -> None:
    """Both fake venues; ``pairs`` 0: BTC only (latency), else that many coins (scale). Prints the URLs."""
    from arbframe_exchange_binance.testing.fake_server import DEFAULT_MARKETS, FakeBinance
    from arbframe_exchange_upbit.testing.fake_server import GROUP_LIMITS, FakeUpbit

    async def main() -> None:
        if pairs:
            coins = names(pairs)
            up_mids = {c: "10000" for c in coins}
            # 7.3 USDT x 1350 KRW = 9,855 KRW: a 1.5 % premium, under the 3 % entry threshold
            markets = {f"{c}USDT": {"mid": "7.300", "tick": "0.001", "step": "0.1", "min_notional": "5",
                                    "level_qty": "1000"} for c in coins}
            balances_up: dict[str, Any] = {"KRW": "1000000000"}
            balances_bn: dict[str, Any] = {"USDT": "1000000"}
        else:
            up_mids = {"BTC": "148000000"}
            markets = {"BTCUSDT": DEFAULT_MARKETS["BTCUSDT"]}  # 100,000 x 1350 = 135,000,000: 9.6 % premium
            balances_up = {"KRW": "1000000000000000", "BTC": "1000000"}
            balances_bn = {"USDT": "1000000000000", "BTC": "1000000"}
        upbit = FakeUpbit(mids=up_mids, balances=balances_up, group_limits={g: 1e9 for g in GROUP_LIMITS},
                          ws_interval=interval, levels=30)
        binance = FakeBinance(markets=markets, balances=balances_bn, push_interval=interval, weight_limit=10**9,
                              orders_per_10s=10**9, levels=30)
        await upbit.start()
        await binance.start()
        print(json.dumps({"upbit": [upbit.base_url, upbit.ws_url], "binance": [binance.base_url, binance.ws_url]}),
              flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


def start_servers(pairs: int, interval: float) -> tuple[subprocess.Popen[str], dict[str, list[str]]]:
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(pairs), str(interval)], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    try:
        return proc, json.loads(line)
    except ValueError:
        proc.terminate()
        raise SystemExit(f"fake venues did not start: {line!r}") from None


# ------------------------------------------------------------------------------------------------- client
class Written:
    """aiohttp trace: the time each order request's body was written, per venue (installed on every session)."""

    PATHS = {"/v1/orders": "upbit", "/api/v3/order": "binance"}

    def __init__(self) -> None:
        self.waiters: dict[str, asyncio.Future[float]] = {}
        self.cpu: dict[str, float] = {}  # venue -> main-thread CPU clock when its body was written

    def install(self) -> None:
        import aiohttp

        trace = aiohttp.TraceConfig()

        async def on_chunk(session: Any, ctx: Any, params: Any) -> None:
            venue = self.PATHS.get(params.url.path) if params.method == "POST" else None
            waiter = self.waiters.pop(venue, None) if venue else None
            if waiter is not None and not waiter.done():
                waiter.set_result(time.perf_counter())
                self.cpu[venue] = time.thread_time()

        trace.on_request_chunk_sent.append(on_chunk)
        original = aiohttp.ClientSession.__init__

        def init(session: Any, *args: Any, **kw: Any) -> None:
            kw["trace_configs"] = [*(kw.get("trace_configs") or []), trace]
            original(session, *args, **kw)

        aiohttp.ClientSession.__init__ = init  # type: ignore[method-assign]

    def expect(self) -> list[asyncio.Future[float]]:
        loop = asyncio.get_running_loop()
        self.waiters = {v: loop.create_future() for v in ("upbit", "binance")}
        return list(self.waiters.values())


class FrameClock:
    """Wraps each stream's ``parse``: per symbol, when the first frame not yet evaluated was read (``first``; and
    the main thread's CPU clock then, ``first_cpu``)."""

    def __init__(self) -> None:
        self.first: dict[str, float] = {}
        self.first_cpu: dict[str, float] = {}

    def wrap(self, stream: Any) -> None:
        parse = stream.spec.parse
        first, first_cpu = self.first, self.first_cpu
        perf, cpu = time.perf_counter, time.thread_time

        def timed(data: Any) -> Any:
            t, c = perf(), cpu()
            books = parse(data)
            for book in books:
                if book.symbol not in first:
                    first[book.symbol] = t
                    first_cpu[book.symbol] = c
            return books

        stream.spec = dataclasses.replace(stream.spec, parse=timed)


def book_streams(service: Any) -> list[Any]:
    out = []
    for exchange in service.exchanges.values():
        stream = exchange.stream
        out.append(getattr(stream, "stream", stream))  # Upbit wraps the kernel BookStream
    return out


def kernel_config(urls: dict[str, list[str]], symbols: list[str], tmp: Path, live: bool) -> dict[str, Any]:
    common = {"rate_limit": 100000, "retry_backoff_seconds": 0.01, "retry_backoff_max_seconds": 0.05,
              "timeout_seconds": 5.0, "use_websocket": True}
    return {
        "mode": "live" if live else "paper", "mock_mode": False,
        "storage": {"backend": "csv", "csv": {"data_dir": str(tmp / "data")}},
        "redis": {"enabled": False},
        "fx": {"source": "static", "static_rate": 1350.0},
        "arbitrage": {"domestic": "upbit", "foreign": "binance", "symbols": symbols, "log_spreads": False},
        "live": {"confirm": True},
        "upbit": {**common, "base_url": urls["upbit"][0], "ws_url": urls["upbit"][1], "api_key": UPBIT_KEYS[0],
                  "api_secret": UPBIT_KEYS[1],
                  "group_limits": {g: 100000 for g in ("market", "ticker", "orderbook", "default", "order")}},
        "binance": {**common, "base_url": urls["binance"][0], "ws_url": urls["binance"][1],
                    "api_key": BINANCE_KEYS[0], "api_secret": BINANCE_KEYS[1], "symbols": symbols},
    }


async def start_service(urls: dict[str, list[str]], symbols: list[str], tmp: Path, live: bool) -> Any:
    from arbframe.kernel.config import load_config
    from arbframe.kernel.plugin_host import Kernel
    from arbframe.service.runner import TradingService

    kernel = Kernel(load_config([], overrides=kernel_config(urls, symbols, tmp, live)),
                    mode="live" if live else "paper", mock=False)
    service = TradingService(kernel, mock=False)
    await service.start()
    for _ in range(100):  # every book streamed once, the FX rate read (the interval tick's snapshot)
        snap = await service.snapshot()
        if len(snap.books) >= 2 * len(symbols) and snap.fx is not None:
            break
        await asyncio.sleep(0.05)
    return service


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# ---------------------------------------------------------------------------------------------- (a) latency
async def latency(urls: dict[str, list[str]], triggers: int, tmp: Path, written: Written) -> dict[str, Any]:
    import aiohttp

    service = await start_service(urls, ["BTC"], tmp, live=True)
    engine, executor = service.engine, service.executor
    clock = FrameClock()
    for stream in book_streams(service):
        clock.wrap(stream)
    ticks = service.event_ticks()
    assert ticks is not None, "no venue streams: check use_websocket"
    ours: list[float] = []
    bare: list[float] = []
    state = {"busy": False, "skipped": 0, "n": 0}
    go: asyncio.Queue[tuple[float, list[asyncio.Future[float]]]] = asyncio.Queue()
    warmup = 30

    # per trigger, (wall, main-thread CPU) points: frame read, evaluation entered, executor called, the first order
    # handed to its driver (``place_order`` called), both bodies written; ``sent`` stored (the first durable write)
    marks: list[dict[str, tuple[float, float]]] = []
    persists: list[tuple[float, float]] = []  # every durable state write of the executor: (wall, CPU)
    perf, cpu = time.perf_counter, time.thread_time

    def evaluate(symbols: set[str]) -> None:
        entered, entered_cpu = perf(), cpu()
        frame = clock.first.pop("BTC", None)
        frame_cpu = clock.first_cpu.pop("BTC", entered_cpu)
        if frame is None or state["busy"]:
            if state["busy"]:
                state["skipped"] += 1
            return
        snap = service.event_snapshot(ticks.books)
        decision = engine.decide_symbol("BTC", snap)
        if decision.open is None:
            state["skipped"] += 1
            return
        state["busy"] = True
        state["n"] += 1
        qty = decision.open.qty
        legs = engine._legs(decision.open.direction, snap, "BTC", False, qty)
        waits = written.expect()
        mark = {"frame": (frame, frame_cpu), "evaluate": (entered, entered_cpu), "execute": (perf(), cpu())}
        marks.append(mark)
        executor.execute(legs, qty, snap.ts, f"bench-{state['n']:08d}", purpose="open")
        go.put_nowait((frame, waits))

    ticks.evaluate = evaluate
    persist = executor._persist

    async def timed_persist(*orders: Any, **kw: Any) -> None:
        t, c = perf(), cpu()
        await persist(*orders, **kw)
        spent = (perf() - t, cpu() - c)
        if state["n"] > warmup:
            persists.append(spent)
        if marks and "sent" not in marks[-1]:
            marks[-1]["sent"] = spent

    executor._persist = timed_persist
    for venue in executor.venues.values():
        def handed(place: Any) -> Any:
            async def timed_place(request: Any) -> Any:
                if marks:
                    marks[-1].setdefault("handed", (perf(), cpu()))  # the first of the two calls
                return await place(request)
            return timed_place
        venue.trading.place_order = handed(venue.trading.place_order)
    up_url, bn_url = urls["upbit"][0], urls["binance"][0]
    started = time.perf_counter()
    cpu0 = time.process_time()
    async with aiohttp.ClientSession() as session:
        ticks.start()
        try:
            for i in range(triggers + warmup):
                frame, waits = await asyncio.wait_for(go.get(), 30)
                done = await asyncio.wait_for(asyncio.gather(*waits), 30)
                marks[-1]["written"] = (max(done), max(written.cpu.values()))
                await executor.wait_idle()
                reports = executor.completed()
                assert reports and reports[0].status == "filled", reports
                # bare: the same two requests signed and POSTed with plain aiohttp, start -> both written
                waits = written.expect()
                t0, c0 = time.perf_counter(), time.thread_time()
                posts = asyncio.gather(
                    _send(bare_upbit(session, up_url, f"bare-{i}-d", Decimal(140_000_000), Decimal("0.0001"))),
                    _send(bare_binance(session, bn_url, f"bare-{i}-f", Decimal("100100"), Decimal("0.0001"))))
                bare_done = await asyncio.gather(*waits)
                bare_cpu = max(written.cpu.values()) - c0
                await posts
                if i >= warmup:
                    ours.append(max(done) - frame)
                    bare.append(max(bare_done) - t0)
                    marks[-1]["bare"] = (bare[-1], bare_cpu)
                else:
                    marks.pop()
                state["busy"] = False
        finally:
            await ticks.stop()
    elapsed = time.perf_counter() - started
    cpu_total = time.process_time() - cpu0
    await executor.close(timeout=5)
    await service.close()
    return {"ours": ours, "bare": bare, "skipped": state["skipped"], "elapsed": elapsed, "cpu": cpu_total,
            "marks": marks, "persists": persists}


async def _send(request: Any) -> None:
    async with request as response:
        await response.read()
        if response.status >= 400:
            raise RuntimeError(f"bare order refused: {response.status} {await response.text()}")


# ------------------------------------------------------------------------------------------------ (b) scale
async def scale(urls: dict[str, list[str]], pairs: int, window: float, tmp: Path) -> dict[str, Any]:
    coins = names(pairs)
    service = await start_service(urls, coins, tmp, live=False)
    clock = FrameClock()
    for stream in book_streams(service):
        clock.wrap(stream)
    ticks = service.event_ticks()
    assert ticks is not None, "no venue streams: check use_websocket"
    inner = ticks.evaluate
    latencies: list[float] = []
    record = [False]
    first = clock.first
    perf = time.perf_counter

    def evaluate(symbols: set[str]) -> None:
        inner(symbols)
        done = perf()
        for symbol in symbols:
            t = first.pop(symbol, None)
            if t is not None and record[0]:
                latencies.append(done - t)

    ticks.evaluate = evaluate
    ticks.start()
    try:
        await asyncio.sleep(3.0)  # warm-up: subscriptions settled, first books in
        record[0] = True
        evals0, changes0 = ticks.evaluations, ticks.changes
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(window)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        record[0] = False
        evaluations, changes = ticks.evaluations - evals0, ticks.changes - changes0
    finally:
        await ticks.stop()
    positions = len(service.engine.positions)
    await service.close()
    return {"latencies": latencies, "cpu": cpu, "wall": wall, "evaluations": evaluations, "changes": changes,
            "positions": positions}


# --------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--triggers", type=int, default=1000)
    parser.add_argument("--pairs", type=int, default=150)
    parser.add_argument("--window", type=float, default=30.0, help="seconds measured in the scale part")
    parser.add_argument("--part", choices=("a", "b", "both"), default="both",
                        help="a: tick-to-order latency only; b: scale only")
    parser.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(int(args.serve[0]), float(args.serve[1]))
        return 0
    logging.basicConfig(level=logging.INFO, stream=open(os.devnull, "w"))  # noqa: SIM115 - the service logs INFO
    tmp = Path(tempfile.mkdtemp(prefix="bench-live-"))
    written = Written()
    written.install()
    load0 = os.getloadavg()
    if args.part in ("a", "both"):
        proc, urls = start_servers(0, 0.01)
        try:
            a = asyncio.run(latency(urls, args.triggers, tmp / "a", written))
        finally:
            proc.terminate()
            proc.wait(10)
        report_latency(a)
    load1 = os.getloadavg()
    if args.part in ("b", "both"):
        proc, urls = start_servers(args.pairs, 0.1)
        try:
            b = asyncio.run(scale(urls, args.pairs, args.window, tmp / "b"))
        finally:
            proc.terminate()
            proc.wait(10)
        report_scale(b, args.pairs)
    load2 = os.getloadavg()
    print()
    print(f"load average (1/5/15 min) at start {load0[0]:.2f}/{load0[1]:.2f}/{load0[2]:.2f}, after (a) "
          f"{load1[0]:.2f}/{load1[1]:.2f}/{load1[2]:.2f}, after (b) {load2[0]:.2f}/{load2[1]:.2f}/{load2[2]:.2f}; "
          f"{os.cpu_count()} cores")
    return 0


def _span(marks: list[dict[str, tuple[float, float]]], start: str, end: str) -> tuple[list[float], list[float]]:
    """(wall, CPU) from point ``start`` to point ``end`` of each trigger that has both."""
    pairs = [(m[start], m[end]) for m in marks if start in m and end in m]
    return [e[0] - s[0] for s, e in pairs], [e[1] - s[1] for s, e in pairs]


def report_latency(a: dict[str, Any]) -> None:
    ours, bare = a["ours"], a["bare"]
    paired = [o - b_ for o, b_ in zip(ours, bare, strict=True)]
    ms = 1e3
    print(f"(a) tick-to-order: book frame read -> both signed orders written; {len(ours)} triggers "
          f"({a['elapsed']:.1f}s, {a['skipped']} frames not triggering while a hedge was in flight or the "
          f"premium absent)")
    print(f"{'path':<52} {'p50 ms':>8} {'p99 ms':>8}   target")
    print(f"{'ours (frame -> decision -> 2 orders written)':<52} {percentile(ours, .5) * ms:8.3f} "
          f"{percentile(ours, .99) * ms:8.3f}")
    print(f"{'bare aiohttp (sign + send both)':<52} {percentile(bare, .5) * ms:8.3f} {percentile(bare, .99) * ms:8.3f}")
    over99 = (percentile(ours, .99) - percentile(bare, .99)) * ms
    print(f"{'overhead: p99(ours) - p99(bare)':<52} {'':>8} {over99:8.3f}   < 1 ms  "
          f"{'MET' if over99 < 1 else 'NOT MET'}")
    print(f"{'overhead, paired per trigger (p50 / p99)':<52} {percentile(paired, .5) * ms:8.3f} "
          f"{percentile(paired, .99) * ms:8.3f}")
    # stages: wall, and the client's main-thread CPU between the same two points (time.thread_time: less
    # sensitive to the machine's load; between two points that await, it includes other loop work done meanwhile)
    marks = a["marks"]
    stages = [
        ("frame read -> evaluation starts", _span(marks, "frame", "evaluate")),
        ("decision + legs (engine)", _span(marks, "evaluate", "execute")),
        ("executor: execute -> first order to its driver", _span(marks, "execute", "handed")),
        ("  of which both `sent` states stored (1 write)", ([m["sent"][0] for m in marks if "sent" in m],
                                                             [m["sent"][1] for m in marks if "sent" in m])),
        ("drivers: first order handed -> both written", _span(marks, "handed", "written")),
        ("bare aiohttp: sign + send both", ([m["bare"][0] for m in marks if "bare" in m],
                                            [m["bare"][1] for m in marks if "bare" in m])),
        ("executor durable state write (each)", ([x[0] for x in a["persists"]], [x[1] for x in a["persists"]])),
    ]
    print(f"{'stage':<52} {'wall p50':>8} {'wall p99':>8} {'CPU p50':>8} {'CPU p99':>8}")
    for label, (wall, cpu) in stages:
        print(f"{label:<52} {percentile(wall, .5) * ms:8.3f} {percentile(wall, .99) * ms:8.3f} "
              f"{percentile(cpu, .5) * ms:8.3f} {percentile(cpu, .99) * ms:8.3f}")


def report_scale(b: dict[str, Any], pairs: int) -> None:
    ms = 1e3
    lat = b["latencies"]
    share = b["cpu"] / b["wall"]
    p99 = percentile(lat, .99) * ms
    print()
    print(f"(b) scale: {pairs} pairs on both venues, every book every 100 ms, event-driven; "
          f"{b['wall']:.1f}s window: {b['changes'] / b['wall']:.0f} book changes/s -> "
          f"{b['evaluations'] / b['wall']:.0f} evaluations/s ({b['positions']} positions opened)")
    print(f"{'figure':<44} {'value':>8}   target")
    print(f"{'CPU, share of one core (client process)':<44} {share * 100:7.1f}%   < 70 %  "
          f"{'MET' if share < 0.7 else 'NOT MET'}")
    print(f"{'book-to-decision p50 ms':<44} {percentile(lat, .5) * ms:8.3f}")
    print(f"{'book-to-decision p99 ms':<44} {p99:8.3f}   < 5 ms  {'MET' if p99 < 5 else 'NOT MET'}")


def bare_upbit(session: Any, base: str, cid: str, price: Decimal, qty: Decimal) -> Any:
    from arbframe_exchange_upbit.auth import make_token

    body = {"market": "KRW-BTC", "side": "ask", "volume": format(qty, "f"), "price": format(price, "f"),
            "ord_type": "limit", "time_in_force": "ioc", "identifier": cid}
    query = "&".join(f"{k}={v}" for k, v in body.items())
    token = make_token(UPBIT_KEYS[0], UPBIT_KEYS[1], query)
    return session.post(f"{base}/v1/orders", data=json.dumps(body).encode(),
                        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})


def bare_binance(session: Any, base: str, cid: str, price: Decimal, qty: Decimal) -> Any:
    import hashlib
    import hmac
    import urllib.parse

    params = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "IOC",
              "quantity": format(qty, "f"), "price": format(price, "f"), "newClientOrderId": cid,
              "recvWindow": "5000", "timestamp": str(int(time.time() * 1000))}
    payload = urllib.parse.urlencode(params)
    signature = hmac.new(BINANCE_KEYS[1].encode(), payload.encode(), hashlib.sha256).hexdigest()
    return session.post(f"{base}/api/v3/order", data=f"{payload}&signature={signature}".encode(),
                        headers={"X-MBX-APIKEY": BINANCE_KEYS[0],
                                 "Content-Type": "application/x-www-form-urlencoded"})


if __name__ == "__main__":
    sys.exit(main())
