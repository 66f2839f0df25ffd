"""A local fake of Binance's spot REST API and market-data WebSocket streams, for tests and benchmarks.

It speaks the documented formats (``/api/v3/time``, ``exchangeInfo``, ``depth``, ``ticker/bookTicker``,
``account``, ``order`` POST/GET/DELETE, ``openOrders``; ``/ws/<stream>`` and ``/stream?streams=`` with
``<symbol>@bookTicker`` and ``<symbol>@depth<N>[@100ms]``), verifies the API key, the HMAC-SHA256 signature over
the exact query string + body received, ``timestamp`` against its own clock and ``recvWindow``; sends
``X-MBX-USED-WEIGHT-1M`` (and ``X-MBX-ORDER-COUNT-10S`` on orders); pings WebSocket clients and drops those that
do not answer with a pong; and injects faults on demand::

    fake.fail("/api/v3/depth", "429", retry_after=1)      # 429 + Retry-After
    fake.fail("/api/v3/order", "500_after", method="POST")  # place the order, then answer 500
    fake.fail("/api/v3/account", "1021")                     # timestamp outside recvWindow

Fault kinds: ``429``, ``418``, ``1021``, ``500``, ``500_after``, ``malformed``, ``slow`` (``delay``),
``slow_after``, ``drop``, ``drop_after``, ``error`` (``status``/``code``/``msg``).

Run standalone (benchmarks, manual tests): ``python -m arbframe_exchange_binance.testing.fake_server --port 0``
prints ``BASE_URL=... WS_URL=...`` and serves until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any
from urllib.parse import parse_qsl

from arbframe_exchange_binance.signing import verify

D = Decimal

DEFAULT_MARKETS: dict[str, dict[str, Any]] = {
    # market: mid price (near the fake Upbit's KRW prices / its KRW-USDT rate), tick, step, min notional
    # (NOTIONAL filter), base, quote
    "BTCUSDT": {"mid": "100000.00", "tick": "0.01", "step": "0.00001", "min_notional": "5", "base": "BTC",
                "quote": "USDT", "level_qty": "0.5"},
    "ETHUSDT": {"mid": "3500.00", "tick": "0.01", "step": "0.0001", "min_notional": "5", "base": "ETH",
                "quote": "USDT", "level_qty": "5"},
    "XRPUSDT": {"mid": "2.1000", "tick": "0.0001", "step": "0.1", "min_notional": "5", "base": "XRP",
                "quote": "USDT", "level_qty": "5000"},
    "ETHBTC": {"mid": "0.05000", "tick": "0.00001", "step": "0.0001", "min_notional": "0.0001", "base": "ETH",
               "quote": "BTC", "level_qty": "10", "legacy_min_notional": True},
}


@dataclass
class Fault:
    path: str
    kind: str
    times: int = 1
    method: str | None = None
    retry_after: float | None = None
    delay: float = 0.0
    status: int = 400
    code: int = -1000
    msg: str = "An unknown error occurred while processing the request."


@dataclass
class WsConn:
    streams: list[str]
    combined: bool
    ws: Any
    opened_at: float
    closed_at: float | None = None
    pongs: list[bytes] = field(default_factory=list)
    sent: int = 0


def _fmt(value: Decimal, places: int = 8) -> str:
    return f"{value.quantize(D(1).scaleb(-places), ROUND_DOWN):f}"


class FakeBinance:
    def __init__(
        self,
        *,
        api_key: str = "fake-api-key",
        api_secret: str = "fake-api-secret",
        markets: dict[str, dict[str, Any]] | None = None,
        clock_offset_ms: float = 0.0,
        weight_limit: int = 6000,
        orders_per_10s: int = 100,
        levels: int = 100,
        push_interval: float | None = 0.05,
        ping_interval: float = 20.0,
        pong_timeout: float = 60.0,
        max_connection_age: float = 24 * 3600.0,
        seed: int = 7,
    ) -> None:
        self.api_key = api_key
        self.api_secret = api_secret
        self.markets = {k: dict(v) for k, v in (markets or DEFAULT_MARKETS).items()}
        self.clock_offset_ms = clock_offset_ms
        self.weight_limit = weight_limit
        self.orders_per_10s = orders_per_10s
        self.levels = levels
        self.push_interval = push_interval
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        self.max_connection_age = max_connection_age
        self.rng = random.Random(seed)
        self.books: dict[str, dict[str, Any]] = {m: self._make_book(m) for m in self.markets}
        self.balances: dict[str, list[Decimal]] = {
            "USDT": [D("100000"), D(0)], "BTC": [D("2"), D(0)], "ETH": [D("20"), D(0)],
            "XRP": [D("50000"), D(0)], "BNB": [D(0), D(0)],
        }
        self.orders: dict[int, dict[str, Any]] = {}
        self.next_order_id = 1000
        self.next_trade_id = 1
        self.faults: list[Fault] = []
        self.requests: list[dict[str, Any]] = []
        self.weight_used: dict[int, int] = {}
        self.order_counts: dict[int, int] = {}
        self.connections: list[WsConn] = []
        self.silent = False  # stop pushing stream data (connections stay open)
        self.refuse_ws = False  # answer WebSocket upgrades with 503 (stream endpoint down)
        self.answer_pings = True
        self.base_url = ""
        self.ws_url = ""
        self._runner: Any = None
        self._tasks: list[asyncio.Task[Any]] = []
        self.flood_messages = 0  # >0: each new connection first receives this many book messages back to back
        # rewrites every order answer (new order and look-ups) after the order was accepted: tests send numbers
        # as JSON numbers, bad fields or fees in several assets with it
        self.order_answer_edit: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self._flood_cache: dict[tuple[Any, ...], list[list[list[str]]]] = {}

    # ------------------------------------------------------------------ books
    def _make_book(self, market: str) -> dict[str, Any]:
        spec = self.markets[market]
        mid, tick = D(spec["mid"]), D(spec["tick"])
        return {"mid": mid, "tick": tick, "id": 1, **self._levels(market, mid, tick)}

    def _levels(self, market: str, mid: Decimal, tick: Decimal) -> dict[str, Any]:
        spec = self.markets[market]
        base_qty = D(spec["level_qty"])
        step = D(spec["step"])
        bids, asks = [], []
        for i in range(self.levels):
            q1 = (base_qty * D(self.rng.randint(5, 20)) / D(10)).quantize(step, ROUND_DOWN)
            q2 = (base_qty * D(self.rng.randint(5, 20)) / D(10)).quantize(step, ROUND_DOWN)
            bids.append([mid - tick * (i + 1), q1])
            asks.append([mid + tick * (i + 1), q2])
        return {"bids": bids, "asks": asks}

    def tick(self, market: str | None = None) -> None:
        """Move every book (or one) like a real one, deterministically; bumps its update id.

        Now and then the price moves a tick (a level is taken on one side and a new best appears on the other);
        a few levels per side change size; the rest of the book stays as it was.
        """
        for m in [market] if market else list(self.books):
            book = self.books[m]
            tick, step = book["tick"], D(self.markets[m]["step"])
            base_qty = D(self.markets[m]["level_qty"])
            bids, asks = book["bids"], book["asks"]

            def qty(base_qty: Decimal = base_qty, step: Decimal = step) -> Decimal:
                return (base_qty * D(self.rng.randint(5, 20)) / D(10)).quantize(step, ROUND_DOWN)

            move = self.rng.choice((-1, 0, 0, 0, 1))
            if move > 0 and len(asks) > 1:  # the best ask is lifted; a new best bid one tick above
                asks.pop(0)
                asks.append([asks[-1][0] + tick, qty()])
                bids.insert(0, [bids[0][0] + tick, qty()])
                bids.pop()
                book["mid"] += tick
            elif move < 0 and len(bids) > 1:  # the best bid is hit; a new best ask one tick below
                bids.pop(0)
                bids.append([bids[-1][0] - tick, qty()])
                asks.insert(0, [asks[0][0] - tick, qty()])
                asks.pop()
                book["mid"] -= tick
            for side in (bids, asks):
                for _ in range(3):
                    side[self.rng.randrange(min(len(side), 20))][1] = qty()
            book["id"] += 1

    def set_book(self, market: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> None:
        book = self.books[market]
        book["bids"] = [[D(p), D(q)] for p, q in bids]
        book["asks"] = [[D(p), D(q)] for p, q in asks]
        book["id"] += 1

    def depth_payload(self, market: str, limit: int) -> dict[str, Any]:
        b = self.books[market]
        return {
            "lastUpdateId": b["id"],
            "bids": [[_fmt(p), _fmt(q)] for p, q in b["bids"][:limit]],
            "asks": [[_fmt(p), _fmt(q)] for p, q in b["asks"][:limit]],
        }

    def book_ticker_payload(self, market: str) -> dict[str, Any]:
        b = self.books[market]
        (bp, bq), (ap, aq) = b["bids"][0], b["asks"][0]
        return {"symbol": market, "bidPrice": _fmt(bp), "bidQty": _fmt(bq), "askPrice": _fmt(ap),
                "askQty": _fmt(aq)}

    # ------------------------------------------------------------------ faults
    def fail(self, path: str, kind: str, *, times: int = 1, method: str | None = None, **kw: Any) -> Fault:
        fault = Fault(path=path, kind=kind, times=times, method=method, **kw)
        self.faults.append(fault)
        return fault

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for f in self.faults:
            if f.times > 0 and f.path == path and (f.method is None or f.method == method):
                f.times -= 1
                return f
        return None

    # -------------------------------------------------------------------- time
    def now_ms(self) -> int:
        return int(time.time() * 1000 + self.clock_offset_ms)

    # ----------------------------------------------------------------- server
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> FakeBinance:
        from aiohttp import web

        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/api/v3/ping", self._ping)
        app.router.add_get("/api/v3/time", self._time)
        app.router.add_get("/api/v3/exchangeInfo", self._exchange_info)
        app.router.add_get("/api/v3/depth", self._depth)
        app.router.add_get("/api/v3/ticker/bookTicker", self._book_ticker)
        app.router.add_get("/api/v3/account", self._account)
        app.router.add_post("/api/v3/order", self._new_order)
        app.router.add_get("/api/v3/order", self._query_order)
        app.router.add_delete("/api/v3/order", self._cancel_order)
        app.router.add_get("/api/v3/openOrders", self._open_orders)
        app.router.add_get("/ws/{stream}", self._ws)
        app.router.add_get("/stream", self._ws)
        # short shutdown: open WebSocket handlers must not hold a test's teardown for aiohttp's default 60 s
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        real_port = sock.getsockname()[1]
        self.base_url = f"http://{host}:{real_port}"
        self.ws_url = f"ws://{host}:{real_port}"
        if self.push_interval:
            self._tasks.append(asyncio.get_running_loop().create_task(self._pusher()))
        return self

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        for c in list(self.connections):
            if c.closed_at is None:
                with contextlib.suppress(Exception):
                    await c.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeBinance:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------- middleware
    _WEIGHTS = {"/api/v3/ping": 1, "/api/v3/time": 1, "/api/v3/exchangeInfo": 20, "/api/v3/account": 20,
                "/api/v3/openOrders": 6}

    def _weight(self, request: Any) -> int:
        path = request.path
        if path == "/api/v3/depth":
            limit = int(request.query.get("limit", "100") or 100)
            return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250
        if path == "/api/v3/ticker/bookTicker":
            return 2 if "symbol" in request.query else 4
        if path == "/api/v3/order":
            return 4 if request.method == "GET" else 1
        if path == "/api/v3/openOrders":
            return 6 if "symbol" in request.query else 80
        return self._WEIGHTS.get(path, 1)

    @property
    def used_weight(self) -> int:
        return self.weight_used.get(int(self.now_ms() // 60000), 0)

    def _json(self, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Any:
        from aiohttp import web

        h = {"X-MBX-USED-WEIGHT-1M": str(self.used_weight)}
        if headers:
            h.update(headers)
        return web.Response(text=json.dumps(data), status=status, content_type="application/json", headers=h)

    def _err(self, status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> Any:
        return self._json({"code": code, "msg": msg}, status, headers)

    async def _drop(self, request: Any) -> Any:
        from aiohttp import web

        if request.transport is not None:
            request.transport.abort()
        raise web.HTTPInternalServerError()

    @property
    def _middleware(self) -> Any:
        from aiohttp import web

        @web.middleware
        async def mw(request: Any, handler: Any) -> Any:
            if request.path.startswith("/ws/") or request.path == "/stream":
                return await handler(request)
            body = await request.text()
            raw_query = request.raw_path.partition("?")[2]
            self.requests.append({"method": request.method, "path": request.path, "query": raw_query,
                                  "body": body, "headers": dict(request.headers)})
            minute = int(self.now_ms() // 60000)
            self.weight_used[minute] = self.weight_used.get(minute, 0) + self._weight(request)
            fault = self._take_fault(request.method, request.path)
            if fault is not None:
                early = await self._apply_fault_before(fault, request)
                if early is not None:
                    return early
            if self.used_weight > self.weight_limit:
                return self._err(429, -1003, "Too much request weight used; current limit is "
                                 f"{self.weight_limit} request weight per 1 MINUTE.", {"Retry-After": "1"})
            request["raw_query"] = raw_query
            request["raw_body"] = body
            resp = await handler(request)
            if fault is not None:
                late = await self._apply_fault_after(fault, request)
                if late is not None:
                    return late
            return resp

        return mw

    async def _apply_fault_before(self, f: Fault, request: Any) -> Any:
        from aiohttp import web

        if f.kind == "429":
            return self._err(429, -1003, "Too much request weight used; please use WebSocket Streams.",
                             {"Retry-After": str(int(f.retry_after or 1))})
        if f.kind == "418":
            return self._err(418, -1003, "Way too much request weight used; IP banned until later.",
                             {"Retry-After": str(int(f.retry_after or 120))})
        if f.kind == "1021":
            return self._err(400, -1021, "Timestamp for this request is outside of the recvWindow.")
        if f.kind == "500":
            return web.Response(status=500, text="Internal Server Error")
        if f.kind == "malformed":
            return web.Response(status=200, text='{"lastUpdateId": 1, "bids": [["1.0", ',
                                content_type="application/json")
        if f.kind == "slow":
            await asyncio.sleep(f.delay)
            return None
        if f.kind == "drop":
            return await self._drop(request)
        if f.kind == "error":
            return self._err(f.status, f.code, f.msg)
        return None

    async def _apply_fault_after(self, f: Fault, request: Any) -> Any:
        from aiohttp import web

        if f.kind == "500_after":
            return self._err(500, -1007, "Timeout waiting for response from backend server. Send status "
                             "unknown; execution status unknown.") if f.code == -1007 else web.Response(
                status=500, text="Internal Server Error")
        if f.kind == "slow_after":
            await asyncio.sleep(f.delay)
            return None
        if f.kind == "drop_after":
            return await self._drop(request)
        return None

    # ------------------------------------------------------------- auth
    def _signed(self, request: Any) -> tuple[dict[str, str] | None, Any]:
        """Verify key, signature, timestamp and recvWindow; ``(params, None)`` or ``(None, error response)``."""
        if request.headers.get("X-MBX-APIKEY") != self.api_key:
            return None, self._err(401, -2015, "Invalid API-key, IP, or permissions for action.")
        query, body = request["raw_query"], request["raw_body"]
        total = query + body
        if "signature=" not in total:
            return None, self._err(400, -1102, "Mandatory parameter 'signature' was not sent, was empty/null, "
                                   "or malformed.")
        if not verify(self.api_secret, total):
            return None, self._err(400, -1022, "Signature for this request is not valid.")
        params = dict(parse_qsl(query, keep_blank_values=True))
        params.update({k: v for k, v in parse_qsl(body, keep_blank_values=True) if k not in params})
        try:
            ts = int(params["timestamp"])
        except (KeyError, ValueError):
            return None, self._err(400, -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, "
                                   "or malformed.")
        recv_window = float(params.get("recvWindow", "5000"))
        if recv_window > 60000:
            return None, self._err(400, -1131, "recvWindow must be less than 60000")
        server = self.now_ms()
        if not (ts < server + 1000 and server - ts <= recv_window):
            return None, self._err(400, -1021, "Timestamp for this request is outside of the recvWindow.")
        return params, None

    # ------------------------------------------------------------- public
    async def _ping(self, request: Any) -> Any:
        return self._json({})

    async def _time(self, request: Any) -> Any:
        return self._json({"serverTime": self.now_ms()})

    def _symbol_entry(self, market: str) -> dict[str, Any]:
        spec = self.markets[market]
        notional = (
            {"filterType": "MIN_NOTIONAL", "minNotional": _fmt(D(spec["min_notional"])), "applyToMarket": True,
             "avgPriceMins": 5}
            if spec.get("legacy_min_notional")
            else {"filterType": "NOTIONAL", "minNotional": _fmt(D(spec["min_notional"])), "applyMinToMarket": True,
                  "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5}
        )
        return {
            "symbol": market, "status": spec.get("status", "TRADING"), "baseAsset": spec["base"],
            "baseAssetPrecision": 8, "quoteAsset": spec["quote"], "quotePrecision": 8, "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
            "icebergAllowed": True, "ocoAllowed": True, "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": True, "cancelReplaceAllowed": True, "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": _fmt(D(spec["tick"])), "maxPrice": "1000000.00000000",
                 "tickSize": _fmt(D(spec["tick"]))},
                {"filterType": "LOT_SIZE", "minQty": _fmt(D(spec["step"])), "maxQty": "9000.00000000",
                 "stepSize": _fmt(D(spec["step"]))},
                {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000", "maxQty": "100.00000000",
                 "stepSize": "0.00000000"},
                notional,
                {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            ],
            "permissions": [], "permissionSets": [["SPOT"]], "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }

    async def _exchange_info(self, request: Any) -> Any:
        q = request.query
        if "symbol" in q:
            wanted = [q["symbol"]]
        elif "symbols" in q:
            try:
                wanted = json.loads(q["symbols"])
            except ValueError:
                return self._err(400, -1100, "Illegal characters found in parameter 'symbols'.")
        else:
            wanted = list(self.markets)
        for m in wanted:
            if m not in self.markets:
                return self._err(400, -1121, "Invalid symbol.")
        return self._json({
            "timezone": "UTC", "serverTime": self.now_ms(),
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                 "limit": self.weight_limit},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": self.orders_per_10s},
                {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
                {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
            ],
            "exchangeFilters": [],
            "symbols": [self._symbol_entry(m) for m in wanted],
        })

    async def _depth(self, request: Any) -> Any:
        market = request.query.get("symbol")
        if market not in self.books:
            return self._err(400, -1121, "Invalid symbol.")
        limit = int(request.query.get("limit", "100") or 100)
        if not 1 <= limit <= 5000:
            return self._err(400, -1100, "Illegal characters found in parameter 'limit'.")
        return self._json(self.depth_payload(market, limit))

    async def _book_ticker(self, request: Any) -> Any:
        market = request.query.get("symbol")
        if market is None:
            return self._json([self.book_ticker_payload(m) for m in self.books])
        if market not in self.books:
            return self._err(400, -1121, "Invalid symbol.")
        return self._json(self.book_ticker_payload(market))

    # ------------------------------------------------------------- private
    async def _account(self, request: Any) -> Any:
        params, err = self._signed(request)
        if err is not None:
            return err
        omit = params.get("omitZeroBalances") == "true"
        balances = [{"asset": a, "free": _fmt(f), "locked": _fmt(lk)} for a, (f, lk) in self.balances.items()
                    if not (omit and f == 0 and lk == 0)]
        return self._json({
            "makerCommission": 10, "takerCommission": 10, "buyerCommission": 0, "sellerCommission": 0,
            "commissionRates": {"maker": "0.00100000", "taker": "0.00100000", "buyer": "0.00000000",
                                "seller": "0.00000000"},
            "canTrade": True, "canWithdraw": True, "canDeposit": True, "brokered": False,
            "requireSelfTradePrevention": False, "preventSor": False, "updateTime": self.now_ms(),
            "accountType": "SPOT", "balances": balances, "permissions": ["SPOT"], "uid": 354937868,
        })

    def _open_by_client_id(self, client_id: str) -> dict[str, Any] | None:
        for o in self.orders.values():
            if o["clientOrderId"] == client_id and o["status"] in ("NEW", "PARTIALLY_FILLED"):
                return o
        return None

    def _find(self, params: dict[str, str]) -> dict[str, Any] | None:
        market = params.get("symbol")
        if "orderId" in params:
            o = self.orders.get(int(params["orderId"]))
            return o if o is not None and o["symbol"] == market else None
        cid = params.get("origClientOrderId")
        found = [o for o in self.orders.values() if o["clientOrderId"] == cid and o["symbol"] == market]
        return found[-1] if found else None

    def _filter_failure(self, market: str, otype: str, qty: Decimal | None, price: Decimal | None,
                        quote_qty: Decimal | None) -> str | None:
        spec = self.markets[market]
        tick, step, min_notional = D(spec["tick"]), D(spec["step"]), D(spec["min_notional"])
        if otype == "LIMIT" and (price is None or price <= 0 or price % tick != 0):
            return "PRICE_FILTER"
        if qty is not None:
            if otype == "LIMIT" and (qty < step or qty % step != 0 or qty > D(9000)):
                return "LOT_SIZE"
            if otype == "MARKET" and (qty <= 0 or qty > D(100)):
                return "MARKET_LOT_SIZE"
        ref = price if price is not None else self.books[market]["asks"][0][0]
        notional = quote_qty if quote_qty is not None else (qty or D(0)) * ref
        if notional < min_notional:
            return "MIN_NOTIONAL" if spec.get("legacy_min_notional") else "NOTIONAL"
        return None

    async def _new_order(self, request: Any) -> Any:
        params, err = self._signed(request)
        if err is not None:
            return err
        market = params.get("symbol", "")
        if market not in self.markets:
            return self._err(400, -1121, "Invalid symbol.")
        side, otype = params.get("side"), params.get("type")
        if side not in ("BUY", "SELL") or otype not in ("LIMIT", "MARKET"):
            return self._err(400, -1116, "Invalid orderType.")
        client_id = params.get("newClientOrderId") or f"fake{self.next_order_id}"
        if self._open_by_client_id(client_id) is not None:
            return self._err(400, -2010, "Duplicate order sent.")
        qty = D(params["quantity"]) if "quantity" in params else None
        price = D(params["price"]) if "price" in params else None
        quote_qty = D(params["quoteOrderQty"]) if "quoteOrderQty" in params else None
        if otype == "LIMIT" and (qty is None or price is None or "timeInForce" not in params):
            return self._err(400, -1102, "Mandatory parameter 'timeInForce' was not sent, was empty/null, or "
                             "malformed.")
        failure = self._filter_failure(market, otype, qty, price, quote_qty)
        if failure:
            return self._err(400, -1013, f"Filter failure: {failure}")
        spec = self.markets[market]
        base, quote = spec["base"], spec["quote"]
        book = self.books[market]
        levels = book["asks"] if side == "BUY" else book["bids"]
        crosses = otype == "MARKET" or (side == "BUY" and price >= levels[0][0]) or (
            side == "SELL" and price <= levels[0][0])
        fills: list[dict[str, str]] = []
        executed = D(0)
        cum_quote = D(0)
        if crosses:
            remaining_q = qty
            remaining_quote = quote_qty
            for lp, lq in levels:
                if otype == "LIMIT" and ((side == "BUY" and lp > price) or (side == "SELL" and lp < price)):
                    break
                if remaining_quote is not None:
                    take = min(lq, (remaining_quote / lp).quantize(D(spec["step"]), ROUND_DOWN))
                else:
                    take = min(lq, remaining_q)
                if take <= 0:
                    break
                executed += take
                cum_quote += take * lp
                commission_asset = base if side == "BUY" else quote
                commission = (take if side == "BUY" else take * lp) * D("0.001")
                fills.append({"price": _fmt(lp), "qty": _fmt(take), "commission": _fmt(commission),
                              "commissionAsset": commission_asset, "tradeId": self.next_trade_id})
                self.next_trade_id += 1
                if remaining_quote is not None:
                    remaining_quote -= take * lp
                    if remaining_quote <= 0:
                        break
                else:
                    remaining_q -= take
                    if remaining_q <= 0:
                        break
        # balances
        if side == "BUY":
            need = cum_quote if crosses else qty * price  # type: ignore[operator]
            if self.balances.setdefault(quote, [D(0), D(0)])[0] < need:
                return self._err(400, -2010, "Account has insufficient balance for requested action.")
        else:
            need = executed if crosses and otype == "MARKET" else qty  # type: ignore[assignment]
            if self.balances.setdefault(base, [D(0), D(0)])[0] < (need or D(0)):
                return self._err(400, -2010, "Account has insufficient balance for requested action.")
        fee_total = sum((D(f["commission"]) for f in fills), D(0))
        if crosses and executed > 0:
            if side == "BUY":
                self.balances[quote][0] -= cum_quote
                self.balances.setdefault(base, [D(0), D(0)])[0] += executed - fee_total
            else:
                self.balances[base][0] -= executed
                self.balances.setdefault(quote, [D(0), D(0)])[0] += cum_quote - fee_total
        orig_qty = qty if qty is not None else executed
        if crosses and (otype == "MARKET" or executed >= orig_qty):
            status = "FILLED" if executed > 0 else "EXPIRED"
        elif crosses and executed > 0:
            status = "PARTIALLY_FILLED"
        else:
            status = "NEW"
        if status in ("NEW", "PARTIALLY_FILLED"):
            rest = orig_qty - executed
            if side == "BUY":
                self.balances[quote][0] -= rest * price  # type: ignore[operator]
                self.balances[quote][1] += rest * price  # type: ignore[operator]
            else:
                self.balances[base][0] -= rest
                self.balances[base][1] += rest
        now = self.now_ms()
        order = {
            "symbol": market, "orderId": self.next_order_id, "orderListId": -1, "clientOrderId": client_id,
            "transactTime": now, "price": _fmt(price or D(0)), "origQty": _fmt(orig_qty),
            "executedQty": _fmt(executed), "origQuoteOrderQty": _fmt(quote_qty or D(0)),
            "cummulativeQuoteQty": _fmt(cum_quote), "status": status,
            "timeInForce": params.get("timeInForce", "GTC"), "type": otype, "side": side, "workingTime": now,
            "selfTradePreventionMode": "EXPIRE_MAKER", "time": now, "updateTime": now,
        }
        self.orders[self.next_order_id] = order
        self.next_order_id += 1
        window = int(now // 10000)
        self.order_counts[window] = self.order_counts.get(window, 0) + 1
        answer = {k: v for k, v in order.items() if k not in ("time", "updateTime")}
        answer["fills"] = fills
        if self.order_answer_edit is not None:
            answer = self.order_answer_edit(answer)
        return self._json(answer, headers={"X-MBX-ORDER-COUNT-10S": str(self.order_counts[window]),
                                           "X-MBX-ORDER-COUNT-1D": str(sum(self.order_counts.values()))})

    @staticmethod
    def _query_view(o: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in o.items() if k != "transactTime"}
        out.update(stopPrice="0.00000000", icebergQty="0.00000000", isWorking=True)
        return out

    async def _query_order(self, request: Any) -> Any:
        params, err = self._signed(request)
        if err is not None:
            return err
        o = self._find(params)
        if o is None:
            return self._err(400, -2013, "Order does not exist.")
        view = self._query_view(o)
        return self._json(self.order_answer_edit(view) if self.order_answer_edit is not None else view)

    async def _cancel_order(self, request: Any) -> Any:
        params, err = self._signed(request)
        if err is not None:
            return err
        o = self._find(params)
        if o is None or o["status"] not in ("NEW", "PARTIALLY_FILLED"):
            return self._err(400, -2011, "Unknown order sent.")
        spec = self.markets[o["symbol"]]
        rest = D(o["origQty"]) - D(o["executedQty"])
        if o["side"] == "BUY":
            amount = rest * D(o["price"])
            self.balances[spec["quote"]][1] -= amount
            self.balances[spec["quote"]][0] += amount
        else:
            self.balances[spec["base"]][1] -= rest
            self.balances[spec["base"]][0] += rest
        o["status"] = "CANCELED"
        o["updateTime"] = self.now_ms()
        answer = {k: v for k, v in o.items() if k not in ("time", "updateTime", "workingTime")}
        answer["origClientOrderId"] = o["clientOrderId"]
        answer["clientOrderId"] = params.get("newClientOrderId") or f"cancel{o['orderId']}"
        answer["transactTime"] = self.now_ms()
        return self._json(answer)

    async def _open_orders(self, request: Any) -> Any:
        params, err = self._signed(request)
        if err is not None:
            return err
        market = params.get("symbol")
        return self._json([self._query_view(o) for o in self.orders.values()
                           if o["status"] in ("NEW", "PARTIALLY_FILLED") and (market is None or
                                                                              o["symbol"] == market)])

    # --------------------------------------------------------------- streams
    def stream_payload(self, stream: str) -> dict[str, Any] | None:
        market_l, _, kind = stream.partition("@")
        market = market_l.upper()
        if market not in self.books:
            return None
        b = self.books[market]
        if kind == "bookTicker":
            (bp, bq), (ap, aq) = b["bids"][0], b["asks"][0]
            return {"u": b["id"], "s": market, "b": _fmt(bp), "B": _fmt(bq), "a": _fmt(ap), "A": _fmt(aq)}
        if kind.startswith("depth"):
            levels = kind[5:].split("@")[0]
            n = int(levels) if levels else 20
            return self.depth_payload(market, n)
        return None

    def message(self, conn: WsConn, stream: str) -> str | None:
        payload = self.stream_payload(stream)
        if payload is None:
            return None
        return json.dumps({"stream": stream, "data": payload} if conn.combined else payload)

    async def _ws(self, request: Any) -> Any:
        from aiohttp import WSMsgType, web

        if self.refuse_ws:
            return web.Response(status=503, text="Service Unavailable")
        if request.path == "/stream":
            streams = [s for s in request.query.get("streams", "").split("/") if s]
            combined = True
        else:
            streams = [request.match_info["stream"]]
            combined = False
        ws = web.WebSocketResponse(autoping=False, timeout=1.0)
        await ws.prepare(request)
        conn = WsConn(streams=streams, combined=combined, ws=ws, opened_at=time.monotonic())
        self.connections.append(conn)
        pinger = asyncio.get_running_loop().create_task(self._pinger(conn))
        try:
            if self.flood_messages:
                await self._flood(conn)
            else:
                for s in streams:
                    m = self.message(conn, s)
                    if m is not None and not self.silent:
                        await ws.send_str(m)
                        conn.sent += 1
            async for msg in ws:
                if msg.type == WSMsgType.PING:
                    await ws.pong(msg.data)
                elif msg.type == WSMsgType.PONG:
                    conn.pongs.append(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    await self._ws_request(conn, msg.data)
        finally:
            pinger.cancel()
            conn.closed_at = time.monotonic()
        return ws

    FLOOD_SNAPSHOTS = 500

    def _flood_templates(self, streams: tuple[str, ...], combined: bool) -> list[list[str]]:
        """``FLOOD_SNAPSHOTS`` successive snapshots per stream (the book evolving as :meth:`tick` moves it),
        serialized once with a hole for the update id; cached, so every client gets the same sequence."""
        key = (streams, combined)
        cached = self._flood_cache.get(key)
        if cached is not None:
            return cached
        per_stream = []
        for stream in streams:
            market = stream.partition("@")[0].upper()
            seq = []
            for _ in range(self.FLOOD_SNAPSHOTS):
                if market in self.books:
                    self.tick(market)
                payload = self.stream_payload(stream)
                if payload is None:
                    break
                payload["u" if "u" in payload else "lastUpdateId"] = -424242
                body = {"stream": stream, "data": payload} if combined else payload
                seq.append(json.dumps(body).split("-424242"))
            if seq:
                per_stream.append(seq)
        self._flood_cache[key] = per_stream
        return per_stream

    async def _flood(self, conn: WsConn) -> None:
        """Benchmarks: ``flood_messages`` book messages back to back, streams interleaved, each stream cycling
        through evolving snapshots with increasing update ids; then ``{"e": "floodEnd"}``."""
        per_stream = self._flood_templates(tuple(conn.streams), conn.combined)
        base = 10**9
        send = conn.ws.send_str
        n_streams = len(per_stream)
        for i in range(self.flood_messages):
            seq = per_stream[i % n_streams]
            head, tail = seq[(i // n_streams) % len(seq)]
            await send(f"{head}{base + i}{tail}")
            conn.sent += 1
        await send(json.dumps({"e": "floodEnd"}))

    async def _ws_request(self, conn: WsConn, text: str) -> None:
        try:
            req = json.loads(text)
        except ValueError:
            return
        method, params, rid = req.get("method"), req.get("params") or [], req.get("id")
        if method == "SUBSCRIBE":
            conn.streams.extend(p for p in params if p not in conn.streams)
            await conn.ws.send_str(json.dumps({"result": None, "id": rid}))
        elif method == "UNSUBSCRIBE":
            conn.streams[:] = [s for s in conn.streams if s not in params]
            await conn.ws.send_str(json.dumps({"result": None, "id": rid}))
        elif method == "LIST_SUBSCRIPTIONS":
            await conn.ws.send_str(json.dumps({"result": list(conn.streams), "id": rid}))

    async def _pinger(self, conn: WsConn) -> None:
        n = 0
        try:
            while True:
                age = time.monotonic() - conn.opened_at
                wait = min(self.ping_interval, max(0.0, self.max_connection_age - age))
                await asyncio.sleep(wait)
                if time.monotonic() - conn.opened_at >= self.max_connection_age:
                    await conn.ws.close()
                    return
                n += 1
                payload = f"p{n}".encode()
                before = len(conn.pongs)
                await conn.ws.ping(payload)
                deadline = time.monotonic() + self.pong_timeout
                while time.monotonic() < deadline and not any(p == payload for p in conn.pongs[before:]):
                    await asyncio.sleep(min(0.01, self.pong_timeout / 10))
                if not any(p == payload for p in conn.pongs[before:]):
                    await conn.ws.close()
                    return
        except (asyncio.CancelledError, ConnectionError, RuntimeError):
            return

    async def push(self, market: str | None = None) -> int:
        """Send the current book of ``market`` (or all) to every subscribed connection; returns messages sent."""
        sent = 0
        for conn in list(self.connections):
            if conn.closed_at is not None or conn.ws.closed:
                continue
            for s in list(conn.streams):
                if market is not None and s.partition("@")[0] != market.lower():
                    continue
                m = self.message(conn, s)
                if m is None:
                    continue
                with contextlib.suppress(Exception):
                    await conn.ws.send_str(m)
                    conn.sent += 1
                    sent += 1
        return sent

    async def _pusher(self) -> None:
        while True:
            await asyncio.sleep(self.push_interval or 0.05)
            if self.silent:
                continue
            self.tick()
            await self.push()

    async def drop_ws(self) -> int:
        """Close every WebSocket connection abruptly (as a network failure would)."""
        n = 0
        for conn in list(self.connections):
            if conn.closed_at is None and not conn.ws.closed:
                with contextlib.suppress(Exception):
                    transport = conn.ws._req.transport
                    if transport is not None:
                        transport.abort()
                n += 1
        return n

    async def server_shutdown(self) -> None:
        """Send the documented ``serverShutdown`` event on every open connection."""
        for conn in list(self.connections):
            if conn.closed_at is None and not conn.ws.closed:
                event = {"e": "serverShutdown", "E": self.now_ms()}
                msg = {"stream": "serverShutdown", "data": event} if conn.combined else event
                with contextlib.suppress(Exception):
                    await conn.ws.send_str(json.dumps(msg))

    def open_connections(self) -> list[WsConn]:
        return [c for c in self.connections if c.closed_at is None and not c.ws.closed]


class FakeBinanceThread:
    """A :class:`FakeBinance` served from its own event loop in a daemon thread (for subprocess tests)."""

    def __init__(self, **kw: Any) -> None:
        self.fake = FakeBinance(**kw)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="fake-binance")

    def __enter__(self) -> FakeBinance:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.fake.start(), self.loop).result(10)
        return self.fake

    def call(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.fake.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve a fake Binance spot API on 127.0.0.1")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--push-interval", type=float, default=0.05)
    parser.add_argument("--flood", type=int, default=0, help="book messages sent back to back on each connection")
    parser.add_argument("--levels", type=int, default=100)
    parser.add_argument("--weight-limit", type=int, default=6000, help="REQUEST_WEIGHT per minute")
    args = parser.parse_args(argv)

    async def serve() -> None:
        fake = FakeBinance(push_interval=args.push_interval or None, levels=args.levels,
                           weight_limit=args.weight_limit)
        fake.flood_messages = args.flood
        await fake.start(args.host, args.port)
        print(f"BASE_URL={fake.base_url} WS_URL={fake.ws_url}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await fake.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
