"""Upbit connector benchmark (issue 6). Runs in well under a minute, no network beyond 127.0.0.1.

1. WebSocket: orderbook messages/s taken from the fake Upbit server (a separate process, burst mode) and turned
   into ``OrderBook``s by the connector's stream while a ``books()`` consumer takes them (conflating: it gets the
   newest book), against a bare aiohttp client that only receives and ``json.loads`` the same messages.
                                                                               target: >= 50 % of bare
2. Parsing: recorded ``GET /v1/orderbook`` payloads -> books, the connector's parser (exact Decimals, sorted and
   checked levels, aware UTC time) against ccxt's upbit order-book parsing of the same payloads (what
   ``ccxt.upbit.fetch_order_books`` does with a response: ``parse_order_book_bids_asks`` + ``sort_by`` per side).
   Measured on the decoded payload (each library's own decoding: Decimals for us, floats for ccxt; the
   target row) and from the raw bytes including JSON decoding (shown for information).  target: >= 2x ccxt
3. REST round trip: ``rest_order_book`` (limiter, metrics, parsing) against a bare aiohttp GET + json.loads of
   the same URL on the same server.                                            target: overhead < 0.5 ms/call

Usage: ``python benchmarks/bench_upbit.py`` (ccxt is a benchmark-only dependency: ``pip install ccxt``).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

WS_MESSAGES = 12000
PARSE_PAYLOADS = 200
PARSE_ROUNDS = 10
REST_CALLS = 1000
REPEATS = 5


def start_server() -> tuple[subprocess.Popen, str, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "arbframe_exchange_upbit.testing.fake_server",
         "--ws-burst", str(WS_MESSAGES + 5000), "--ws-interval", "3600", "--no-limits"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    line = proc.stdout.readline()
    match = re.search(r"BASE_URL=(\S+) WS_URL=(\S+)", line)
    if not match:
        proc.kill()
        raise SystemExit(f"fake server did not start: {line!r}")
    return proc, match.group(1), match.group(2)


# ------------------------------------------------------------------------------------------- websocket
async def ws_connector(ws_url: str, n: int, conflate: bool = True) -> tuple[float, float]:
    """Orderbook messages turned into OrderBooks per second while a ``books()`` consumer takes them (conflating:
    the consumer gets the newest book; every message is parsed into an OrderBook by the stream)."""
    from arbframe_exchange_upbit.ws import UpbitStream

    from arbframe import StreamSettings

    stream = UpbitStream(ws_url, fmt="SIMPLE", depth=15, settings=StreamSettings(ping_interval=10, idle_timeout=30))
    stream.subscribe(["BTC"], 15)
    agen = stream.books({"BTC"}, conflate=conflate)
    first = started = cpu = 0.0
    async for _book in agen:
        if not first:
            first = stream.books_built  # the snapshot is in: the burst starts now
            started, cpu = time.perf_counter(), time.process_time()
        if stream.books_built - first >= n:
            break
    built = stream.books_built - first
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    await agen.aclose()
    await stream.stop()
    return built / elapsed, built / cpu


async def ws_bare(ws_url: str, n: int) -> tuple[float, float]:
    import aiohttp
    from arbframe_exchange_upbit.ws import request_message

    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url, max_msg_size=8 << 20) as ws:
        await ws.send_str(request_message(["BTC"], 15, "SIMPLE"))
        count = 0
        started = cpu = 0.0
        while count <= n:
            msg = await ws.receive()
            obj = json.loads(msg.data)
            if count == 0:
                started, cpu = time.perf_counter(), time.process_time()
            if "obu" in obj:
                count += 1
        return n / (time.perf_counter() - started), n / (time.process_time() - cpu)


# --------------------------------------------------------------------------------------------- parsing
def recorded_payloads() -> list[bytes]:
    from arbframe_exchange_upbit.testing.fake_server import FakeUpbit

    return [json.dumps([book]).encode() for book in FakeUpbit(seed=11).evolving_books("BTC", 15, PARSE_PAYLOADS)]


def parse_ours(payloads: list[bytes]) -> tuple[float, float]:
    """(bytes -> books, decoded payloads -> books) per CPU-second."""
    from arbframe_exchange_upbit.parsing import loads, parse_rest_orderbook

    started = time.process_time()
    for _ in range(PARSE_ROUNDS):
        for raw in payloads:
            for item in loads(raw):
                parse_rest_orderbook(item, "upbit", 15)
    end_to_end = PARSE_ROUNDS * len(payloads) / (time.process_time() - started)
    decoded = [loads(raw) for raw in payloads]
    started = time.process_time()
    for _ in range(PARSE_ROUNDS):
        for response in decoded:
            for item in response:
                parse_rest_orderbook(item, "upbit", 15)
    return end_to_end, PARSE_ROUNDS * len(payloads) / (time.process_time() - started)


def parse_ccxt(payloads: list[bytes]) -> tuple[float, float] | None:
    """The same with ccxt's upbit order-book parsing (what ``fetch_order_books`` does with the response)."""
    try:
        import ccxt
    except ImportError:
        return None
    ex = ccxt.upbit()

    def parse(response: list) -> dict:
        result = {}
        for orderbook in ex.to_array(response):
            market_id = ex.safe_string(orderbook, "market")
            symbol = ex.safe_symbol(market_id, None, "-")
            timestamp = ex.safe_integer(orderbook, "timestamp")
            units = orderbook["orderbook_units"]
            result[symbol] = {
                "symbol": symbol,
                "bids": ex.sort_by(ex.parse_order_book_bids_asks(units, "bid_price", "bid_size"), 0, True),
                "asks": ex.sort_by(ex.parse_order_book_bids_asks(units, "ask_price", "ask_size"), 0),
                "timestamp": timestamp, "datetime": ex.iso8601(timestamp), "nonce": None,
            }
        return result

    started = time.process_time()
    for _ in range(PARSE_ROUNDS):
        for raw in payloads:
            parse(json.loads(raw))
    end_to_end = PARSE_ROUNDS * len(payloads) / (time.process_time() - started)
    decoded = [json.loads(raw) for raw in payloads]
    started = time.process_time()
    for _ in range(PARSE_ROUNDS):
        for response in decoded:
            parse(response)
    return end_to_end, PARSE_ROUNDS * len(payloads) / (time.process_time() - started)


