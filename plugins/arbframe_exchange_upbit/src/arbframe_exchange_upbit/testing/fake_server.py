"""A local fake Upbit (REST + WebSocket) for tests and benchmarks. Never touches the internet.

It speaks the documented formats: the REST endpoints the connector uses, JWT verification (signature, nonce
reuse, ``query_hash`` of the exact query string or JSON body), ``Remaining-Req`` headers per request group,
Upbit's error body, and the WebSocket request/stream protocol in DEFAULT and SIMPLE formats (binary frames,
``PING`` -> ``{"status":"UP"}``). Faults can be injected per path::

    async with FakeUpbit() as fake:          # binds 127.0.0.1 on a free port
        fake.inject("/v1/orderbook", status=429, times=2)
        fake.inject("/v1/ticker", malformed=True)
        fake.inject("/v1/orders", delay=2.0)  # slow answer
        fake.inject("/v1/accounts", drop=True)  # connection closed without an answer
        fake.inject("/v1/orders", drop=True, after=True)  # order placed, answer lost
        fake.drop_ws(after=3)                  # close the next WebSocket after 3 data messages
        fake.ws_silent = True                  # keep WebSocket connections open but send nothing (a hung server)
        fake.ws_quiet = True                   # no market data, but PINGs are answered (an idle subscription)

Usable from the command line too: ``python -m arbframe_exchange_upbit.testing.fake_server --port 8765``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import ROUND_DOWN, Decimal
from typing import Any
from urllib.parse import unquote

from ..auth import JwtError, decode_token, hash_query, token_alg
from ..ratelimit import DEFAULT_GROUP_LIMITS
from ..ticks import KRW_PRICE_UNITS, price_unit

__all__ = ["DEFAULT_MARKETS", "FakeUpbit", "Fault"]

D = Decimal
KST = timezone(timedelta(hours=9))
DEFAULT_MARKETS = {"BTC": D("148000000"), "ETH": D("5200000"), "XRP": D("3100"), "USDT": D("1452")}
_NAMES = {"BTC": ("비트코인", "Bitcoin"), "ETH": ("이더리움", "Ethereum"), "XRP": ("리플", "Ripple"),
          "USDT": ("테더", "Tether")}
_STABLE = [(lo, u) for lo, u in KRW_PRICE_UNITS if not D(1000) <= lo < D(10000)] + [(D(1000), D("0.5"))]
_STABLE_TABLE = tuple(sorted(_STABLE, key=lambda r: r[0], reverse=True))
_GROUPS = {
    "/v1/market/all": "market", "/v1/ticker": "ticker", "/v1/orderbook": "orderbook",
    "/v1/accounts": "default", "/v1/order": "default", "/v1/orders/open": "default",
}
_SIMPLE_UNIT = {"ask_price": "ap", "bid_price": "bp", "ask_size": "as", "bid_size": "bs"}


@dataclass
class Fault:
    path: str
    method: str | None = None
    status: int | None = None
    body: Any = None
    malformed: bool = False
    delay: float = 0.0
    drop: bool = False
    after: bool = False  # with drop: run the handler first (the request takes effect, the answer is lost)
    times: int = 1
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Logged:
    method: str
    path: str
    query: str
    authenticated: bool
    status: int = 0


def _f(value: Decimal) -> float:
    return float(value)


def _s(value: Decimal) -> str:
    return format(value.normalize(), "f") if value != 0 else "0.0"


class FakeUpbit:
    def __init__(self, *, seed: int = 7, markets: dict[str, Decimal] | None = None,
                 keys: dict[str, str] | None = None, balances: dict[str, Any] | None = None,
                 group_limits: dict[str, float] | None = None, enforce_limits: bool = False,
                 ws_interval: float = 0.02, depth: int = 30, host: str = "127.0.0.1", port: int = 0) -> None:
        self.rng = random.Random(seed)
        self.keys = dict(keys or {"test-access-key": "test-secret-key"})
        self.group_limits = dict(DEFAULT_GROUP_LIMITS)
        self.group_limits.update(group_limits or {})
        self.enforce_limits = enforce_limits
        self.ws_interval = ws_interval
        self.depth = depth
        self.host, self.port = host, port
        self.mids = {s: D(p) for s, p in (markets or DEFAULT_MARKETS).items()}
        self.balances: dict[str, Decimal] = {k: D(str(v)) for k, v in (balances or {
            "KRW": "100000000", "BTC": "1", "ETH": "10", "XRP": "1000", "USDT": "1000"}).items()}
        self.locked: dict[str, Decimal] = {}
        self.books: dict[str, tuple[list, list]] = {}
        self.ts_ms = int(time.time() * 1000)
        for symbol in self.mids:
            self._rebuild(symbol)
        self.faults: list[Fault] = []
        self.requests: list[Logged] = []
        self.orders: dict[str, dict[str, Any]] = {}
        self.identifiers: dict[str, str] = {}
        self.nonces: set[str] = set()
        self._windows: dict[str, deque] = {}
        # websocket
        self.ws_connections = 0
        self.ws_requests: list[Any] = []
        self.ws_pings = 0
        self.ws_silent = False
        self.ws_quiet = False
        self.jwt_algs: list[str] = []  # the header alg of every signed request, in order
        self.ws_burst = 0
        self.ws_burst_bank: dict[str, list[bytes]] = {}
        self._ws_drop_after: int | None = None
        self._ws_clients: set[Any] = set()
        self._runner: Any = None
        self.base_url = ""
        self.ws_url = ""

    # -------------------------------------------------------------------------------------- lifecycle
    async def start(self) -> FakeUpbit:
        from aiohttp import web

        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/v1/market/all", self._markets)
        app.router.add_get("/v1/ticker", self._ticker)
        app.router.add_get("/v1/orderbook", self._orderbook)
        app.router.add_get("/v1/accounts", self._accounts)
        app.router.add_post("/v1/orders", self._place)
        app.router.add_get("/v1/order", self._get_order)
        app.router.add_delete("/v1/order", self._cancel)
        app.router.add_get("/v1/orders/open", self._open_orders)
        app.router.add_get("/websocket/v1", self._websocket)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.port = port
        self.base_url = f"http://{self.host}:{port}"
        self.ws_url = f"ws://{self.host}:{port}/websocket/v1"
        return self

    async def close(self) -> None:
        for ws in list(self._ws_clients):
            with contextlib.suppress(Exception):
                await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeUpbit:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # ------------------------------------------------------------------------------------------ faults
    def inject(self, path: str, **kw: Any) -> Fault:
        fault = Fault(path, **kw)
        self.faults.append(fault)
        return fault

    def drop_ws(self, after: int = 0) -> None:
        """Close the next WebSocket connection after ``after`` more data messages (one shot)."""
        self._ws_drop_after = after

    def clear_faults(self) -> None:
        self.faults.clear()
        self._ws_drop_after = None
        self.ws_silent = False
        self.ws_quiet = False

    def _take_fault(self, path: str, method: str) -> Fault | None:
        for fault in self.faults:
            if fault.path == path and (fault.method is None or fault.method == method) and fault.times > 0:
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    # ------------------------------------------------------------------------------------------- market
    def unit(self, symbol: str, price: Decimal) -> Decimal:
        return price_unit(price, _STABLE_TABLE if symbol in ("USDT", "USDC") else KRW_PRICE_UNITS)

    def _rebuild(self, symbol: str) -> None:
        mid = self.mids[symbol]
        unit = self.unit(symbol, mid)
        best_bid = (mid / unit).to_integral_value(rounding=ROUND_DOWN) * unit
        rng = self.rng
        bids, asks = [], []
        for i in range(self.depth):
            bid = best_bid - unit * i
            ask = best_bid + unit * (i + 1)
            bids.append([bid, D(rng.randint(1000, 200000000)).scaleb(-8)])
            asks.append([ask, D(rng.randint(1000, 200000000)).scaleb(-8)])
        self.books[symbol] = (bids, asks)

    def step(self) -> None:
        """Advance every market one update, the way a live book changes: now and then the price moves one unit
        (the book shifts by a level), and a couple of level sizes change."""
        self.ts_ms = max(self.ts_ms + 1, int(time.time() * 1000))
        rng = self.rng
        for symbol in self.mids:
            bids, asks = self.books[symbol]
            move = rng.random()
            if move < 0.1 or move > 0.9:
                unit = asks[0][0] - bids[0][0]
                if move < 0.1:  # up: the best ask is taken, a new bid level appears on top
                    price = bids[0][0] + unit
                    bids.insert(0, [price, D(rng.randint(1000, 200000000)).scaleb(-8)])
                    bids.pop()
                    asks.pop(0)
                    asks.append([asks[-1][0] + unit, D(rng.randint(1000, 200000000)).scaleb(-8)])
                else:  # down
                    price = asks[0][0] - unit
                    asks.insert(0, [price, D(rng.randint(1000, 200000000)).scaleb(-8)])
                    asks.pop()
                    bids.pop(0)
                    bids.append([bids[-1][0] - unit, D(rng.randint(1000, 200000000)).scaleb(-8)])
                self.mids[symbol] = bids[0][0]
                if self.unit(symbol, bids[0][0]) != unit or self.unit(symbol, asks[-1][0]) != unit \
                        or self.unit(symbol, bids[-1][0]) != unit:
                    self._rebuild(symbol)  # crossed a price band: lay the book out on the new grid
                    continue
            for _ in range(2):
                side = bids if rng.random() < 0.5 else asks
                level = side[rng.randrange(len(side))]
                level[1] = D(rng.randint(1000, 200000000)).scaleb(-8)

    def set_book(self, symbol: str, bids: list, asks: list) -> None:
        self.books[symbol] = ([[D(str(p)), D(str(q))] for p, q in bids], [[D(str(p)), D(str(q))] for p, q in asks])

    def _units(self, symbol: str, count: int) -> list[dict[str, float]]:
        bids, asks = self.books[symbol]
        n = min(count, len(bids), len(asks))
        return [{"ask_price": _f(asks[i][0]), "bid_price": _f(bids[i][0]), "ask_size": _f(asks[i][1]),
                 "bid_size": _f(bids[i][1])} for i in range(n)]

    def orderbook_json(self, symbol: str, count: int = 30) -> dict[str, Any]:
        bids, asks = self.books[symbol]
        return {
            "market": f"KRW-{symbol}", "timestamp": self.ts_ms,
            "total_ask_size": _f(sum((a[1] for a in asks), D(0))),
            "total_bid_size": _f(sum((b[1] for b in bids), D(0))),
            "orderbook_units": self._units(symbol, count), "level": 0,
        }

    def ws_orderbook(self, symbol: str, count: int, fmt: str, stream_type: str = "REALTIME") -> dict[str, Any]:
        book = self.orderbook_json(symbol, count)
        if fmt == "SIMPLE":
            return {"ty": "orderbook", "cd": book["market"], "tms": book["timestamp"], "tas": book["total_ask_size"],
                    "tbs": book["total_bid_size"],
                    "obu": [{_SIMPLE_UNIT[k]: v for k, v in u.items()} for u in book["orderbook_units"]],
                    "st": stream_type, "lv": 0}
        return {"type": "orderbook", "code": book["market"], "timestamp": book["timestamp"],
                "total_ask_size": book["total_ask_size"], "total_bid_size": book["total_bid_size"],
                "orderbook_units": book["orderbook_units"], "stream_type": stream_type, "level": 0}

    def ticker_json(self, symbol: str) -> dict[str, Any]:
        bids, asks = self.books[symbol]
        price = asks[0][0]
        now = datetime.fromtimestamp(self.ts_ms / 1000, timezone.utc)
        return {
            "market": f"KRW-{symbol}", "trade_date": now.strftime("%Y%m%d"), "trade_time": now.strftime("%H%M%S"),
            "trade_timestamp": self.ts_ms, "opening_price": _f(self.mids[symbol]), "high_price": _f(asks[5][0]),
            "low_price": _f(bids[5][0]), "trade_price": _f(price), "prev_closing_price": _f(self.mids[symbol]),
            "change": "EVEN", "change_price": 0.0, "change_rate": 0.0, "signed_change_price": 0.0,
            "signed_change_rate": 0.0, "trade_volume": 0.01, "acc_trade_price": 1.0e9, "acc_trade_price_24h": 2.0e9,
            "acc_trade_volume": 10.0, "acc_trade_volume_24h": 20.0, "timestamp": self.ts_ms,
        }

    def ws_ticker(self, symbol: str, fmt: str, stream_type: str = "REALTIME") -> dict[str, Any]:
        t = self.ticker_json(symbol)
        if fmt == "SIMPLE":
            return {"ty": "ticker", "cd": t["market"], "tp": t["trade_price"], "tms": t["timestamp"],
                    "st": stream_type}
        return {"type": "ticker", "code": t["market"], "trade_price": t["trade_price"], "timestamp": t["timestamp"],
                "stream_type": stream_type}

    # --------------------------------------------------------------------------------------- plumbing
    def _json(self, data: Any, status: int = 200, group: str | None = None) -> Any:
        from aiohttp import web

        headers = {}
        if group is not None:
            headers["Remaining-Req"] = self._remaining(group, count=False)
        return web.Response(body=json.dumps(data, ensure_ascii=False).encode(), status=status,
                            content_type="application/json", headers=headers)

    def _error(self, status: int, name: Any, message: str, group: str | None = None) -> Any:
        return self._json({"error": {"name": name, "message": message}}, status, group)

    def _count(self, group: str) -> int:
        win = self._windows.setdefault(group, deque())
        now = time.monotonic()
        while win and win[0] <= now - 1.0:
            win.popleft()
        win.append(now)
        return len(win)

    def _remaining(self, group: str, count: bool = False) -> str:
        win = self._windows.get(group) or ()
        limit = int(self.group_limits.get(group, 30))
        left = max(0, limit - len(win))
        return f"group={group}; min=1800; sec={left}"

    def _group(self, request: Any) -> str:
        if request.path == "/v1/orders" and request.method == "POST":
            return "order"
        return _GROUPS.get(request.path, "default")

    @staticmethod
    def _raw_body_query(body: bytes) -> str:
        obj = json.loads(body) if body else {}
        parts = []
        for key, value in obj.items():
            values = value if isinstance(value, list) else [value]
            parts.extend(f"{key}={v}" for v in values)
        return "&".join(parts)

    async def _authenticate(self, request: Any) -> tuple[str | None, tuple[str, str] | None]:
        """``(access_key, None)`` or ``(None, (error name, message))``."""
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return None, ("no_authorization_token", "인증 정보가 없습니다. (Authorization header missing)")
        self.jwt_algs.append(token_alg(header[7:]))
        try:
            payload = decode_token(header[7:], self.keys.get)
        except JwtError as exc:
            name = "invalid_access_key" if "unknown access key" in str(exc) else "jwt_verification"
            return None, (name, f"JWT 검증 실패: {exc}")
        nonce = payload["nonce"]
        if nonce in self.nonces:
            return None, ("nonce_used", "이미 요청한 nonce값이 다시 사용되었습니다.")
        self.nonces.add(nonce)
        raw = self._raw_body_query(await request.read()) if request.method == "POST" \
            else unquote(request.query_string)
        if raw:
            if payload.get("query_hash_alg", "SHA512") != "SHA512" or payload.get("query_hash") != hash_query(raw):
                return None, ("invalid_query_payload", "query_hash mismatch (쿼리 해시 불일치)")
        elif "query_hash" in payload and payload["query_hash"] != hash_query(""):
            return None, ("invalid_query_payload", "query_hash given for a request without parameters")
        return payload["access_key"], None

    @property
    def _middleware(self) -> Any:
        from aiohttp import web

        @web.middleware
        async def middleware(request: Any, handler: Any) -> Any:
            if request.path.startswith("/websocket"):
                return await handler(request)
            group = self._group(request)
            private = request.path not in ("/v1/market/all", "/v1/ticker", "/v1/orderbook")
            entry = Logged(request.method, request.path, request.query_string,
                           "Authorization" in request.headers)
            self.requests.append(entry)
            if request.method == "POST":
                await request.read()  # cached: a slow answer still has the body after the client left
            fault = self._take_fault(request.path, request.method)
            used = self._count(group)
            if fault is not None:
                if fault.delay:
                    await asyncio.sleep(fault.delay)
                if fault.drop and fault.after:
                    if private and (await self._authenticate(request))[0] is not None:
                        await handler(request)
                    if request.transport is not None:
                        request.transport.close()
                    entry.status = -1
                    raise asyncio.CancelledError
                if fault.drop:
                    if request.transport is not None:
                        request.transport.close()
                    entry.status = -1
                    raise asyncio.CancelledError  # the client sees the connection drop
                if fault.malformed:
                    entry.status = 200
                    return web.Response(body=b'[{"market": "KRW-BTC", "timestamp": ', status=200,
                                        content_type="application/json",
                                        headers={"Remaining-Req": self._remaining(group)})
                if fault.status is not None:
                    entry.status = fault.status
                    body = fault.body
                    if body is None:
                        body = {"error": {"name": {429: "too_many_requests", 418: "blocked"}.get(
                            fault.status, "server_error"), "message": f"injected HTTP {fault.status}"}}
                    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
                    headers = {"Remaining-Req": self._remaining(group), **fault.headers}
                    return web.Response(body=data.encode() if isinstance(data, str) else data,
                                        status=fault.status, content_type="application/json", headers=headers)
            if self.enforce_limits and used > self.group_limits.get(group, 30):
                entry.status = 429
                return self._error(429, "too_many_requests", "Too many API requests.", group)
            if private:
                access_key, problem = await self._authenticate(request)
                if access_key is None:
                    entry.status = 401
                    return self._error(401, problem[0], problem[1], group)
            response = await handler(request)
            response.headers["Remaining-Req"] = self._remaining(group)
            entry.status = response.status
            return response

        return middleware

    def _markets_of(self, request: Any) -> list[str] | None:
        codes = [c for c in request.query.get("markets", "").split(",") if c]
        out = []
        for code in codes:
            quote, _, base = code.partition("-")
            if quote != "KRW" or base not in self.books:
                return None
            out.append(base)
        return out

    # ------------------------------------------------------------------------------------ public REST
    async def _markets(self, request: Any) -> Any:
        return self._json([{"market": f"KRW-{s}", "korean_name": _NAMES.get(s, (s, s))[0],
                            "english_name": _NAMES.get(s, (s, s))[1]} for s in self.books])

    async def _ticker(self, request: Any) -> Any:
        symbols = self._markets_of(request)
        if not symbols:
            return self._error(404, 404, "Code not found")
        return self._json([self.ticker_json(s) for s in symbols])

    async def _orderbook(self, request: Any) -> Any:
        symbols = self._markets_of(request)
        if not symbols:
            return self._error(404, 404, "Code not found")
        try:
            count = int(request.query.get("count", 30))
        except ValueError:
            return self._error(400, "invalid_parameter", "count must be a number")
        return self._json([self.orderbook_json(s, count) for s in symbols])

    # ----------------------------------------------------------------------------------- private REST
    async def _accounts(self, request: Any) -> Any:
        rows = []
        for cur in sorted(set(self.balances) | set(self.locked)):
            rows.append({"currency": cur, "balance": _s(self.balances.get(cur, D(0))),
                         "locked": _s(self.locked.get(cur, D(0))), "avg_buy_price": "0",
                         "avg_buy_price_modified": False, "unit_currency": "KRW"})
        return self._json(rows)

    def _order_view(self, order: dict[str, Any], state: str | None = None, trades: bool = False) -> dict:
        view = {k: v for k, v in order.items() if not k.startswith("_")}
        if state is not None:
            view["state"] = state
        if not trades:
            view.pop("trades", None)
        return view

    async def _place(self, request: Any) -> Any:
        try:
            body = json.loads(await request.read())
        except ValueError:
            return self._error(400, "invalid_parameter", "body must be JSON")
        market = str(body.get("market", ""))
        quote, _, symbol = market.partition("-")
        side, ord_type = body.get("side"), body.get("ord_type")
        if quote != "KRW" or symbol not in self.books:
            return self._error(400, "market_does_not_exist", "마켓 정보가 없습니다.")
        if side not in ("bid", "ask") or ord_type not in ("limit", "price", "market", "best"):
            return self._error(400, "invalid_parameter", "side / ord_type")
        identifier = body.get("identifier")
        if identifier is not None and identifier in self.identifiers:
            return self._error(400, "duplicate_identifier", "identifier already used")
        try:
            price = D(str(body["price"])) if body.get("price") is not None else None
            volume = D(str(body["volume"])) if body.get("volume") is not None else None
        except ArithmeticError:
            return self._error(400, "invalid_parameter", "price / volume must be numbers")
        err = f"{side}"
        bids, asks = self.books[symbol]
        if ord_type == "limit":
            if price is None or volume is None:
                return self._error(400, "invalid_parameter", "limit needs price and volume")
            if price % self.unit(symbol, price) != 0:
                return self._error(400, f"invalid_price_{err}", "주문가격 단위를 잘못 입력하셨습니다.")
            total = price * volume
        elif ord_type == "price":
            if price is None or side != "bid":
                return self._error(400, "invalid_parameter", "market buy needs price (KRW amount)")
            total = price
        else:
            if volume is None or side != "ask":
                return self._error(400, "invalid_parameter", "market sell needs volume")
            total = volume * bids[0][0]
        if total < 5000:
            return self._error(400, f"under_min_total_{err}", "최소주문금액 이상으로 주문해주세요")
        if volume is not None and volume.as_tuple().exponent < -8:
            return self._error(400, "invalid_volume", "volume has more than 8 decimals")
        # funds
        if side == "bid":
            need = total * D("1.0005")
            if self.balances.get("KRW", D(0)) < need:
                return self._error(400, "insufficient_funds_bid", "주문가능한 금액(KRW)이 부족합니다.")
        elif self.balances.get(symbol, D(0)) < (volume or D(0)):
            return self._error(400, "insufficient_funds_ask", "주문가능한 금액이 부족합니다.")
        order_uuid = str(uuid.uuid4())
        now = datetime.now(KST).replace(microsecond=0)
        order: dict[str, Any] = {
            "uuid": order_uuid, "side": side, "ord_type": ord_type,
            "price": _s(price) if price is not None else None, "state": "wait", "market": market,
            "created_at": now.isoformat(), "volume": _s(volume) if volume is not None else None,
            "remaining_volume": _s(volume) if volume is not None else None, "reserved_fee": "0",
            "remaining_fee": "0", "paid_fee": "0", "locked": "0", "executed_volume": "0", "executed_funds": "0",
            "trades_count": 0, "trades": [],
        }
        if identifier is not None:
            order["identifier"] = identifier
            self.identifiers[identifier] = order_uuid
        self.orders[order_uuid] = order
        crosses = (side == "bid" and price >= asks[0][0]) or (side == "ask" and price <= bids[0][0]) \
            if ord_type == "limit" else False
        marketable = ord_type in ("price", "market") or crosses
        if marketable:
            fill_price = asks[0][0] if side == "bid" else bids[0][0]
            qty = volume if volume is not None else (total / fill_price).quantize(D("0.00000001"), ROUND_DOWN)
            self._fill(order, symbol, side, qty, fill_price)
        else:
            asset, amount = ("KRW", total) if side == "bid" else (symbol, volume)
            self.balances[asset] = self.balances.get(asset, D(0)) - amount
            self.locked[asset] = self.locked.get(asset, D(0)) + amount
            order["locked"] = _s(amount)
            order["_lock"] = (asset, amount)
        return self._json(self._order_view(order), status=201)

    def _fill(self, order: dict, symbol: str, side: str, qty: Decimal, price: Decimal) -> None:
        funds = qty * price
        fee = (funds * D("0.0005")).quantize(D("0.00000001"))
        if side == "bid":
            self.balances["KRW"] = self.balances.get("KRW", D(0)) - funds - fee
            self.balances[symbol] = self.balances.get(symbol, D(0)) + qty
        else:
            self.balances[symbol] = self.balances.get(symbol, D(0)) - qty
            self.balances["KRW"] = self.balances.get("KRW", D(0)) + funds - fee
        order.update(state="done", executed_volume=_s(qty), executed_funds=_s(funds), paid_fee=_s(fee),
                     remaining_volume="0", trades_count=1)
        order["trades"] = [{"market": order["market"], "uuid": str(uuid.uuid4()), "price": _s(price),
                            "volume": _s(qty), "funds": _s(funds), "side": side, "created_at": order["created_at"]}]

    def _find(self, request: Any) -> dict[str, Any] | None:
        order_uuid = request.query.get("uuid")
        if order_uuid is None and request.query.get("identifier") is not None:
            order_uuid = self.identifiers.get(request.query["identifier"])
        return self.orders.get(order_uuid) if order_uuid else None

    async def _get_order(self, request: Any) -> Any:
        if "uuid" not in request.query and "identifier" not in request.query:
            return self._error(400, "invalid_parameter", "uuid or identifier is required")
        order = self._find(request)
        if order is None:
            return self._error(404, "order_not_found", "주문을 찾지 못했습니다.")
        return self._json(self._order_view(order, trades=True))

    async def _cancel(self, request: Any) -> Any:
        order = self._find(request)
        if order is None:
            return self._error(404, "order_not_found", "주문을 찾지 못했습니다.")
        if order["state"] != "wait":
            return self._error(400, "order_not_cancellable", "취소할 수 없는 주문입니다.")
        lock = order.pop("_lock", None)
        if lock is not None:
            asset, amount = lock
            self.locked[asset] -= amount
            self.balances[asset] = self.balances.get(asset, D(0)) + amount
        view = self._order_view(order, state="wait")  # Upbit answers before the cancel is applied
        order["state"] = "cancel"
        return self._json(view)

    async def _open_orders(self, request: Any) -> Any:
        states = request.query.getall("states[]", None) or [request.query.get("state", "wait")]
        market = request.query.get("market")
        try:
            limit = min(int(request.query.get("limit", 100)), 100)
            page = max(int(request.query.get("page", 1)), 1)
        except ValueError:
            return self._error(400, "invalid_parameter", "page / limit")
        rows = [o for o in self.orders.values() if o["state"] in states and (market is None or o["market"] == market)]
        rows.sort(key=lambda o: o["created_at"], reverse=request.query.get("order_by", "desc") == "desc")
        return self._json([self._order_view(o) for o in rows[(page - 1) * limit: page * limit]])

    # -------------------------------------------------------------------------------------- WebSocket
    async def _websocket(self, request: Any) -> Any:
        from aiohttp import WSMsgType, web

        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.ws_connections += 1
        self._ws_clients.add(ws)
        sender: asyncio.Task | None = None
        try:
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    continue
                text = msg.data if msg.type is WSMsgType.TEXT else msg.data.decode("utf-8", "replace")
                if text.strip() == "PING":
                    self.ws_pings += 1
                    if not self.ws_silent:
                        await ws.send_str('{"status":"UP"}')
                    continue
                sub = self._parse_subscription(text)
                if "error" in sub:
                    await ws.send_bytes(json.dumps(sub).encode())
                    continue
                self.ws_requests.append(sub)
                if sender is not None:
                    sender.cancel()
                sender = asyncio.get_running_loop().create_task(self._stream(ws, sub, request))
        finally:
            if sender is not None:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await sender
            self._ws_clients.discard(ws)
        return ws

    @staticmethod
    def _parse_subscription(text: str) -> dict[str, Any]:
        def error(name: str, message: str) -> dict[str, Any]:
            return {"error": {"name": name, "message": message}}

        try:
            items = json.loads(text)
        except ValueError:
            return error("WRONG_FORMAT", "request must be a JSON list")
        if not isinstance(items, list):
            return error("WRONG_FORMAT", "request must be a JSON list")
        ticket = next((i.get("ticket") for i in items if isinstance(i, dict) and "ticket" in i), None)
        if not ticket:
            return error("NO_TICKET", "ticket is required")
        fmt = next((i.get("format") for i in items if isinstance(i, dict) and "format" in i), "DEFAULT")
        if fmt not in ("DEFAULT", "SIMPLE"):
            return error("WRONG_FORMAT", f"unsupported format {fmt}")
        types = [i for i in items if isinstance(i, dict) and "type" in i]
        if not types:
            return error("NO_TYPE", "type is required")
        sub: dict[str, Any] = {"ticket": ticket, "format": fmt, "orderbook": [], "ticker": []}
        for item in types:
            codes = item.get("codes")
            if not codes:
                return error("NO_CODES", "codes is required")
            if item["type"] not in ("orderbook", "ticker"):
                return error("INVALID_PARAM", f"unsupported type {item['type']}")
            for code in codes:
                market, _, count = str(code).partition(".")
                sub[item["type"]].append((market.split("-", 1)[-1], int(count) if count else 30))
        return sub

    async def _stream(self, ws: Any, sub: dict[str, Any], request: Any) -> None:
        fmt = sub["format"]
        sent = 0
        dropping = self._ws_drop_after
        if dropping is not None:
            self._ws_drop_after = None

        async def send(obj: Any) -> bool:
            nonlocal sent
            if dropping is not None and sent >= dropping:
                if request.transport is not None:
                    request.transport.close()  # abrupt: no close frame
                return False
            await ws.send_bytes(obj if isinstance(obj, bytes) else json.dumps(obj).encode())
            sent += 1
            return True

        try:
            for symbol, count in sub["orderbook"]:
                if symbol in self.books and not await send(self.ws_orderbook(symbol, count, fmt, "SNAPSHOT")):
                    return
            for symbol, _count in sub["ticker"]:
                if symbol in self.books and not await send(self.ws_ticker(symbol, fmt, "SNAPSHOT")):
                    return
            if self.ws_burst:
                bank = self.burst_messages(sub, self.ws_burst)
                for payload in bank:
                    if not await send(payload):
                        return
            while not ws.closed:
                await asyncio.sleep(self.ws_interval)
                if self.ws_silent or self.ws_quiet:
                    continue
                self.step()
                for symbol, count in sub["orderbook"]:
                    if symbol in self.books and not await send(self.ws_orderbook(symbol, count, fmt)):
                        return
                for symbol, _count in sub["ticker"]:
                    if symbol in self.books and not await send(self.ws_ticker(symbol, fmt)):
                        return
        except (ConnectionResetError, RuntimeError):
            return

    def burst_messages(self, sub: dict[str, Any], n: int) -> list[bytes]:
        """``n`` pre-encoded realtime orderbook messages for the subscription (cached; for benchmarks)."""
        key = json.dumps([sub["format"], sub["orderbook"], n])
        bank = self.ws_burst_bank.get(key)
        if bank is None:
            distinct = []
            for _ in range(min(n, 200)):
                self.step()
                for symbol, count in sub["orderbook"]:
                    if symbol in self.books:
                        distinct.append(json.dumps(self.ws_orderbook(symbol, count, sub["format"])).encode())
            bank = [distinct[i % len(distinct)] for i in range(n)] if distinct else []
            self.ws_burst_bank[key] = bank
        return bank


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - manual use and benchmarks
    import argparse

    parser = argparse.ArgumentParser(description="run the fake Upbit server (REST + WebSocket) on 127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--ws-interval", type=float, default=0.05, help="seconds between streamed updates")
    parser.add_argument("--ws-burst", type=int, default=0,
                        help="orderbook messages sent back to back after each subscription")
    parser.add_argument("--no-limits", action="store_true", help="report huge Remaining-Req budgets")
    args = parser.parse_args(argv)

    async def serve() -> None:
        limits = {g: 1e9 for g in DEFAULT_GROUP_LIMITS} if args.no_limits else None
        async with FakeUpbit(port=args.port, ws_interval=args.ws_interval, group_limits=limits) as fake:
            fake.ws_burst = args.ws_burst
            print(f"BASE_URL={fake.base_url} WS_URL={fake.ws_url} (key test-access-key / test-secret-key)",
                  flush=True)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":  # pragma: no cover
    main()
