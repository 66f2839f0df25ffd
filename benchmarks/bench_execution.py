"""Live execution benchmark (issue 20): decision -> both signed order requests written to their sockets.

What it measures. Two fake venues (``FakeVenue``'s matching engine behind a minimal signed order route, one
aiohttp server each, in a separate process) on 127.0.0.1. For each of 1,000 triggers:

- **ours**: the time from handing a decided hedge to :class:`arbframe.execution.live.LiveExecutor` (``execute``:
  plan, VWAP bounds, client order ids, order state machine, the ``sent`` state written to storage, the risk
  guard) until the body of *both* order requests has been written to its connection (aiohttp's
  ``on_request_chunk_sent`` trace), through a ``Trading`` implementation that signs each request with
  HMAC-SHA256 (Binance style: url-encoded parameters + timestamp + signature) and POSTs it with aiohttp;
- **bare**: the same two signed requests built and POSTed concurrently with the same aiohttp session, to the same
  server, timed the same way (start -> both bodies written).

"ours" runs twice: with the in-memory storage (the layer's own cost) and with the CSV storage behind the kernel's
storage writer (each ``sent`` state flushed to disk by the writer thread before the request leaves: what
``--mode live`` does with ``storage.backend: csv``). Triggers alternate between the variants so machine load hits
them alike; each hedge finishes (answers, states written) before the next trigger. Logging is on at INFO as in the
service (one line per order state), written to /dev/null. Target (issue): p99 overhead over bare < 1 ms.

Not measured here: the book-frame-to-decision part and the issue's scale figure (150 symbol pairs streaming,
event-driven evaluation): ``bench_live.py`` measures both, from the WebSocket frame on, with the real drivers.

Usage: ``python benchmarks/bench_execution.py [--triggers N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from decimal import Decimal
from pathlib import Path
from typing import Any

SECRET = b"bench-secret"
MIDS = {"upbit": 100_000_000, "binance": 70_000}


# ------------------------------------------------------------------------------------------------- server
def serve() -> None:
    """Both fake venues with a signed order route; prints ``PORTS=<upbit> <binance>``."""
    from aiohttp import web

    from arbframe.testing.fake_venue import FakeVenue, OrderRefused

    class SignedVenue(FakeVenue):
        def routes(self, app: Any) -> None:
            async def order(request: Any) -> Any:
                body = await request.text()
                params = dict(urllib.parse.parse_qsl(body))
                signature = params.pop("signature", "")
                payload = urllib.parse.urlencode(params)
                if not hmac.compare_digest(signature, hmac.new(SECRET, payload.encode(), hashlib.sha256).hexdigest()):
                    return web.json_response({"error": "bad signature"}, status=401)
                try:
                    o = self.place_limit(params["symbol"], params["side"].lower(), params["price"],
                                         params["quantity"], params["newClientOrderId"], params["timeInForce"])
                except OrderRefused as refused:
                    return web.json_response({"error": refused.reason}, status=400)
                return web.json_response({"orderId": o.venue_id, "clientOrderId": o.client_id, "status": o.status,
                                          "executedQty": str(o.filled_qty), "cummulativeQuoteQty": str(o.quote_qty),
                                          "fee": str(o.fee), "feeAsset": o.fee_asset})

            app.router.add_post("/api/order", order)

    async def main() -> None:
        up = SignedVenue(mids={"BTC": MIDS["upbit"]}, tick="1000", levels=50, seed=3,
                         balances={"KRW": 10**15, "BTC": 10**6}, duplicate_client_id="allow")
        bn = SignedVenue(mids={"BTC": MIDS["binance"]}, tick="0.01", levels=50, seed=5,
                         balances={"USDT": 10**12, "BTC": 10**6}, duplicate_client_id="allow")
        bn.quote = "USDT"
        await up.start()
        await bn.start()
        print(f"PORTS={up.port} {bn.port}", flush=True)
        while True:  # a fresh book now and then: depth taken by earlier triggers comes back
            await asyncio.sleep(0.5)
            for venue in (up, bn):
                venue.set_mid("BTC", venue.mids["BTC"] + venue.tick)
                venue.set_mid("BTC", venue.mids["BTC"] - venue.tick)

    asyncio.run(main())


# ------------------------------------------------------------------------------------------------ client
class Submitted:
    """Trace: when each request's body was written (keyed by client order id)."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.waiters: dict[str, asyncio.Future[float]] = {}

    def config(self) -> Any:
        import aiohttp

        trace = aiohttp.TraceConfig()

        async def on_chunk(session: Any, ctx: Any, params: Any) -> None:
            cid = (ctx.trace_request_ctx or {}).get("cid")
            if cid is not None and cid not in self.at:
                now = time.perf_counter()
                self.at[cid] = now
                waiter = self.waiters.pop(cid, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(now)

        trace.on_request_chunk_sent.append(on_chunk)
        return trace

    def wait(self, cid: str) -> asyncio.Future[float]:
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        if cid in self.at:
            fut.set_result(self.at[cid])
        else:
            self.waiters[cid] = fut
        return fut


def signed_body(symbol: str, side: str, qty: Decimal, price: Decimal, cid: str) -> bytes:
    params = {"symbol": symbol, "side": side, "type": "LIMIT", "timeInForce": "IOC", "quantity": format(qty, "f"),
              "price": format(price, "f"), "newClientOrderId": cid, "recvWindow": "5000",
              "timestamp": str(int(time.time() * 1000))}
    payload = urllib.parse.urlencode(params)
    signature = hmac.new(SECRET, payload.encode(), hashlib.sha256).hexdigest()
    return f"{payload}&signature={signature}".encode()


class HttpTrading:
    """A ``Trading`` over the bench route: signs, POSTs, reads the answer (the order is final: IOC)."""

    def __init__(self, name: str, url: str, session: Any, quote: str, step: str) -> None:
        self.name, self.url, self.session, self.quote_currency = name, url, session, quote
        self.step = Decimal(step)

    async def place_order(self, request: Any) -> Any:
        from arbframe.core.models import Order, OrderStatus, OrderType

        body = signed_body(request.symbol, request.side.value.upper(), request.qty, request.price,
                           request.client_order_id)
        async with self.session.post(f"{self.url}/api/order", data=body, trace_request_ctx={
                "cid": request.client_order_id}, headers={"Content-Type": "application/x-www-form-urlencoded"}) as r:
            answer = json.loads(await r.read())
        filled = Decimal(answer["executedQty"])
        quote = Decimal(answer["cummulativeQuoteQty"])
        status = {"filled": OrderStatus.FILLED, "canceled": OrderStatus.CANCELED}.get(answer["status"],
                                                                                     OrderStatus.OPEN)
        return Order(id=answer["orderId"], ts=request_ts(), exchange=self.name, symbol=request.symbol,
                     side=request.side, order_type=OrderType.LIMIT, qty=request.qty, price=request.price,
                     status=status, filled_qty=filled, avg_price=quote / filled if filled else None,
                     fee=Decimal(answer["fee"]), fee_currency=answer["feeAsset"],
                     client_order_id=answer["clientOrderId"], exchange_order_id=answer["orderId"], filled_quote=quote)

    async def fetch_order(self, symbol: str, order_id: str) -> Any:
        raise AssertionError("IOC answers are final: no lookups in this benchmark")

    async def cancel_order(self, symbol: str, order_id: str) -> Any:
        raise AssertionError("nothing rests")

    def market_rules(self, symbol: str) -> Any:
        from arbframe.core.models import MarketRules

        return MarketRules(symbol, None, self.step)


def request_ts() -> Any:
    from arbframe.core.models import utcnow

    return utcnow()


def books() -> tuple[Any, Any]:
    """The books the decision saw (the server's seeded books at the same mids)."""
    from arbframe.core.models import BookLevel, OrderBook, utcnow
    from arbframe.testing.fake_venue import FakeVenue

    out = []
    for name, tick, seed in (("upbit", "1000", 3), ("binance", "0.01", 5)):
        fake = FakeVenue(mids={"BTC": MIDS[name]}, tick=tick, levels=50, seed=seed)
        bids, asks = fake.book("BTC")
        out.append(OrderBook(name, "BTC", tuple(BookLevel(p, q) for p, q in bids),
                             tuple(BookLevel(p, q) for p, q in asks), utcnow()))
    return out[0], out[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(triggers: int, ports: tuple[int, int]) -> dict[str, list[float]]:
    import aiohttp
    from arbframe_storage_csv.storage import CsvStorage
    from prometheus_client import CollectorRegistry

    from arbframe.builtins.storage import MemoryStorage
    from arbframe.core.models import IdGenerator, Side
    from arbframe.execution.base import LegSpec
    from arbframe.execution.config import LiveConfig
    from arbframe.execution.live import LiveExecutor, Venue
    from arbframe.execution.orders import client_order_id
    from arbframe.kernel.storage_writer import StorageWriter

    submitted = Submitted()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, trace_configs=[submitted.config()]) as session:
        up = HttpTrading("upbit", f"http://127.0.0.1:{ports[0]}", session, "KRW", "0.0001")
        bn = HttpTrading("binance", f"http://127.0.0.1:{ports[1]}", session, "USDT", "0.00001")
        venues = {"upbit": Venue("upbit", up, "KRW", up), "binance": Venue("binance", bn, "USDT", bn)}
        tmp = Path(tempfile.mkdtemp(prefix="bench-exec-"))
        writer = StorageWriter(CsvStorage({"data_dir": str(tmp / "csv")}), spool_dir=tmp / "spool")
        cfg = LiveConfig(limits=LiveConfig().limits)
        executors = {}
        for label, storage in (("ours (memory storage)", MemoryStorage()), ("ours (CSV via the writer)", writer)):
            ex = LiveExecutor(venues, domestic="upbit", foreign="binance", storage=storage, cfg=cfg,
                              ids=IdGenerator(1), registry=CollectorRegistry())
            ex.risk.reconciling = None
            executors[label] = ex
        up_book, bn_book = books()
        qty = Decimal("0.001")
        legs = (LegSpec(up_book, Side.SELL, None, "KRW", qty), LegSpec(bn_book, Side.BUY, None, "USDT", qty))
        samples: dict[str, list[float]] = {"bare aiohttp (sign + send both)": [], **{k: [] for k in executors}}
        warmup = 50
        for n in range(triggers + warmup):
            # bare: the same two signed requests, concurrently
            cids = (f"bare-{n}-d", f"bare-{n}-f")
            t0 = time.perf_counter()

            async def post(trading: HttpTrading, side: str, price: Decimal, cid: str) -> None:
                body = signed_body("BTC", side, qty, price, cid)
                async with session.post(f"{trading.url}/api/order", data=body, trace_request_ctx={"cid": cid},
                                        headers={"Content-Type": "application/x-www-form-urlencoded"}) as r:
                    await r.read()

            waits = [submitted.wait(c) for c in cids]
            sends = asyncio.gather(post(up, "SELL", Decimal(99_800_000), cids[0]),
                                   post(bn, "BUY", Decimal("70140.01"), cids[1]))
            done = await asyncio.gather(*waits)
            if n >= warmup:
                samples["bare aiohttp (sign + send both)"].append(max(done) - t0)
            await sends
            for index, (label, ex) in enumerate(executors.items()):
                pid = f"bench{index}-{n:08d}"
                waits = [submitted.wait(client_order_id(pid, "open", leg, "first", 0))
                         for leg in ("domestic", "foreign")]
                t0 = time.perf_counter()
                ex.execute(legs, qty, up_book.ts, pid, purpose="open")
                done = await asyncio.gather(*waits)
                if n >= warmup:
                    samples[label].append(max(done) - t0)
                await ex.wait_idle()
                reports = ex.completed()
                assert reports and reports[0].status == "filled", reports
        writer.close()
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--triggers", type=int, default=1000)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve()
        return 0
    import logging

    logging.basicConfig(level=logging.INFO, stream=open(os.devnull, "w"))  # noqa: SIM115 - the service logs INFO
    proc = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("PORTS="):
            raise SystemExit(f"fake venues did not start: {line!r}")
        ports = tuple(int(p) for p in line.split("=", 1)[1].split())
        started = time.perf_counter()
        samples = asyncio.run(run(args.triggers, ports))  # type: ignore[arg-type]
        elapsed = time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait(10)
    bare = samples["bare aiohttp (sign + send both)"]
    print(f"decision -> both order requests written, {args.triggers} triggers each ({elapsed:.1f}s in all)")
    print(f"{'path':<34} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}   p50 / p99 minus bare's | paired overhead "
          "p50 / p99")
    for label, values in samples.items():
        p50, p99 = percentile(values, 0.5) * 1e3, percentile(values, 0.99) * 1e3
        over = ""
        if values is not bare:
            # paired: each trigger against the bare run just before it (same load), then the percentiles
            paired = [v - b for v, b in zip(values, bare, strict=True)]
            over = (f"   {p50 - percentile(bare, 0.5) * 1e3:+.3f} / {p99 - percentile(bare, 0.99) * 1e3:+.3f} ms"
                    f" | {percentile(paired, 0.5) * 1e3:+.3f} / {percentile(paired, 0.99) * 1e3:+.3f} ms")
        print(f"{label:<34} {p50:8.3f} {p99:8.3f} {statistics.mean(values) * 1e3:8.3f}{over}")
    print("target: p99 overhead < 1 ms (issue 20)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