# ------------------------------------------------------------------------------------------------ REST
async def rest_connector(base_url: str, n: int) -> tuple[float, float]:
    from arbframe_exchange_upbit import UpbitExchange
    from prometheus_client import CollectorRegistry

    from arbframe import PluginContext

    ctx = PluginContext(config={}, pm=None, registry=CollectorRegistry(), data_dir=Path("."), mode="paper")
    ex = UpbitExchange({"base_url": base_url, "rate_limit": 1e9,
                        "group_limits": {g: 1e9 for g in ("market", "orderbook", "ticker", "default")}}, ctx)
    await ex.connect()
    for _ in range(20):
        await ex.rest_order_book("BTC", 15)
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        await ex.rest_order_book("BTC", 15)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    await ex.close()
    return elapsed / n, cpu / n


async def rest_bare(base_url: str, n: int) -> tuple[float, float]:
    import aiohttp

    url = f"{base_url}/v1/orderbook?markets=KRW-BTC&count=15"
    async with aiohttp.ClientSession() as session:
        for _ in range(20):
            async with session.get(url) as resp:
                json.loads(await resp.read())
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            async with session.get(url) as resp:
                json.loads(await resp.read())
        return (time.perf_counter() - started) / n, (time.process_time() - cpu) / n


# ------------------------------------------------------------------------------------------------ main
async def run_network(base_url: str, ws_url: str) -> dict[str, list[tuple[float, float]]]:
    results: dict[str, list[tuple[float, float]]] = {"ws_conn": [], "ws_bare": [], "ws_every": [], "rest_conn": [],
                                                     "rest_bare": []}
    for _ in range(REPEATS):  # interleaved, best of REPEATS each
        results["ws_bare"].append(await ws_bare(ws_url, WS_MESSAGES))
        results["ws_conn"].append(await ws_connector(ws_url, WS_MESSAGES))
        results["ws_every"].append(await ws_connector(ws_url, WS_MESSAGES, conflate=False))
        results["rest_bare"].append(await rest_bare(base_url, REST_CALLS))
        results["rest_conn"].append(await rest_connector(base_url, REST_CALLS))
    return results


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else "PASS" if ok else "FAIL"


