"""A local fake of Binance's spot REST API and market-data streams on :class:`arbframe.testing.fake_venue.FakeVenue`.

It speaks Binance's documented formats (``/api/v3/time``, ``exchangeInfo``, ``depth``, ``ticker/bookTicker``,
``account``, ``order`` POST/GET/DELETE, ``order/test``, ``openOrders``; combined streams ``/stream?streams=`` with
``<symbol>@bookTicker`` and ``<symbol>@depth<N>[@100ms]``), checks the API key, the HMAC-SHA256 signature over
the exact query string + body received, ``timestamp`` against its own clock and ``recvWindow``; sends
``X-MBX-USED-WEIGHT-1M`` (and ``X-MBX-ORDER-COUNT-10S`` on orders); pings WebSocket clients and drops those that
do not answer with a pong. Orders go to the shared matching engine (``place_limit``: LIMIT GTC/IOC/FOK, MARKET as
an IOC up to the price its quantity reaches; fees in the base asset on a buy, in USDT on a sell; a client order id
is refused only while its order is open, as Binance does) and are answered in Binance's shapes
(``newOrderRespType=FULL`` fills with ``commission``/``commissionAsset``; an IOC's rest ``EXPIRED``).

Faults use the shared vocabulary (``fake.inject(kind, count, path=...)``, :data:`FAULT_KINDS`), answered the
way Binance answers: ``venue_error`` is ``{"code": code, "msg": msg}`` with HTTP ``status`` (default ``-1000``,
400), ``auth`` is ``-2015`` (401); order refusals are ``-2010`` (rejected, insufficient balance, duplicate),
``-1121`` (unknown symbol), ``-2011`` / ``-2013`` (cancel / look-up of an unknown order)::

    fake.inject("rate_limited", retry_after=1, path="/api/v3/depth")     # 429 + Retry-After
    fake.inject("error_after_accept")                                      # order placed, then HTTP 500
    fake.inject("venue_error", code=-1021, msg="Timestamp for this request is outside of the recvWindow.")

Run standalone (benchmarks, manual tests): ``python -m arbframe_exchange_binance.testing.fake_server --port 0``
prints ``BASE_URL=... WS_URL=...`` and serves until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any, ClassVar
from urllib.parse import parse_qsl

from arbframe.testing.fake_venue import FakeOrder, FakeVenue, Fault, OrderRefused
from arbframe_exchange_binance.signing import verify

D = Decimal

DEFAULT_MARKETS: dict[str, dict[str, str]] = {
    # market: mid price (near the fake Upbit's KRW prices / its KRW-USDT rate), tick, step, min notional
    # (NOTIONAL filter), size of a book level
    "BTCUSDT": {"mid": "100000.00", "tick": "0.01", "step": "0.00001", "min_notional": "5", "level_qty": "0.5"},
    "ETHUSDT": {"mid": "3500.00", "tick": "0.01", "step": "0.0001", "min_notional": "5", "level_qty": "5"},
    "XRPUSDT": {"mid": "2.1000", "tick": "0.0001", "step": "0.1", "min_notional": "5", "level_qty": "5000"},
}
DEFAULT_BALANCES = {"USDT": "100000", "BTC": "2", "ETH": "20", "XRP": "50000", "BNB": "0"}
_STATUS = {"new": "NEW", "partially_filled": "PARTIALLY_FILLED", "filled": "FILLED", "canceled": "CANCELED"}
#: OrderRefused.reason -> (HTTP status, Binance code, msg)
_REFUSALS = {
    "insufficient_balance": (400, -2010, "Account has insufficient balance for requested action."),
    "duplicate_client_id": (400, -2010, "Duplicate order sent."),
    "unknown_symbol": (400, -1121, "Invalid symbol."),
    "bad_order": (400, -1100, "Illegal characters found in a parameter."),
    "unknown_order": (400, -2011, "Unknown order sent."),
    "not_open": (400, -2011, "Unknown order sent."),
}


def _fmt(value: Decimal, places: int = 8) -> str:
    return f"{value.quantize(D(1).scaleb(-places), ROUND_DOWN):f}"


@dataclass
class WsConn:
    streams: list[str]
    ws: Any
    opened_at: float
    closed_at: float | None = None
    pongs: list[bytes] = field(default_factory=list)
    sent: int = 0


@dataclass
class Received:
    """One request as it arrived (for signature tests): method, path, raw query, raw body, headers."""

    method: str
    path: str
    query: str
    body: str
    headers: dict[str, str]


class FakeBinance(FakeVenue):
    name = "binance"
    quote = "USDT"
    default_fees: ClassVar[dict[str, tuple[Decimal, str]]] = {"buy": (D("0.001"), "base"),
                                                              "sell": (D("0.001"), "quote")}
    duplicate_client_id = "open"
    qty_step = D("0.00001")
    fee_places = 8  # commissions as reported (8 decimals): the balance moves by what an answer says
    FLOOD_SNAPSHOTS = 500

    def __init__(self, *, api_key: str = "fake-api-key", api_secret: str = "fake-api-secret",
                 markets: dict[str, dict[str, str]] | None = None, clock_offset_ms: float = 0.0,
                 weight_limit: int = 6000, orders_per_10s: int = 100, levels: int = 100,
                 push_interval: float | None = 0.05, ping_interval: float = 20.0, pong_timeout: float = 60.0,
                 seed: int = 7, balances: dict[str, Any] | None = None) -> None:
        self.markets = {m: dict(spec) for m, spec in (markets or DEFAULT_MARKETS).items()}
        self.symbols = {m[: -len(self.quote)]: m for m in self.markets}  # BTC -> BTCUSDT
        super().__init__(mids={s: self.markets[m]["mid"] for s, m in self.symbols.items()}, levels=levels, seed=seed,
                         balances=DEFAULT_BALANCES if balances is None else balances)
        self.api_key, self.api_secret = api_key, api_secret
        self.clock_offset_ms = clock_offset_ms
        self.weight_limit, self.orders_per_10s = weight_limit, orders_per_10s
        self.push_interval, self.ping_interval, self.pong_timeout = push_interval, ping_interval, pong_timeout
        self.sides: dict[str, dict[str, Any]] = {s: self._make_book(s) for s in self.symbols}
        self.received: list[Received] = []
        self.weight_used: dict[int, int] = {}
        self.order_counts: dict[int, int] = {}
        self.order_info: dict[str, dict[str, str]] = {}  # venue id -> type, timeInForce, why it ended
        self.connections: list[WsConn] = []
        self.silent = False  # stop pushing stream data (connections stay open)
        self.refuse_ws = False  # answer WebSocket upgrades with 503 (stream endpoint down)
        self.flood_messages = 0  # >0: each new connection first receives this many book messages back to back
        #: rewrites every order answer (placement and look-ups): tests send numbers as JSON numbers, bad fields...
        self.order_answer_edit: Any = None
        #: the next this many order look-ups answer -2013 "Order does not exist." even for a known order (Binance's
        #: query side lags its matching engine: an order just placed may not be found yet)
        self.lookup_misses = 0
        self._flood_cache: dict[tuple[str, ...], list[list[list[str]]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # ---------------------------------------------------------------------------------------------- books
    def market(self, symbol: str) -> str:
        return self.symbols[symbol.upper()]

    def _spec(self, symbol: str) -> dict[str, str]:
        return self.markets[self.market(symbol)]

    def price_step(self, symbol: str, price: Decimal) -> Decimal:
        return D(self._spec(symbol)["tick"])

    def _qty(self, symbol: str) -> Decimal:
        spec = self._spec(symbol)
        return (D(spec["level_qty"]) * D(self._rng.randint(5, 20)) / D(10)).quantize(D(spec["step"]), ROUND_DOWN)

    def _make_book(self, symbol: str) -> dict[str, Any]:
        mid, tick = self.mids[symbol], self.price_step(symbol, D(0))
        return {"id": 1, "bids": [[mid - tick * (i + 1), self._qty(symbol)] for i in range(self.levels)],
                "asks": [[mid + tick * (i + 1), self._qty(symbol)] for i in range(self.levels)]}

    def base_book(self, symbol: str) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        book = self.sides[symbol]
        return [(p, q) for p, q in book["bids"]], [(p, q) for p, q in book["asks"]]

    def _changed(self, symbol: str) -> None:
        book = self.sides[symbol]
        book["id"] += 1
        if book["bids"] and book["asks"]:
            self.set_mid(symbol, (book["bids"][0][0] + book["asks"][0][0]) / 2)

    def set_book(self, market: str, bids: list[tuple[Any, Any]], asks: list[tuple[Any, Any]]) -> None:
        """Hand-written levels for ``market`` (``BTCUSDT``); the depth orders took is back."""
        symbol = market[: -len(self.quote)]
        self.sides[symbol].update(bids=[[D(str(p)), D(str(q))] for p, q in bids],
                                  asks=[[D(str(p)), D(str(q))] for p, q in asks])
        self._taken.pop(symbol, None)
        self._changed(symbol)

    def evolve(self, symbol: str) -> None:
        """Move one book like a real one, deterministically: now and then the price moves a tick (a level is taken
        on one side, a new best appears on the other); a few levels change size; the update id goes up."""
        book, tick = self.sides[symbol], self.price_step(symbol, D(0))
        bids, asks = book["bids"], book["asks"]
        move = self._rng.choice((-1, 0, 0, 0, 1))
        if move > 0 and len(asks) > 1:
            asks.pop(0)
            asks.append([asks[-1][0] + tick, self._qty(symbol)])
            bids.insert(0, [bids[0][0] + tick, self._qty(symbol)])
            bids.pop()
        elif move < 0 and len(bids) > 1:
            bids.pop(0)
            bids.append([bids[-1][0] - tick, self._qty(symbol)])
            asks.insert(0, [asks[0][0] - tick, self._qty(symbol)])
            asks.pop()
        for side in (bids, asks):
            for _ in range(3):
                side[self._rng.randrange(min(len(side), 20))][1] = self._qty(symbol)
        self._changed(symbol)

    def step(self) -> None:
        """Evolve every book one step; WebSocket clients get the new books."""
        for symbol in self.sides:
            self.evolve(symbol)
        self.steps += 1
        self.on_step()

    def on_step(self) -> None:
        with contextlib.suppress(RuntimeError):  # no running loop: nobody is connected
            task = asyncio.get_running_loop().create_task(self.push())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def on_order(self, order: FakeOrder) -> None:
        if order.fills:
            self.sides[order.symbol]["id"] += 1  # the depth it took is gone from the book

    def depth_payload(self, symbol: str, limit: int) -> dict[str, Any]:
        bids, asks = self.book(symbol, limit)
        return {"lastUpdateId": self.sides[symbol]["id"], "bids": [[_fmt(p), _fmt(q)] for p, q in bids],
                "asks": [[_fmt(p), _fmt(q)] for p, q in asks]}

    def book_ticker_payload(self, symbol: str) -> dict[str, Any]:
        (bp, bq), (ap, aq) = (side[0] for side in self.book(symbol, 1))
        return {"symbol": self.market(symbol), "bidPrice": _fmt(bp), "bidQty": _fmt(bq), "askPrice": _fmt(ap),
                "askQty": _fmt(aq)}

    # -------------------------------------------------------------------------------------------- faults
    async def venue_fault(self, fault: Fault, request: Any) -> Any:
        if fault.kind == "auth":
            return self._err(401, -2015, "Invalid API-key, IP, or permissions for action.")
        details = fault.details
        return self._err(int(details.get("status", 400)), int(details.get("code", -1000)),
                         str(details.get("msg", "An unknown error occurred while processing the request.")))

    # ------------------------------------------------------------------------------------------ serving
    def now_ms(self) -> int:
        return int(time.time() * 1000 + self.clock_offset_ms)

    def _now_ms(self) -> int:  # the matching engine's clock: order times on the venue's clock
        return self.now_ms()

    @property
    def used_weight(self) -> int:
        return self.weight_used.get(self.now_ms() // 60000, 0)

    def _weight(self, request: Any) -> int:
        path, query = request.path, request.query
        if path == "/api/v3/depth":
            limit = int(query.get("limit", "100") or 100)
            return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250
        if path in ("/api/v3/ticker/bookTicker", "/api/v3/openOrders"):
            return (2 if path.endswith("bookTicker") else 6) if "symbol" in query else (4 if path.endswith(
                "bookTicker") else 80)
        if path == "/api/v3/order":
            return 4 if request.method == "GET" else 1
        return {"/api/v3/exchangeInfo": 20, "/api/v3/account": 20, "/api/v3/myTrades": 5}.get(path, 1)

    def _json(self, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Any:
        from aiohttp import web

        return web.Response(text=json.dumps(data), status=status, content_type="application/json",
                            headers={"X-MBX-USED-WEIGHT-1M": str(self.used_weight), **(headers or {})})

    def _err(self, status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> Any:
        return self._json({"code": code, "msg": msg}, status, headers)

    def routes(self, app: Any) -> None:
        from aiohttp import web

        @web.middleware
        async def binance(request: Any, handler: Any) -> Any:
            if request.path == "/stream":
                return await handler(request)
            body = await request.text()
            query = request.raw_path.partition("?")[2]
            self.received.append(Received(request.method, request.path, query, body, dict(request.headers)))
            minute = self.now_ms() // 60000
            self.weight_used[minute] = self.weight_used.get(minute, 0) + self._weight(request)
            if self.used_weight > self.weight_limit:
                return self._err(429, -1003, f"Too much request weight used; current limit is {self.weight_limit} "
                                 "request weight per 1 MINUTE.", {"Retry-After": "1"})
            return await handler(request)

        app.middlewares.append(binance)
        add = app.router
        add.add_get("/api/v3/ping", self._ping)
        add.add_get("/api/v3/time", self._time)
        add.add_get("/api/v3/exchangeInfo", self._exchange_info)
        add.add_get("/api/v3/depth", self._depth)
        add.add_get("/api/v3/ticker/bookTicker", self._book_ticker)
        add.add_get("/api/v3/account", self._account)
        add.add_post("/api/v3/order", self._new_order)
        add.add_post("/api/v3/order/test", self._test_order)
        add.add_get("/api/v3/order", self._query_order)
        add.add_delete("/api/v3/order", self._cancel_order)
        add.add_get("/api/v3/openOrders", self._open_orders)
        add.add_get("/api/v3/myTrades", self._my_trades)
        add.add_get("/stream", self._ws)

    async def _ping(self, request: Any) -> Any:
        return self._json({})

    async def _time(self, request: Any) -> Any:
        return self._json({"serverTime": self.now_ms()})

    async def start(self, port: int = 0) -> FakeBinance:  # type: ignore[override]
        """Serve on 127.0.0.1 (a free port, or ``port``); ``base_url``/``ws_url`` say where."""
        from aiohttp import web

        # short shutdown: open WebSocket handlers must not hold a test's teardown for aiohttp's default 60 s
        self._runner = web.AppRunner(self._app(), handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.host, port)
        await self._site.start()
        self.port = self._site._server.sockets[0].getsockname()[1]
        if self.push_interval:
            task = asyncio.get_running_loop().create_task(self._pusher())
            self._tasks.add(task)
        return self

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await super().close()

    @property
    def base_url(self) -> str:
        return self.url

    # ---------------------------------------------------------------------------------------------- auth
    async def _signed(self, request: Any) -> tuple[dict[str, str] | None, Any]:
        """Verify key, signature, timestamp and recvWindow: ``(params, None)`` or ``(None, error answer)``."""
        if request.headers.get("X-MBX-APIKEY") != self.api_key:
            return None, self._err(401, -2015, "Invalid API-key, IP, or permissions for action.")
        query, body = request.raw_path.partition("?")[2], await request.text()  # exactly as received
        if "signature=" not in query + body:
            return None, self._err(400, -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or "
                                   "malformed.")
        if not verify(self.api_secret, query + body):
            return None, self._err(400, -1022, "Signature for this request is not valid.")
        params = dict(parse_qsl(query, keep_blank_values=True))
        params.update({k: v for k, v in parse_qsl(body, keep_blank_values=True) if k not in params})
        try:
            ts = int(params["timestamp"])
        except (KeyError, ValueError):
            return None, self._err(400, -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or "
                                   "malformed.")
        recv_window = float(params.get("recvWindow", "5000"))
        if recv_window > 60000:
            return None, self._err(400, -1131, "recvWindow must be less than 60000")
        server = self.now_ms()
        if not (ts < server + 1000 and server - ts <= recv_window):
            return None, self._err(400, -1021, "Timestamp for this request is outside of the recvWindow.")
        return params, None

    def _refused(self, refused: OrderRefused) -> Any:
        if refused.reason == "rejected":
            return self._err(400, -2010, str(refused) if str(refused) != "order rejected" else "Market is closed.")
        return self._err(*_REFUSALS[refused.reason])

    # -------------------------------------------------------------------------------------------- public
    def _symbol_entry(self, market: str) -> dict[str, Any]:
        spec = self.markets[market]
        tick, step = _fmt(D(spec["tick"])), _fmt(D(spec["step"]))
        return {
            "symbol": market, "status": spec.get("status", "TRADING"), "baseAsset": market[: -len(self.quote)],
            "baseAssetPrecision": 8, "quoteAsset": self.quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
            "icebergAllowed": True, "ocoAllowed": True, "quoteOrderQtyMarketAllowed": True,
            "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "1000000.00000000", "tickSize": tick},
                {"filterType": "LOT_SIZE", "minQty": step, "maxQty": "9000.00000000", "stepSize": step},
                {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000", "maxQty": "100.00000000",
                 "stepSize": "0.00000000"},
                {"filterType": "NOTIONAL", "minNotional": _fmt(D(spec["min_notional"])), "applyMinToMarket": True,
                 "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
                {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            ],
            "permissionSets": [["SPOT"]], "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        }

    async def _exchange_info(self, request: Any) -> Any:
        q = request.query
        try:
            wanted = [q["symbol"]] if "symbol" in q else json.loads(q["symbols"]) if "symbols" in q else list(
                self.markets)
        except ValueError:
            return self._err(400, -1100, "Illegal characters found in parameter 'symbols'.")
        if any(m not in self.markets for m in wanted):
            return self._err(400, -1121, "Invalid symbol.")
        return self._json({
            "timezone": "UTC", "serverTime": self.now_ms(),
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": self.weight_limit},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": self.orders_per_10s},
                {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
                {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
            ],
            "exchangeFilters": [], "symbols": [self._symbol_entry(m) for m in wanted],
        })

    def _symbol_of(self, market: str | None) -> str | None:
        return market[: -len(self.quote)] if market in self.markets else None

    async def _depth(self, request: Any) -> Any:
        symbol = self._symbol_of(request.query.get("symbol"))
        if symbol is None:
            return self._err(400, -1121, "Invalid symbol.")
        limit = int(request.query.get("limit", "100") or 100)
        if not 1 <= limit <= 5000:
            return self._err(400, -1100, "Illegal characters found in parameter 'limit'.")
        return self._json(self.depth_payload(symbol, limit))

    async def _book_ticker(self, request: Any) -> Any:
        market = request.query.get("symbol")
        if market is None:
            return self._json([self.book_ticker_payload(s) for s in self.sides])
        symbol = self._symbol_of(market)
        if symbol is None:
            return self._err(400, -1121, "Invalid symbol.")
        return self._json(self.book_ticker_payload(symbol))

    # ------------------------------------------------------------------------------------------- private
    async def _account(self, request: Any) -> Any:
        params, err = await self._signed(request)
        if err is not None:
            return err
        omit = params.get("omitZeroBalances") == "true"
        rows = [{"asset": a, "free": _fmt(self.balance(a)[0]), "locked": _fmt(self.balance(a)[1])}
                for a in dict.fromkeys([*self.balances, *self.locked])]
        return self._json({
            "makerCommission": 10, "takerCommission": 10, "buyerCommission": 0, "sellerCommission": 0,
            "commissionRates": {"maker": "0.00100000", "taker": "0.00100000", "buyer": "0.00000000",
                                "seller": "0.00000000"},
            "canTrade": True, "canWithdraw": True, "canDeposit": True, "brokered": False,
            "requireSelfTradePrevention": False, "preventSor": False, "updateTime": self.now_ms(),
            "accountType": "SPOT", "permissions": ["SPOT"], "uid": 354937868,
            "balances": [r for r in rows if not (omit and D(r["free"]) == 0 and D(r["locked"]) == 0)],
        })

    def _filter_failure(self, symbol: str, otype: str, qty: Decimal | None, price: Decimal | None,
                        quote_qty: Decimal | None) -> str | None:
        spec = self._spec(symbol)
        tick, step = D(spec["tick"]), D(spec["step"])
        if otype == "LIMIT" and (price is None or price <= 0 or price % tick != 0):
            return "PRICE_FILTER"
        if qty is not None and otype == "LIMIT" and (qty < step or qty % step != 0 or qty > D(9000)):
            return "LOT_SIZE"
        if qty is not None and otype == "MARKET" and (qty <= 0 or qty > D(100)):
            return "MARKET_LOT_SIZE"
        ref = price if price is not None else self.book(symbol, 1)[1][0][0]
        notional = quote_qty if quote_qty is not None else (qty or D(0)) * ref
        return "NOTIONAL" if notional < D(spec["min_notional"]) else None

    def _market_order(self, symbol: str, side: str, qty: Decimal | None,
                      quote_qty: Decimal | None) -> tuple[Decimal, Decimal]:
        """(limit price, quantity) of the IOC order that is a MARKET order of ``qty`` (or ``quote_qty``)."""
        bids, asks = self.book(symbol)
        levels, step = (asks if side == "buy" else bids), D(self._spec(symbol)["step"])
        price, total, left_q, left_quote = levels[0][0], D(0), qty, quote_qty
        for level_price, level_qty in levels:
            take = min(level_qty, left_q) if left_q is not None else min(
                level_qty, (left_quote / level_price).quantize(step, ROUND_DOWN))  # type: ignore[operator]
            if take <= 0:
                break
            price, total = level_price, total + take
            if left_q is not None:
                left_q -= take
            else:
                left_quote -= take * level_price  # type: ignore[operator]
        return price, (qty if qty is not None else total)

    async def _test_order(self, request: Any) -> Any:
        """``POST /api/v3/order/test``: signed and checked like a real order, never placed; answers ``{}``."""
        return await self._new_order(request, test=True)

    async def _new_order(self, request: Any, test: bool = False) -> Any:
        params, err = await self._signed(request)
        if err is not None:
            return err
        symbol = self._symbol_of(params.get("symbol"))
        if symbol is None:
            return self._err(400, -1121, "Invalid symbol.")
        side, otype = params.get("side"), params.get("type")
        if side not in ("BUY", "SELL") or otype not in ("LIMIT", "MARKET"):
            return self._err(400, -1116, "Invalid orderType.")
        qty = D(params["quantity"]) if "quantity" in params else None
        price = D(params["price"]) if "price" in params else None
        quote_qty = D(params["quoteOrderQty"]) if "quoteOrderQty" in params else None
        tif = params.get("timeInForce", "GTC" if otype == "LIMIT" else "IOC")
        if otype == "LIMIT" and (qty is None or price is None or "timeInForce" not in params):
            return self._err(400, -1102, "Mandatory parameter 'timeInForce' was not sent, was empty/null, or "
                             "malformed.")
        failure = self._filter_failure(symbol, otype, qty, price, quote_qty)
        if failure:
            return self._err(400, -1013, f"Filter failure: {failure}")
        if test:
            return self._json({})
        client_id = params.get("newClientOrderId") or f"fake{self._next_order_id}"
        if otype == "MARKET":
            price, qty = self._market_order(symbol, side.lower(), qty, quote_qty)
        try:
            order = self.place_limit(symbol, side.lower(), price, qty, client_id, tif=tif)  # type: ignore[arg-type]
        except OrderRefused as refused:
            return self._refused(refused)
        self.order_info[order.venue_id] = {"type": otype, "timeInForce": tif,
                                           "origQuoteOrderQty": _fmt(quote_qty or D(0))}
        window = self.now_ms() // 10000
        self.order_counts[window] = self.order_counts.get(window, 0) + 1
        late = await self.after_accept(order, request)
        if late is not None:
            return late
        answer = self.order_json(order, fills=True)
        return self._json(self.order_answer_edit(answer) if self.order_answer_edit else answer,
                          headers={"X-MBX-ORDER-COUNT-10S": str(self.order_counts[window]),
                                   "X-MBX-ORDER-COUNT-1D": str(sum(self.order_counts.values()))})

    def order_json(self, order: FakeOrder, *, fills: bool = False, query: bool = False) -> dict[str, Any]:
        """An order in Binance's shape (``FULL`` answer with ``fills``, or a query answer)."""
        info = self.order_info.get(order.venue_id, {"type": "LIMIT", "timeInForce": order.tif})
        status = _STATUS[order.status]
        if status == "CANCELED" and not info.get("canceled"):
            status = "EXPIRED"  # an IOC's (or a MARKET order's) unfilled rest
        out: dict[str, Any] = {
            "symbol": self.market(order.symbol), "orderId": int(order.venue_id), "orderListId": -1,
            "clientOrderId": order.client_id,
            "price": _fmt(order.price if info["type"] == "LIMIT" else D(0)), "origQty": _fmt(order.qty),
            "executedQty": _fmt(order.filled_qty), "cummulativeQuoteQty": _fmt(order.quote_qty),
            "status": status, "timeInForce": info["timeInForce"], "type": info["type"], "side": order.side.upper(),
            "workingTime": order.created_ms, "selfTradePreventionMode": "EXPIRE_MAKER",
            "origQuoteOrderQty": info.get("origQuoteOrderQty", "0.00000000"),
        }
        if query:
            out.update(stopPrice="0.00000000", icebergQty="0.00000000", time=order.created_ms,
                       updateTime=order.updated_ms, isWorking=True)
        else:
            out["transactTime"] = order.updated_ms
        if fills:
            out["fills"] = [{"price": _fmt(p), "qty": _fmt(q), "commission": _fmt(f),
                             "commissionAsset": order.fee_asset, "tradeId": int(order.venue_id) * 1000 + i}
                            for i, (p, q, f) in enumerate(order.fills)]
        return out

    def _find(self, params: dict[str, str]) -> FakeOrder | None:
        """The order a look-up names (``orderId`` or ``origClientOrderId``, on its ``symbol``)."""
        if "orderId" in params:
            order = self.get_order(venue_id=params["orderId"])
        else:
            order = self.get_order(client_id=params.get("origClientOrderId", ""))
        return order if order is not None and self.market(order.symbol) == params.get("symbol") else None

    async def _query_order(self, request: Any) -> Any:
        params, err = await self._signed(request)
        if err is not None:
            return err
        order = self._find(params)
        if order is None or self.lookup_misses > 0:
            self.lookup_misses = max(0, self.lookup_misses - 1)
            return self._err(400, -2013, "Order does not exist.")
        view = self.order_json(order, query=True)
        return self._json(self.order_answer_edit(view) if self.order_answer_edit else view)

    async def _my_trades(self, request: Any) -> Any:
        """``GET /api/v3/myTrades?symbol=&orderId=``: the order's fills with their commission (the only place a
        look-up finds the fee)."""
        params, err = await self._signed(request)
        if err is not None:
            return err
        order = self.get_order(venue_id=params.get("orderId", ""))
        if order is None or self.market(order.symbol) != params.get("symbol"):
            return self._json([])
        return self._json([
            {"symbol": self.market(order.symbol), "id": int(order.venue_id) * 1000 + i,
             "orderId": int(order.venue_id), "orderListId": -1, "price": _fmt(p), "qty": _fmt(q),
             "quoteQty": _fmt(p * q), "commission": _fmt(f), "commissionAsset": order.fee_asset,
             "time": order.updated_ms, "isBuyer": order.side == "buy", "isMaker": False, "isBestMatch": True}
            for i, (p, q, f) in enumerate(order.fills)])

    async def _cancel_order(self, request: Any) -> Any:
        params, err = await self._signed(request)
        if err is not None:
            return err
        order = self._find(params)
        if order is None:
            return self._err(400, -2011, "Unknown order sent.")
        try:
            self.cancel(venue_id=order.venue_id)
        except OrderRefused as refused:
            return self._refused(refused)
        self.order_info.setdefault(order.venue_id, {"type": "LIMIT", "timeInForce": order.tif})["canceled"] = "1"
        answer = self.order_json(order)
        answer.update(origClientOrderId=order.client_id, transactTime=self.now_ms(),
                      clientOrderId=params.get("newClientOrderId") or f"cancel{order.venue_id}")
        return self._json(answer)

    async def _open_orders(self, request: Any) -> Any:
        params, err = await self._signed(request)
        if err is not None:
            return err
        market = params.get("symbol")
        return self._json([self.order_json(o, query=True) for o in self.orders.values()
                           if o.is_open and (market is None or self.market(o.symbol) == market)])

    def orders_with(self, client_id: str) -> list[FakeOrder]:
        """Every order placed with ``client_id`` (tests: an order is never placed twice)."""
        return [o for o in self.orders.values() if o.client_id == client_id]

    # ------------------------------------------------------------------------------------------- streams
    def stream_payload(self, stream: str) -> dict[str, Any] | None:
        market, _, kind = stream.partition("@")
        symbol = self._symbol_of(market.upper())
        if symbol is None:
            return None
        if kind == "bookTicker":
            t = self.book_ticker_payload(symbol)
            return {"u": self.sides[symbol]["id"], "s": t["symbol"], "b": t["bidPrice"], "B": t["bidQty"],
                    "a": t["askPrice"], "A": t["askQty"]}
        if kind.startswith("depth"):
            return self.depth_payload(symbol, int(kind[5:].split("@")[0] or 20))
        return None

    def message(self, stream: str) -> str | None:
        payload = self.stream_payload(stream)
        return None if payload is None else json.dumps({"stream": stream, "data": payload})

    async def _ws(self, request: Any) -> Any:
        from aiohttp import WSMsgType, web

        if self.refuse_ws:
            return web.Response(status=503, text="Service Unavailable")
        ws = web.WebSocketResponse(autoping=False, timeout=1.0)
        await ws.prepare(request)
        conn = WsConn(streams=[s for s in request.query.get("streams", "").split("/") if s], ws=ws,
                      opened_at=time.monotonic())
        self.connections.append(conn)
        self.ws_clients.append(ws)
        pinger = asyncio.get_running_loop().create_task(self._pinger(conn))
        try:
            if self.flood_messages:
                await self._flood(conn)
            elif not self.silent:
                for s in conn.streams:
                    m = self.message(s)
                    if m is not None:
                        await ws.send_str(m)
                        conn.sent += 1
            async for msg in ws:
                if msg.type == WSMsgType.PING:
                    await ws.pong(msg.data)
                elif msg.type == WSMsgType.PONG:
                    conn.pongs.append(msg.data)
        finally:
            pinger.cancel()
            conn.closed_at = time.monotonic()
            with contextlib.suppress(ValueError):
                self.ws_clients.remove(ws)
        return ws

    def _flood_templates(self, streams: tuple[str, ...]) -> list[list[list[str]]]:
        """``FLOOD_SNAPSHOTS`` successive snapshots per stream (the book evolving as :meth:`evolve` moves it),
        serialized once with a hole for the update id; cached, so every client gets the same sequence."""
        cached = self._flood_cache.get(streams)
        if cached is None:
            cached = self._flood_cache[streams] = []
            for stream in streams:
                symbol = self._symbol_of(stream.partition("@")[0].upper())
                seq = []
                for _ in range(self.FLOOD_SNAPSHOTS if symbol else 0):
                    self.evolve(symbol)  # type: ignore[arg-type]
                    payload = self.stream_payload(stream)
                    payload["u" if "u" in payload else "lastUpdateId"] = -424242  # type: ignore[index]
                    seq.append(json.dumps({"stream": stream, "data": payload}).split("-424242"))
                if seq:
                    cached.append(seq)
        return cached

    async def _flood(self, conn: WsConn) -> None:
        """Benchmarks: ``flood_messages`` book messages back to back, streams interleaved, each cycling through
        evolving snapshots with increasing update ids; then ``{"e": "floodEnd"}``."""
        per_stream = self._flood_templates(tuple(conn.streams))
        send, n = conn.ws.send_str, len(per_stream)
        for i in range(self.flood_messages):
            seq = per_stream[i % n]
            head, tail = seq[(i // n) % len(seq)]
            await send(f"{head}{10**9 + i}{tail}")
            conn.sent += 1
        await send(json.dumps({"e": "floodEnd"}))

    async def _pinger(self, conn: WsConn) -> None:
        """Ping every ``ping_interval`` with a numbered payload; close a connection that does not pong it."""
        n = 0
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, RuntimeError):
            while True:
                await asyncio.sleep(self.ping_interval)
                n += 1
                payload, before = f"p{n}".encode(), len(conn.pongs)
                await conn.ws.ping(payload)
                deadline = time.monotonic() + self.pong_timeout
                while time.monotonic() < deadline and payload not in conn.pongs[before:]:
                    await asyncio.sleep(min(0.01, self.pong_timeout / 10))
                if payload not in conn.pongs[before:]:
                    await conn.ws.close()
                    return

    async def push(self, symbol: str | None = None) -> int:
        """Send the current book of ``symbol`` (or all) to every subscribed connection; returns messages sent."""
        sent = 0
        for conn in self.open_connections():
            for s in list(conn.streams):
                if symbol is not None and s.partition("@")[0] != self.market(symbol).lower():
                    continue
                m = self.message(s)
                if m is not None:
                    with contextlib.suppress(Exception):
                        await conn.ws.send_str(m)
                        conn.sent += 1
                        sent += 1
        return sent

    async def _pusher(self) -> None:
        while True:
            await asyncio.sleep(self.push_interval or 0.05)
            if not self.silent:
                for symbol in self.sides:
                    self.evolve(symbol)
                await self.push()

    async def server_shutdown(self, close_after: float | None = None) -> list[WsConn]:
        """Send the documented ``serverShutdown`` event on every open connection; with ``close_after``, close
        those connections that many seconds later (the disconnect it announces). Returns the connections told."""
        event = json.dumps({"e": "serverShutdown", "E": self.now_ms()})
        told = self.open_connections()
        for conn in told:
            with contextlib.suppress(Exception):
                await conn.ws.send_str(event)
        if close_after is not None:
            async def disconnect() -> None:
                await asyncio.sleep(close_after)
                for conn in told:
                    with contextlib.suppress(Exception):
                        await conn.ws.close()

            task = asyncio.get_running_loop().create_task(disconnect())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return told

    def open_connections(self) -> list[WsConn]:
        return [c for c in self.connections if c.closed_at is None and not c.ws.closed]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve a fake Binance spot API on 127.0.0.1")
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
        await fake.start(args.port)
        print(f"BASE_URL={fake.base_url} WS_URL={fake.ws_url}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await fake.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
