"""A local fake Upbit (REST + WebSocket) on :class:`arbframe.testing.fake_venue.FakeVenue`. Never touches the
internet.

It speaks Upbit's documented formats: the REST endpoints the connector uses, JWT verification (HS256/HS512
signature, nonce reuse, ``query_hash`` of the exact query string or JSON body), ``Remaining-Req`` headers per
request group, Upbit's error body ``{"error": {"name", "message"}}``, and the WebSocket request/stream protocol in
DEFAULT and SIMPLE formats (binary frames, ``PING`` -> ``{"status":"UP"}``). Orders go to the base class's matching
engine (balances free/locked, limit orders walking the book, fees in KRW)::

    async with FakeUpbit() as fake:                    # 127.0.0.1, a free port (or: with FakeUpbit().in_thread())
        fake.set_mid("BTC", 148_000_000)
        fake.inject("rate_limited", 2)                 # HTTP 429 as Upbit sends it: no Retry-After
        fake.inject("banned", retry_after=30)          # HTTP 418, the block time in the message
        fake.inject("venue_error", name="market_offline", path="/v1/orders")   # Upbit's own 400
        fake.inject("accept_then_timeout")             # the next order fills, its answer comes too late
        fake.inject("delayed_fill")                    # ... fills only when looked up
        await fake.drop_ws()                           # close every WebSocket client now
        fake.refuse_ws = True                          # refuse new WebSocket connections (HTTP 503) until reset
        fake.ws_silent = True                          # keep WebSocket connections open but send nothing (hung)
        fake.ws_quiet = True                           # no market data, but PINGs are answered (an idle market)

Order endpoints: ``POST /v1/orders`` (``market``, ``side`` bid/ask, ``ord_type`` limit/price/market, ``price``,
``volume``, ``identifier`` - accepted once, ever, even when the first order failed - and ``time_in_force``
ioc/fok for limit orders), ``POST /v1/orders/test`` (the same checks, nothing placed; recorded in
``test_orders``), ``GET /v1/order?uuid=|identifier=``, ``DELETE /v1/order`` (answers the order as it was before
the cancel, as Upbit does), ``GET /v1/orders/open``, ``GET /v1/accounts`` (``balance`` free, ``locked``).
``fake.log`` lists every request that passed the fault middleware with its query, whether it was signed, and
its status; ``jwt_algs`` the ``alg`` of every signed request.

Command line (benchmarks, demos): ``python -m arbframe_exchange_upbit.testing.fake_server`` prints
``BASE_URL=... WS_URL=...`` and serves (key ``test-access-key`` / secret ``test-secret-key``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import ROUND_DOWN, Decimal
from typing import Any
from urllib.parse import unquote

from arbframe.testing.fake_venue import FakeOrder, FakeVenue, Fault, OrderRefused

from ..auth import JwtError, decode_token, hash_query, token_alg
from ..rest import ENDPOINTS, GROUP_LIMITS
from ..ticks import KRW_PRICE_UNITS, price_unit

__all__ = ["DEFAULT_BALANCES", "DEFAULT_MIDS", "FakeUpbit"]

D = Decimal
KST = timezone(timedelta(hours=9))
DEFAULT_MIDS = {"BTC": "148000000", "ETH": "5200000", "XRP": "3100", "USDT": "1452"}
DEFAULT_BALANCES = {"KRW": "100000000", "BTC": "1", "ETH": "10", "XRP": "1000", "USDT": "1000"}
_NAMES = {"BTC": ("비트코인", "Bitcoin"), "ETH": ("이더리움", "Ethereum"), "XRP": ("리플", "Ripple"),
          "USDT": ("테더", "Tether")}
_STABLE = tuple(sorted([(lo, u) for lo, u in KRW_PRICE_UNITS if not D(1000) <= lo < D(10000)] + [(D(1000), D("0.5"))],
                       key=lambda r: r[0], reverse=True))
_GROUPS = {(ep.method, ep.path): ep.group for ep in ENDPOINTS.values()}
_PRIVATE = {(ep.method, ep.path) for ep in ENDPOINTS.values() if ep.private}
_STATES = {"new": "wait", "partially_filled": "wait", "filled": "done", "canceled": "cancel"}
_SIMPLE_UNIT = {"ask_price": "ap", "bid_price": "bp", "ask_size": "as", "bid_size": "bs"}
_REFUSED = {  # OrderRefused.reason -> (HTTP status, Upbit error name; {side} is bid/ask, message)
    "rejected": (400, "create_{side}_error", "주문 요청 정보가 올바르지 않습니다."),
    "insufficient_balance": (400, "insufficient_funds_{side}", "주문가능한 금액이 부족합니다."),
    "duplicate_client_id": (400, "duplicate_identifier", "identifier already used"),
    "unknown_symbol": (400, "market_does_not_exist", "마켓 정보가 없습니다."),
    "bad_order": (400, "validation_error", "잘못된 API 요청입니다."),
    "unknown_order": (404, "order_not_found", "주문을 찾지 못했습니다."),
    "not_open": (400, "order_not_cancellable", "취소할 수 없는 주문입니다."),
}


@dataclass
class Logged:
    method: str
    path: str
    query: str
    authenticated: bool
    status: int = 0


def _f(value: Decimal) -> float:
    return float(value)


def _s(value: Decimal | None) -> str | None:
    if value is None:
        return None
    return format(value.normalize(), "f") if value != 0 else "0.0"


class FakeUpbit(FakeVenue):
    name = "upbit"
    quote = "KRW"

    def __init__(self, *, mids: dict[str, Any] | None = None, balances: dict[str, Any] | None = None,
                 keys: dict[str, str] | None = None, group_limits: dict[str, float] | None = None,
                 enforce_limits: bool = False, ws_interval: float = 0.02, levels: int = 30, **kw: Any) -> None:
        super().__init__(mids=mids or DEFAULT_MIDS, balances=DEFAULT_BALANCES if balances is None else balances,
                         levels=levels, **kw)
        self.keys = dict(keys or {"test-access-key": "test-secret-key"})
        self.group_limits = {**GROUP_LIMITS, **(group_limits or {})}
        self.enforce_limits = enforce_limits
        self.ws_interval = ws_interval
        self.log: list[Logged] = []
        self.jwt_algs: list[str] = []
        self.nonces: set[str] = set()
        self.identifiers: set[str] = set()  # every identifier an order reached the venue with, placed or not
        self.test_orders: list[dict[str, Any]] = []
        self._meta: dict[str, dict[str, Any]] = {}  # venue id -> ord_type, identifier, amount
        self._hand: dict[str, tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]] = {}
        self._windows: dict[str, deque[float]] = {}
        self.ts_ms = 0
        # WebSocket
        self.ws_silent = False
        self.ws_quiet = False
        self.ws_connections = 0
        self.ws_requests: list[dict[str, Any]] = []
        self.ws_pings = 0
        self.ws_burst = 0
        self._burst_bank: dict[str, list[bytes]] = {}
        self._subs: dict[Any, tuple[dict[str, Any], asyncio.Event]] = {}
        self._stepper: asyncio.Task[None] | None = None
        self._serving_loop: asyncio.AbstractEventLoop | None = None

    @property
    def base_url(self) -> str:
        return self.url

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/websocket/v1"

    # ------------------------------------------------------------------------------------------- market
    def price_step(self, symbol: str, price: Decimal) -> Decimal:
        return price_unit(price, _STABLE if symbol.upper() in ("USDT", "USDC") else KRW_PRICE_UNITS)

    def set_book(self, symbol: str, bids: Any, asks: Any) -> None:
        """A hand-written book for ``symbol``: ``[(price, qty), ...]`` per side, best first (orders consume it as
        any book); the mid moves to its middle."""
        symbol = symbol.upper()
        self._hand[symbol] = ([(D(str(p)), D(str(q))) for p, q in bids], [(D(str(p)), D(str(q))) for p, q in asks])
        self.set_mid(symbol, (self._hand[symbol][0][0][0] + self._hand[symbol][1][0][0]) / 2)

    def base_book(self, symbol: str) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        hand = self._hand.get(symbol)
        return (list(hand[0]), list(hand[1])) if hand is not None else super().base_book(symbol)

    def _now_ts(self) -> int:
        self.ts_ms = max(self.ts_ms + 1, int(time.time() * 1000))
        return self.ts_ms

    def orderbook_json(self, symbol: str, count: int = 30) -> dict[str, Any]:
        """One ``GET /v1/orderbook`` item: Upbit pairs an ask and a bid level per unit, numbers as JSON numbers."""
        return self._book_json(symbol, *self.book(symbol, count))

    def _book_json(self, symbol: str, bids: Any, asks: Any) -> dict[str, Any]:
        return {"market": f"KRW-{symbol}", "timestamp": self._now_ts(),
                "total_ask_size": _f(sum((q for _, q in asks), D(0))),
                "total_bid_size": _f(sum((q for _, q in bids), D(0))),
                "orderbook_units": [{"ask_price": _f(a[0]), "bid_price": _f(b[0]), "ask_size": _f(a[1]),
                                     "bid_size": _f(b[1])} for a, b in zip(asks, bids, strict=False)],
                "level": 0}

    def ticker_json(self, symbol: str) -> dict[str, Any]:
        bids, asks = self.book(symbol, 6)
        mid, now = self.mids[symbol], self._now_ts()
        day = datetime.fromtimestamp(now / 1000, timezone.utc)
        return {
            "market": f"KRW-{symbol}", "trade_date": day.strftime("%Y%m%d"), "trade_time": day.strftime("%H%M%S"),
            "trade_timestamp": now, "opening_price": _f(mid), "high_price": _f(asks[-1][0]),
            "low_price": _f(bids[-1][0]), "trade_price": _f(asks[0][0]), "prev_closing_price": _f(mid),
            "change": "EVEN", "change_price": 0.0, "change_rate": 0.0, "signed_change_price": 0.0,
            "signed_change_rate": 0.0, "trade_volume": 0.01, "acc_trade_price": 1.0e9, "acc_trade_price_24h": 2.0e9,
            "acc_trade_volume": 10.0, "acc_trade_volume_24h": 20.0, "timestamp": now,
        }

    def ws_orderbook(self, symbol: str, count: int, fmt: str, stream_type: str = "REALTIME") -> dict[str, Any]:
        return self._ws_shape(self.orderbook_json(symbol, count), fmt, stream_type)

    @staticmethod
    def _ws_shape(book: dict[str, Any], fmt: str, stream_type: str) -> dict[str, Any]:
        if fmt == "SIMPLE":
            return {"ty": "orderbook", "cd": book["market"], "tms": book["timestamp"], "tas": book["total_ask_size"],
                    "tbs": book["total_bid_size"],
                    "obu": [{_SIMPLE_UNIT[k]: v for k, v in u.items()} for u in book["orderbook_units"]],
                    "st": stream_type, "lv": 0}
        return {"type": "orderbook", "code": book["market"], "timestamp": book["timestamp"],
                "total_ask_size": book["total_ask_size"], "total_bid_size": book["total_bid_size"],
                "orderbook_units": book["orderbook_units"], "stream_type": stream_type, "level": 0}

    def ws_ticker(self, symbol: str, fmt: str, stream_type: str = "REALTIME") -> dict[str, Any]:
        t = self.ticker_json(symbol)
        if fmt == "SIMPLE":
            return {"ty": "ticker", "cd": t["market"], "tp": t["trade_price"], "tms": t["timestamp"], "st": stream_type}
        return {"type": "ticker", "code": t["market"], "trade_price": t["trade_price"], "timestamp": t["timestamp"],
                "stream_type": stream_type}

    # ------------------------------------------------------------------------------------------ answers
    def _json(self, data: Any, status: int = 200) -> Any:
        from aiohttp import web

        return web.Response(body=json.dumps(data, ensure_ascii=False).encode(), status=status,
                            content_type="application/json")

    def _error(self, status: int, name: Any, message: str) -> Any:
        return self._json({"error": {"name": name, "message": message}}, status)

    async def _apply_fault(self, fault: Fault, request: Any) -> Any:
        """Upbit's own shapes of the shared faults: a 429 carries no ``Retry-After``; a 418 says in its message
        how long the block lasts (``retry_after`` seconds)."""
        if fault.kind == "rate_limited":
            return self._error(429, "too_many_requests", "Too many API requests.")
        if fault.kind == "banned":
            return self._error(418, "blocked", f"Too many requests: IP blocked for {fault.retry_after:g} seconds")
        return await super()._apply_fault(fault, request)

    async def venue_fault(self, fault: Fault, request: Any) -> Any:
        """``auth``: 401 ``jwt_verification``; ``venue_error``: ``status`` (400) with Upbit's ``name``."""
        if fault.kind == "auth":
            return self._error(401, "jwt_verification", "JWT 헤더 검증에 실패했습니다.")
        details = fault.details
        return self._error(int(details.get("status", 400)), details.get("name", "validation_error"),
                           str(details.get("message", "injected venue error")))

    def _refused(self, refused: OrderRefused, side: str = "bid") -> Any:
        status, name, message = _REFUSED[refused.reason]
        return self._error(status, name.format(side=side), message)

    # ------------------------------------------------------------------------------------------ serving
    def routes(self, app: Any) -> None:
        outer, inner = self._middlewares()
        app.middlewares.insert(0, outer)
        app.middlewares.append(inner)
        app.router.add_get("/v1/market/all", self._markets)
        app.router.add_get("/v1/ticker", self._ticker)
        app.router.add_get("/v1/orderbook", self._orderbook)
        app.router.add_get("/v1/accounts", self._accounts)
        app.router.add_post("/v1/orders", self._place)
        app.router.add_post("/v1/orders/test", self._place)
        app.router.add_get("/v1/order", self._get_order)
        app.router.add_delete("/v1/order", self._cancel)
        app.router.add_get("/v1/orders/open", self._open_orders)
        app.router.add_get("/websocket/v1", self._websocket)

    async def start(self) -> FakeUpbit:
        self._serving_loop = asyncio.get_running_loop()
        await super().start()
        return self

    async def close(self) -> None:
        stepper, self._stepper = self._stepper, None
        if stepper is not None:
            stepper.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await stepper
        await super().close()

    def _remaining(self, group: str) -> str:
        window = self._windows.setdefault(group, deque())
        now = time.monotonic()
        while window and window[0] <= now - 1.0:
            window.popleft()
        left = max(0, int(self.group_limits.get(group, 30)) - len(window))
        return f"group={group}; min=1800; sec={left}"

    async def _authenticate(self, request: Any) -> tuple[str, str] | None:
        """None when the JWT verifies, else (Upbit error name, message)."""
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return "no_authorization_token", "인증 정보가 없습니다. (Authorization header missing)"
        self.jwt_algs.append(token_alg(header[7:]))
        try:
            payload = decode_token(header[7:], self.keys.get)
        except JwtError as exc:
            return ("invalid_access_key" if "unknown access key" in str(exc) else "jwt_verification",
                    f"JWT 검증 실패: {exc}")
        if payload["nonce"] in self.nonces:
            return "nonce_used", "이미 요청한 nonce값이 다시 사용되었습니다."
        self.nonces.add(payload["nonce"])
        if request.method == "POST":
            body = await request.read()
            obj = json.loads(body) if body else {}
            raw = "&".join(f"{k}={v}" for k, value in obj.items() for v in (value if isinstance(value, list)
                                                                          else [value]))
        else:
            raw = unquote(request.query_string)
        expected = hash_query(raw) if raw else None
        if payload.get("query_hash") != expected or (raw and payload.get("query_hash_alg", "SHA512") != "SHA512"):
            return "invalid_query_payload", "query_hash mismatch (쿼리 해시 불일치)"
        return None

    def _middlewares(self) -> tuple[Any, Any]:
        """(outermost: log, read the body before a fault delays the answer, ``Remaining-Req``; innermost, after
        the shared faults: Upbit's own rate limit and the JWT check)."""
        from aiohttp import web

        @web.middleware
        async def log(request: Any, handler: Any) -> Any:
            if request.path.startswith("/websocket"):
                return await handler(request)
            entry = Logged(request.method, request.path, request.query_string, "Authorization" in request.headers)
            self.log.append(entry)
            if request.method == "POST":
                await request.read()  # cached: a late answer still has the body after the client left
            response = await handler(request)
            response.headers["Remaining-Req"] = self._remaining(_GROUPS.get((request.method, request.path),
                                                                             "default"))
            entry.status = response.status
            return response

        @web.middleware
        async def upbit(request: Any, handler: Any) -> Any:
            if request.path.startswith("/websocket"):
                return await handler(request)
            group = _GROUPS.get((request.method, request.path), "default")
            self._remaining(group)
            window = self._windows[group]
            window.append(time.monotonic())
            if self.enforce_limits and len(window) > self.group_limits.get(group, 30):
                return self._error(429, "too_many_requests", "Too many API requests.")
            if (request.method, request.path) in _PRIVATE and (problem := await self._authenticate(request)):
                return self._error(401, *problem)
            return await handler(request)

        return log, upbit

    # ------------------------------------------------------------------------------------ public REST
    def _symbols_of(self, request: Any) -> list[str] | None:
        codes = [c for c in request.query.get("markets", "").split(",") if c]
        out = []
        for code in codes:
            quote, _, base = code.partition("-")
            if quote != "KRW" or base not in self.mids:
                return None
            out.append(base)
        return out or None

    async def _markets(self, request: Any) -> Any:
        return self._json([{"market": f"KRW-{s}", "korean_name": _NAMES.get(s, (s, s))[0],
                            "english_name": _NAMES.get(s, (s, s))[1]} for s in self.mids])

    async def _ticker(self, request: Any) -> Any:
        symbols = self._symbols_of(request)
        if symbols is None:
            return self._error(404, 404, "Code not found")
        return self._json([self.ticker_json(s) for s in symbols])

    async def _orderbook(self, request: Any) -> Any:
        symbols = self._symbols_of(request)
        if symbols is None:
            return self._error(404, 404, "Code not found")
        try:
            count = int(request.query.get("count", 30))
        except ValueError:
            return self._error(400, "validation_error", "count must be a number")
        return self._json([self.orderbook_json(s, count) for s in symbols])

    # ----------------------------------------------------------------------------------- private REST
    async def _accounts(self, request: Any) -> Any:
        return self._json([{"currency": cur, "balance": _s(self.balances.get(cur, D(0))),
                            "locked": _s(self.locked.get(cur, D(0))), "avg_buy_price": "0",
                            "avg_buy_price_modified": False, "unit_currency": "KRW"}
                           for cur in sorted(set(self.balances) | set(self.locked))])

    def uuid_of(self, order: FakeOrder) -> str:
        """Upbit's order id of a stored order (a UUID; the matching engine numbers its orders)."""
        return f"00000000-0000-4000-8000-{int(order.venue_id):012d}"

    def view(self, order: FakeOrder, *, state: str | None = None, trades: bool = False) -> dict[str, Any]:
        """The Upbit order object of ``order``."""
        meta = self._meta[order.venue_id]
        side = "bid" if order.side == "buy" else "ask"
        by_amount = meta["ord_type"] == "price"
        fee_rate = self.fees[order.side][0]
        reserved = order.price * order.qty * fee_rate if side == "bid" else D(0)
        created = datetime.fromtimestamp(order.created_ms / 1000, KST).replace(microsecond=0).isoformat()
        out: dict[str, Any] = {
            "uuid": self.uuid_of(order), "side": side, "ord_type": meta["ord_type"],
            "price": _s(meta["amount"] if by_amount else (order.price if meta["ord_type"] == "limit" else None)),
            "state": state or _STATES[order.status], "market": f"KRW-{order.symbol}", "created_at": created,
            "volume": None if by_amount else _s(order.qty),
            "remaining_volume": None if by_amount else _s(order.remaining if order.is_open else D(0)),
            "reserved_fee": _s(reserved),
            "remaining_fee": _s(max(D(0), reserved - order.fee) if order.is_open else D(0)),
            "paid_fee": _s(order.fee), "locked": _s(order.locked), "executed_volume": _s(order.filled_qty),
            "executed_funds": _s(order.quote_qty), "trades_count": len(order.fills),
        }
        if meta["identifier"] is not None:
            out["identifier"] = meta["identifier"]
        if meta["time_in_force"] is not None:
            out["time_in_force"] = meta["time_in_force"]
        if trades:
            out["trades"] = [{"market": out["market"],
                              "uuid": str(uuid.uuid5(uuid.NAMESPACE_OID, f"{order.venue_id}:{i}")), "price": _s(p),
                              "volume": _s(q), "funds": _s(p * q), "side": side, "created_at": created}
                             for i, (p, q, _fee) in enumerate(order.fills)]
        return out

    def _checked(self, body: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        """(the order's terms, None) or (None, Upbit's error answer): Upbit's checks before anything is placed."""
        quote, _, symbol = str(body.get("market", "")).partition("-")
        side, ord_type, tif = body.get("side"), body.get("ord_type"), body.get("time_in_force")
        if quote != "KRW" or symbol not in self.mids:
            return {}, self._error(400, "market_does_not_exist", "마켓 정보가 없습니다.")
        if side not in ("bid", "ask") or ord_type not in ("limit", "price", "market"):
            return {}, self._error(400, "validation_error", "side / ord_type")
        if tif not in (None, "ioc", "fok") or (tif is not None and ord_type != "limit"):
            return {}, self._error(400, "validation_error", "time_in_force: ioc or fok, limit orders only")
        try:
            price = D(str(body["price"])) if body.get("price") is not None else None
            volume = D(str(body["volume"])) if body.get("volume") is not None else None
        except ArithmeticError:
            return {}, self._error(400, "validation_error", "price / volume must be numbers")
        bids, asks = self.book(symbol)
        if ord_type == "limit":
            if price is None or volume is None:
                return {}, self._error(400, f"create_{side}_error", "limit needs price and volume")
            if price % self.price_step(symbol, price) != 0:
                return {}, self._error(400, f"invalid_price_{side}", "주문가격 단위를 잘못 입력하셨습니다.")
            total = price * volume
        elif ord_type == "price":
            if price is None or volume is not None or side != "bid":
                return {}, self._error(400, f"create_{side}_error", "market buy: price (KRW amount), no volume")
            total = price
        else:
            if volume is None or price is not None or side != "ask":
                return {}, self._error(400, f"create_{side}_error", "market sell: volume, no price")
            total = volume * (bids[0][0] if bids else D(0))
        if total < 5000:
            return {}, self._error(400, f"under_min_total_{side}", "최소주문금액 이상으로 주문해주세요")
        if volume is not None and volume.as_tuple().exponent < -8:  # type: ignore[operator]
            return {}, self._error(400, "invalid_volume", "volume has more than 8 decimals")
        terms = {"symbol": symbol, "side": "buy" if side == "bid" else "sell", "ord_type": ord_type,
                 "tif": {"ioc": "IOC", "fok": "FOK"}.get(tif, "GTC") if ord_type == "limit" else "IOC",
                 "price": price, "volume": volume, "time_in_force": tif, "upbit_side": side}
        if ord_type == "price":  # a market buy of a KRW amount: the volume the asks give for it, at worst their last
            left, qty, worst = price, D(0), asks[0][0] if asks else D(0)
            for level_price, level_qty in asks:
                take = min(level_qty, (left / level_price).quantize(self.qty_step, ROUND_DOWN))
                qty, left, worst = qty + take, left - take * level_price, level_price
                if take < level_qty:
                    break
            terms.update(price=worst, volume=qty)
        elif ord_type == "market":  # a market sell walks every bid
            terms["price"] = bids[-1][0] if bids else self.price_step(symbol, self.mids[symbol])
        return terms, None

    async def _place(self, request: Any) -> Any:
        try:
            body = json.loads(await request.read())
        except ValueError:
            return self._error(400, "validation_error", "body must be JSON")
        if not isinstance(body, dict):
            return self._error(400, "validation_error", "body must be a JSON object")
        terms, refused = self._checked(body)
        if refused is not None:
            return refused
        identifier = body.get("identifier")
        if request.path.endswith("/test"):  # checked like a real order, never placed
            self.test_orders.append(body)
            asset, need = self._needs(terms["symbol"], terms["side"], terms["price"], terms["volume"])
            if self.balances.get(asset, D(0)) < need:
                return self._error(400, f"insufficient_funds_{terms['upbit_side']}", "주문가능한 금액이 부족합니다.")
            return self._json({**{k: body.get(k) for k in ("market", "side", "ord_type", "price", "volume",
                                                           "identifier", "time_in_force")},
                               "uuid": str(uuid.uuid4()), "state": "wait", "remaining_volume": body.get("volume"),
                               "created_at": datetime.now(KST).replace(microsecond=0).isoformat(),
                               "reserved_fee": "0", "remaining_fee": "0", "paid_fee": "0", "locked": "0",
                               "executed_volume": "0", "executed_funds": "0", "trades_count": 0}, 201)
        if identifier is not None and identifier in self.identifiers:  # Upbit: once, even after a failure
            return self._error(400, "duplicate_identifier", "identifier already used")
        if identifier is not None:
            self.identifiers.add(identifier)
        try:
            order = self.place_limit(terms["symbol"], terms["side"], terms["price"], terms["volume"],
                                     identifier if identifier is not None else f"~{uuid.uuid4()}", terms["tif"])
        except OrderRefused as exc:
            return self._refused(exc, terms["upbit_side"])
        self._meta[order.venue_id] = {"ord_type": terms["ord_type"], "identifier": identifier,
                                      "amount": D(str(body["price"])) if terms["ord_type"] == "price" else None,
                                      "time_in_force": terms["time_in_force"]}
        late = await self.after_accept(order, request)
        if late is not None:
            return late
        return self._json(self.view(order), 201)

    def _find(self, request: Any) -> FakeOrder | None:
        order_uuid, identifier = request.query.get("uuid"), request.query.get("identifier")
        if order_uuid is not None:
            venue_id = order_uuid.rsplit("-", 1)[-1].lstrip("0")
            order = self.get_order(venue_id=venue_id) if venue_id.isdigit() else None
            return order if order is not None and self.uuid_of(order) == order_uuid else None
        return self.get_order(client_id=identifier) if identifier is not None else None

    async def _get_order(self, request: Any) -> Any:
        if "uuid" not in request.query and "identifier" not in request.query:
            return self._error(400, "validation_error", "uuid or identifier is required")
        order = self._find(request)
        if order is None:
            return self._error(404, "order_not_found", "주문을 찾지 못했습니다.")
        return self._json(self.view(order, trades=True))

    async def _cancel(self, request: Any) -> Any:
        order = self._find(request)
        if order is None:
            return self._error(404, "order_not_found", "주문을 찾지 못했습니다.")
        before = self.view(order)  # Upbit answers before the cancel is applied
        try:
            self.cancel(venue_id=order.venue_id)
        except OrderRefused as exc:
            return self._refused(exc)
        return self._json(before)

    async def _open_orders(self, request: Any) -> Any:
        states = request.query.getall("states[]", None) or [request.query.get("state", "wait")]
        market = request.query.get("market")
        try:
            limit = min(int(request.query.get("limit", 100)), 100)
            page = max(int(request.query.get("page", 1)), 1)
        except ValueError:
            return self._error(400, "validation_error", "page / limit")
        rows = [o for o in self.orders.values()
                if _STATES[o.status] in states and (market is None or f"KRW-{o.symbol}" == market)]
        rows.sort(key=lambda o: int(o.venue_id), reverse=request.query.get("order_by", "desc") == "desc")
        return self._json([self.view(o) for o in rows[(page - 1) * limit: page * limit]])

    # -------------------------------------------------------------------------------------- WebSocket
    def on_step(self) -> None:
        """A step moved the market: every subscribed WebSocket client gets its books (from any thread)."""
        loop = self._serving_loop
        if loop is None or loop.is_closed():
            return
        for _sub, changed in list(self._subs.values()):
            loop.call_soon_threadsafe(changed.set)

    async def _step_while_subscribed(self) -> None:
        """The market moves every ``ws_interval`` while a client streams (REST-only tests see a still market)."""
        while self._subs:
            await asyncio.sleep(self.ws_interval)
            if not (self.ws_silent or self.ws_quiet):
                self.step()

    async def _websocket(self, request: Any) -> Any:
        from aiohttp import WSMsgType, web

        if self.refuse_ws:
            return web.Response(status=503, text="Service Unavailable")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.ws_connections += 1
        self.ws_clients.append(ws)
        sender: asyncio.Task[None] | None = None
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
                self._subs[ws] = (sub, asyncio.Event())
                sender = asyncio.get_running_loop().create_task(self._stream(ws, sub))
                if self._stepper is None or self._stepper.done():
                    self._stepper = asyncio.get_running_loop().create_task(self._step_while_subscribed())
        finally:
            self._subs.pop(ws, None)
            if sender is not None:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await sender
            with contextlib.suppress(ValueError):
                self.ws_clients.remove(ws)
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

    async def _stream(self, ws: Any, sub: dict[str, Any]) -> None:
        """The snapshot, an optional burst (benchmarks), then the books of every step while not silent."""
        fmt = sub["format"]

        async def send_all(stream_type: str) -> None:
            for symbol, count in sub["orderbook"]:
                if symbol in self.mids:
                    await ws.send_bytes(json.dumps(self.ws_orderbook(symbol, count, fmt, stream_type)).encode())
            for symbol, _count in sub["ticker"]:
                if symbol in self.mids:
                    await ws.send_bytes(json.dumps(self.ws_ticker(symbol, fmt, stream_type)).encode())

        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await send_all("SNAPSHOT")
            for payload in self.burst_messages(sub, self.ws_burst) if self.ws_burst else ():
                await ws.send_bytes(payload)
            changed = self._subs[ws][1] if ws in self._subs else asyncio.Event()
            while not ws.closed:
                await changed.wait()
                changed.clear()
                if not (self.ws_silent or self.ws_quiet):
                    await send_all("REALTIME")

    def evolving_books(self, symbol: str, count: int, n: int, fmt: str | None = None) -> list[dict[str, Any]]:
        """``n`` successive books of ``symbol`` changing the way a live book does (seeded): each update resizes
        two levels, and one in five moves the price a unit (a level is taken, another appears). ``fmt`` None:
        ``GET /v1/orderbook`` items; ``SIMPLE``/``DEFAULT``: WebSocket messages. For benchmarks and replays."""
        rng = random.Random(f"{self.seed}:evolve:{symbol}")
        bids, asks = ([[p, q] for p, q in side] for side in self.book(symbol, count))

        def size() -> Decimal:
            return D(rng.randint(1000, 200000000)).scaleb(-8)

        out = []
        for _ in range(n):
            move = rng.random()
            if move < 0.1 or move > 0.9:
                unit = asks[0][0] - bids[0][0]
                if move < 0.1:  # up: the best ask is taken, a new bid appears on top
                    bids.insert(0, [bids[0][0] + unit, size()])
                    del bids[-1], asks[0]
                    asks.append([asks[-1][0] + unit, size()])
                else:  # down
                    asks.insert(0, [asks[0][0] - unit, size()])
                    del asks[-1], bids[0]
                    bids.append([bids[-1][0] - unit, size()])
            for _ in range(2):
                side = bids if rng.random() < 0.5 else asks
                side[rng.randrange(len(side))][1] = size()
            book = self._book_json(symbol, bids, asks)
            out.append(book if fmt is None else self._ws_shape(book, fmt, "REALTIME"))
        return out

    def burst_messages(self, sub: dict[str, Any], n: int) -> list[bytes]:
        """``n`` pre-encoded realtime orderbook messages for the subscription (200 distinct ones, cycled; cached)."""
        key = json.dumps([sub["format"], sub["orderbook"], n])
        bank = self._burst_bank.get(key)
        if bank is None:
            distinct = [json.dumps(book).encode() for symbol, count in sub["orderbook"] if symbol in self.mids
                        for book in self.evolving_books(symbol, count, min(n, 200), sub["format"])]
            bank = self._burst_bank[key] = [distinct[i % len(distinct)] for i in range(n)] if distinct else []
        return bank


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - manual use and benchmarks
    import argparse

    parser = argparse.ArgumentParser(description="run the fake Upbit server (REST + WebSocket) on 127.0.0.1")
    parser.add_argument("--ws-interval", type=float, default=0.05, help="seconds between streamed updates")
    parser.add_argument("--ws-burst", type=int, default=0,
                        help="orderbook messages sent back to back after each subscription")
    parser.add_argument("--no-limits", action="store_true", help="report huge Remaining-Req budgets")
    args = parser.parse_args(argv)

    async def serve() -> None:
        limits = {g: 1e9 for g in GROUP_LIMITS} if args.no_limits else None
        async with FakeUpbit(ws_interval=args.ws_interval, group_limits=limits) as fake:
            fake.ws_burst = args.ws_burst
            print(f"BASE_URL={fake.base_url} WS_URL={fake.ws_url} (key test-access-key / test-secret-key)",
                  flush=True)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":  # pragma: no cover
    main()