def main() -> int:
    import logging

    logging.basicConfig(level=logging.ERROR)
    started = time.perf_counter()
    proc, base_url, ws_url = start_server()
    try:
        net = asyncio.run(run_network(base_url, ws_url))
    finally:
        proc.terminate()
        proc.wait(10)
    payloads = recorded_payloads()
    ours_runs, ccxt_runs = [], []
    for _ in range(REPEATS):  # interleaved
        ours_runs.append(parse_ours(payloads))
        ccxt_runs.append(parse_ccxt(payloads))
    ours = (max(r[0] for r in ours_runs), max(r[1] for r in ours_runs))
    theirs = None if ccxt_runs[0] is None else (max(r[0] for r in ccxt_runs), max(r[1] for r in ccxt_runs))

    best = {k: (max(r[0] for r in v), max(r[1] for r in v)) for k, v in net.items() if k.startswith("ws")}
    best.update({k: (min(r[0] for r in v), min(r[1] for r in v)) for k, v in net.items() if k.startswith("rest")})
    ws_wall = best["ws_conn"][0] / best["ws_bare"][0]
    ws_cpu = best["ws_conn"][1] / best["ws_bare"][1]
    ws_every = best["ws_every"][1] / best["ws_bare"][1]
    rest_wall_ms = (best["rest_conn"][0] - best["rest_bare"][0]) * 1000
    rest_cpu_ms = (best["rest_conn"][1] - best["rest_bare"][1]) * 1000
    rows = [
        ("WS orderbook msgs/s -> OrderBook (wall)", f"{best['ws_conn'][0]:,.0f}", "bare recv+json.loads",
         f"{best['ws_bare'][0]:,.0f}", f"{ws_wall:.2f}x", ">= 0.50x", _verdict(ws_wall >= 0.5)),
        ("WS orderbook msgs per client CPU-s", f"{best['ws_conn'][1]:,.0f}", "bare recv+json.loads",
         f"{best['ws_bare'][1]:,.0f}", f"{ws_cpu:.2f}x", ">= 0.50x", _verdict(ws_cpu >= 0.5)),
        ("  same, consumer takes every book (no conflation)", f"{best['ws_every'][1]:,.0f}", "bare recv+json.loads",
         f"{best['ws_bare'][1]:,.0f}", f"{ws_every:.2f}x", "(info)", "-"),
    ]
    if theirs is not None:
        rows += [
            ("parse: decoded payload -> book, per CPU-s", f"{ours[1]:,.0f}", "ccxt upbit parse (floats)",
             f"{theirs[1]:,.0f}", f"{ours[1] / theirs[1]:.2f}x", ">= 2.00x", _verdict(ours[1] / theirs[1] >= 2)),
            ("parse: bytes -> book (incl. JSON), per CPU-s", f"{ours[0]:,.0f}", "json.loads + ccxt parse",
             f"{theirs[0]:,.0f}", f"{ours[0] / theirs[0]:.2f}x", "(info)", "-"),
        ]
    else:
        rows.append(("parse: decoded payload -> book, per CPU-s", f"{ours[1]:,.0f}", "ccxt (not installed)", "-",
                     "-", ">= 2.00x", _verdict(None)))
    rows += [
        ("REST round trip ms/call (wall)", f"{best['rest_conn'][0] * 1000:.3f}", "bare aiohttp GET+json.loads",
         f"{best['rest_bare'][0] * 1000:.3f}", f"{rest_wall_ms:+.3f} ms", "< +0.5 ms", _verdict(rest_wall_ms < 0.5)),
        ("REST client CPU ms/call", f"{best['rest_conn'][1] * 1000:.3f}", "bare aiohttp GET+json.loads",
         f"{best['rest_bare'][1] * 1000:.3f}", f"{rest_cpu_ms:+.3f} ms", "< +0.5 ms", _verdict(rest_cpu_ms < 0.5)),
    ]
    head = ("measure", "connector", "baseline", "baseline value", "ratio/overhead", "target", "ok")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(7)]
    print(f"Upbit connector benchmark (python {sys.version.split()[0]}, best of {REPEATS}, fake server in its own "
          f"process; {WS_MESSAGES} WS messages of 15 levels, {PARSE_PAYLOADS}x{PARSE_ROUNDS} payloads, "
          f"{REST_CALLS} GETs)")
    for row in [head, *rows]:
        print("  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(row)))
    print("CPU rows divide by the client process's CPU time (robust when other processes share the cores); "
          f"load average {os.getloadavg()[0]:.1f}; total {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
