"""The ``upbit`` exchange driver (entry point ``arbframe.exchange: upbit``).

Where each call goes:

==========================  =====================================  ==========================================
situation                   market data                            balances / orders
==========================  =====================================  ==========================================
``context.mock`` true       kernel ``SimulatedExchange``           the same simulated exchange's account
mode != live or no keys     Upbit REST / WebSocket                 a ``SimulatedAccount`` (warning when no keys)
mode == live with keys      Upbit REST / WebSocket                 Upbit private REST (JWT-signed)
==========================  =====================================  ==========================================

Orders therefore only ever reach Upbit in live mode. ``fetch_order_book`` serves the WebSocket book when
``use_websocket`` is on and the stream's book is fresher than ``stream_max_age_seconds``, and polls REST
otherwise (stream down, reconnecting, or silent).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Mapping
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from typing import Any, ClassVar

from arbframe import (
    Balance,
    ConfigError,
    Exchange,
    HealthCheck,
    HealthResult,
    HealthStatus,
    MarketRules,
    Order,
    OrderBook,
    OrderRequest,
    OrderType,
    PluginContext,
    Side,
    VenueRouting,
    configured_symbols,
    hookimpl,
    mask_secret,
    paper_balances,
    usable_credential,
)

from .errors import (
    UpbitError,
    UpbitNetworkError,
    UpbitNotFound,
    UpbitOrderNotPlaced,
    UpbitOrderRejected,
    UpbitServerError,
)
from .parsing import (
    QUOTE,
    dec,
    market_for,
    parse_account_details,
    parse_accounts,
    parse_order,
    parse_rest_orderbook,
    symbol_for,
)
from .ratelimit import DEFAULT_GROUP_LIMITS, RateLimiter
from .rest import RestObserver, UpbitRest
from .ticks import KRW_PRICE_UNITS, MIN_ORDER_KRW, build_table, price_unit

__all__ = ["DEFAULTS", "UpbitExchange"]

log = logging.getLogger("arbframe.upbit")

_QTY_STEP = Decimal("0.00000001")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
#: stablecoin markets keep a 0.5 KRW unit in the 1,000-10,000 band (Upbit notice effective 2025-03-21)
_STABLE_TABLE = [[lo, unit] for lo, unit in KRW_PRICE_UNITS if not 1000 <= lo < 10000] + [[1000, "0.5"]]
_DEFAULT_OVERRIDES = {"USDT": _STABLE_TABLE, "USDC": _STABLE_TABLE}

DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "api_key": "",
    "api_secret": "",
    "rate_limit": 10,
    "group_limits": {},
    "base_url": "https://api.upbit.com",
    "ws_url": "wss://api.upbit.com/websocket/v1",
    "fee_rate": 0.0005,
    "min_order_krw": 5000,
    "timeout_seconds": 5.0,
    "max_retries": 3,
    "retry_backoff_seconds": 0.2,
    "retry_backoff_max_seconds": 5.0,
    "ban_seconds": 60,
    "use_websocket": False,
    "ws_format": "SIMPLE",
    "ws_ping_interval_seconds": 5.0,
    "ws_silence_timeout_seconds": 15.0,
    "ws_reconnect_initial_seconds": 0.5,
    "ws_reconnect_max_seconds": 30.0,
    "stream_max_age_seconds": 3.0,
    "symbols": [],
    "price_units": None,
    "price_unit_overrides": None,
    "simulated_balances": {"KRW": 10000000},
    "health_timeout_seconds": 3.0,
    "order_lookup_attempts": 3,
    "order_lookup_delay_seconds": 1.0,
}


class _Metrics(RestObserver):
    """Feeds ExchangeMetrics; labelled children are cached (the hot path costs a dict lookup)."""

    def __init__(self, registry: Any, exchange: str) -> None:
        from arbframe import ExchangeMetrics  # shared, registry-scoped families

        self.m = ExchangeMetrics.get(registry)
        self.exchange = exchange
        # counters at 0 for every error kind and limit group, so the first error (a 418 ban) is an increase
        self.m.precreate(exchange, groups=tuple(DEFAULT_GROUP_LIMITS))
        self._req: dict[tuple[str, str], Any] = {}
        self._lat: dict[str, Any] = {}
        self.ws_reconnect_counter = self.m.ws_reconnects.labels(exchange=exchange)
        self.ws_age_gauge = self.m.ws_message_age_seconds.labels(exchange=exchange)

    def request(self, endpoint: str, status: str, seconds: float) -> None:
        key = (endpoint, status)
        child = self._req.get(key)
        if child is None:
            child = self._req[key] = self.m.requests.labels(exchange=self.exchange, endpoint=endpoint,
                                                            status=status)
        child.inc()
        hist = self._lat.get(endpoint)
        if hist is None:
            hist = self._lat[endpoint] = self.m.request_seconds.labels(exchange=self.exchange, endpoint=endpoint)
        hist.observe(seconds)

    def error(self, kind: str) -> None:
        self.m.errors.labels(exchange=self.exchange, kind=kind).inc()

    def wait(self, group: str, seconds: float) -> None:
        self.m.rate_limit_waits.labels(exchange=self.exchange, group=group).inc()
        self.m.rate_limit_wait_seconds.labels(exchange=self.exchange, group=group).inc(seconds)

    def ws_reconnect(self) -> None:
        self.ws_reconnect_counter.inc()

    def ws_age(self, seconds: float) -> None:
        self.ws_age_gauge.set(seconds)


class UpbitExchange(Exchange):
    """Upbit KRW markets: REST + WebSocket market data, JWT-signed private API, mock-mode fallbacks."""

    name: ClassVar[str] = "upbit"
    quote_currency: ClassVar[str] = QUOTE
    api_version: ClassVar[int] = 1

    # ---------------------------------------------------------------------------------------- config
    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        num = {"type": "number", "exclusiveMinimum": 0}
        table = {"type": ["array", "null"], "items": {"type": "array", "minItems": 2, "maxItems": 2,
                                                      "items": {"type": ["number", "string"]}}}
        return {
            "type": "object",
            "description": "Upbit connector (arbframe-exchange-upbit)",
            "additionalProperties": False,
            "properties": {
                "enabled": {"type": "boolean", "default": True},
                "api_key": {"type": ["string", "null"], "writeOnly": True, "description": "Upbit access key"},
                "api_secret": {"type": ["string", "null"], "writeOnly": True, "description": "Upbit secret key"},
                "rate_limit": {**num, "default": 10, "description": "overall requests per second (seed D4)"},
                "group_limits": {"type": "object", "additionalProperties": num,
                                 "description": "requests/s per Upbit request group (market, ticker, "
                                                "orderbook, default, order, ...)"},
                "base_url": {"type": "string", "default": DEFAULTS["base_url"]},
                "ws_url": {"type": "string", "default": DEFAULTS["ws_url"]},
                "fee_rate": {"type": "number", "minimum": 0, "maximum": 0.05, "default": 0.0005},
                "min_order_krw": {"type": "number", "minimum": 0, "default": 5000},
                "timeout_seconds": {**num, "default": 5.0},
                "max_retries": {"type": "integer", "minimum": 0, "maximum": 10, "default": 3},
                "retry_backoff_seconds": {"type": "number", "minimum": 0, "default": 0.2},
                "retry_backoff_max_seconds": {"type": "number", "minimum": 0, "default": 5.0},
                "ban_seconds": {**num, "default": 60, "description": "pause after HTTP 418 when Upbit "
                                                                    "does not say how long"},
                "use_websocket": {"type": "boolean", "default": False,
                                  "description": "serve order books from the WebSocket stream (REST fallback)"},
                "ws_format": {"enum": ["SIMPLE", "DEFAULT"], "default": "SIMPLE"},
                "ws_ping_interval_seconds": {**num, "default": 5.0, "description": "keep-alive PING interval; at "
                                             "most half of ws_silence_timeout_seconds"},
                "ws_silence_timeout_seconds": {**num, "default": 15.0,
                                               "description": "a stream silent this long (not even the PING "
                                                              "answer) is dead and reopened"},
                "ws_reconnect_initial_seconds": {**num, "default": 0.5},
                "ws_reconnect_max_seconds": {**num, "default": 30.0},
                "stream_max_age_seconds": {**num, "default": 3.0},
                "symbols": {"type": "array", "items": {"type": "string"},
                            "description": "symbols to stream from start-up (default: arbitrage.symbols)"},
                "price_units": {**table, "description": "KRW price-unit table [[lower_bound, unit], ...]"},
                "price_unit_overrides": {"type": ["object", "null"], "additionalProperties": table},
                "simulated_balances": {"type": "object", "additionalProperties": {"type": ["number", "string"]},
                                       "description": "wallet of the simulated account (no keys / not live); "
                                                      "default: paper.balances.upbit"},
                "health_timeout_seconds": {**num, "default": 3.0},
                "order_lookup_attempts": {"type": "integer", "minimum": 1, "default": 3,
                                          "description": "lookups by identifier after an order's answer is lost"},
                "order_lookup_delay_seconds": {"type": "number", "minimum": 0, "default": 1.0},
            },
        }

    # ------------------------------------------------------------------------------------------ build
    def __init__(self, section: Mapping[str, Any] | None = None, context: PluginContext | None = None) -> None:
        cfg = dict(DEFAULTS)
        cfg.update({k: v for k, v in (section or {}).items() if v is not None or k in ("api_key", "api_secret")})
        self.config = cfg
        self.context = context
        from .ws import check_keepalive  # light: ws.py imports aiohttp only when a stream runs

        problem = check_keepalive(float(cfg["ws_ping_interval_seconds"]), float(cfg["ws_silence_timeout_seconds"]))
        if problem is not None:
            raise ConfigError(f"upbit.ws_ping_interval_seconds / upbit.ws_silence_timeout_seconds: {problem}")
        self.enabled = bool(cfg["enabled"])
        self._fee_rate = Decimal(str(cfg["fee_rate"]))
        self.min_order = Decimal(str(cfg["min_order_krw"])) if cfg["min_order_krw"] is not None else MIN_ORDER_KRW
        self._table = build_table(cfg["price_units"])
        overrides = cfg["price_unit_overrides"] if cfg["price_unit_overrides"] is not None else _DEFAULT_OVERRIDES
        self._overrides = {str(k).upper(): build_table(v) for k, v in (overrides or {}).items()}
        self._access_key = usable_credential(cfg.get("api_key"))
        self._secret_key = usable_credential(cfg.get("api_secret"))
        self.routing = VenueRouting(
            self.name, context=context, quote_currency=QUOTE, fee_rate=self._fee_rate,
            balances=paper_balances(self.name, context, section or {}) or cfg["simulated_balances"],
            api_key=self._access_key, api_secret=self._secret_key, base_url=str(cfg["base_url"]),
            symbols=configured_symbols(cfg, context), last_book=lambda symbol: self._last_books.get(symbol),
            rules=self.market_rules, log=log,
        )
        self.mode = self.routing.mode
        self.mock = self.routing.mock
        self.live_private = self.routing.live_private
        registry = getattr(context, "registry", None)
        self._observer: _Metrics | RestObserver = _Metrics(registry, self.name) if registry is not None \
            else RestObserver()
        limiter = RateLimiter(float(cfg["rate_limit"]), cfg.get("group_limits") or {},
                              on_wait=self._observer.wait)
        self.rest = UpbitRest(
            base_url=str(cfg["base_url"]), access_key=self._access_key, secret_key=self._secret_key,
            limiter=limiter, timeout=float(cfg["timeout_seconds"]), max_retries=int(cfg["max_retries"]),
            backoff=float(cfg["retry_backoff_seconds"]), backoff_max=float(cfg["retry_backoff_max_seconds"]),
            ban_seconds=float(cfg["ban_seconds"]), observer=self._observer,
        )
        self.use_websocket = bool(cfg["use_websocket"]) and not self.mock
        self._stream: Any = None
        self._last_books: dict[str, OrderBook] = {}
        self._markets: set[str] | None = None
        self._closed = False
        self.routing.announce()

    @property
    def has_credentials(self) -> bool:
        return bool(self._access_key and self._secret_key)

    @property
    def fee_rate(self) -> Decimal:
        return self._fee_rate

    @property
    def simulated(self) -> bool:
        return self.mock

    def describe(self) -> str:
        return self.routing.describe("UpbitExchange")

    def _simulated_exchange(self) -> Any:
        return self.routing.simulated_exchange()

    def _configured_symbols(self) -> list[str]:
        return self.routing.symbols

    # ------------------------------------------------------------------------------------- lifecycle
    async def connect(self) -> None:
        self._closed = False
        if self.mock:
            self._simulated_exchange()
            return
        await self.rest.start()
        try:
            await self.fetch_markets()
        except UpbitError as exc:
            log.warning("upbit: could not load the market list (%s); carrying on", exc)
        if self.use_websocket:
            symbols = self._configured_symbols()
            if symbols:
                self._ensure_stream(symbols)

    async def close(self) -> None:
        self._closed = True
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.stop()
        await self.rest.close()

    # ------------------------------------------------------------------------------------ market data
    async def fetch_markets(self) -> list[str]:
        """Symbols of Upbit's KRW markets (``GET /v1/market/all``)."""
        if self.mock:
            return list(self._simulated_exchange().market.symbols)
        rows = await self.rest.request("markets", {"is_details": "false"})
        markets = {str(r["market"]) for r in rows if isinstance(r, dict) and "market" in r}
        self._markets = markets
        return sorted(symbol_for(m) for m in markets if m.startswith(QUOTE + "-"))

    async def fetch_last_prices(self, symbols: list[str]) -> dict[str, Decimal]:
        """Last trade prices (``GET /v1/ticker``), symbol -> KRW."""
        if self.mock:
            sim = self._simulated_exchange()
            out = {}
            for s in symbols:
                book = await sim.fetch_order_book(s, 1)
                out[s] = (book.best_bid + book.best_ask) / 2
            return out
        rows = await self.rest.request("ticker", {"markets": ",".join(market_for(s) for s in symbols)})
        return {symbol_for(r["market"]): dec(r["trade_price"]) for r in rows}

    async def fetch_order_book(self, symbol: str, depth: int = 15) -> OrderBook:
        """The freshest book: the WebSocket's when ``use_websocket`` and it is fresh, else REST."""
        if self.mock:
            return await self._simulated_exchange().fetch_order_book(symbol, depth)
        if self.use_websocket:
            return await self.fresh_order_book(symbol, depth)
        return await self.rest_order_book(symbol, depth)

    async def rest_order_book(self, symbol: str, depth: int = 15) -> OrderBook:
        """``GET /v1/orderbook`` for one symbol (always REST)."""
        return (await self.rest_order_books([symbol], depth))[symbol]

    async def rest_order_books(self, symbols: list[str], depth: int = 15) -> dict[str, OrderBook]:
        """Books of several symbols in one request."""
        if self.mock:
            sim = self._simulated_exchange()
            return {s: await sim.fetch_order_book(s, depth) for s in symbols}
        params = {"markets": ",".join(market_for(s) for s in symbols), "count": min(max(depth, 1), 30)}
        rows = await self.rest.request("orderbook", params)
        if not isinstance(rows, list):
            from .errors import UpbitProtocolError

            raise UpbitProtocolError("orderbook: expected a list", endpoint="/v1/orderbook")
        books = {}
        for row in rows:
            book = parse_rest_orderbook(row, self.name, depth)
            books[book.symbol] = book
            self._last_books[book.symbol] = book
        missing = [s for s in symbols if s not in books]
        if missing:
            raise UpbitNotFound(f"no order book for {', '.join(missing)}", endpoint="/v1/orderbook")
        return books

    async def fresh_order_book(self, symbol: str, depth: int = 15) -> OrderBook:
        """What the engine calls each tick when streaming: the stream's book for ``symbol`` if it is younger
        than ``stream_max_age_seconds``; otherwise (stream down, reconnecting, silent) a REST poll."""
        if self.mock:
            return await self._simulated_exchange().fetch_order_book(symbol, depth)
        stream = self._ensure_stream([symbol], depth)
        book = stream.latest(symbol, float(self.config["stream_max_age_seconds"]))
        if book is not None:
            if len(book.bids) > depth or len(book.asks) > depth:
                book = OrderBook(book.exchange, book.symbol, book.bids[:depth], book.asks[:depth], book.ts,
                                 book.simulated)
            self._last_books[symbol] = book
            return book
        return await self.rest_order_book(symbol, depth)

    def stream_order_books(self, symbols: list[str], depth: int = 15, *,
                           conflate: bool = True) -> AsyncIterator[OrderBook] | None:
        """Books from the WebSocket. ``conflate`` (default): the newest book per symbol, superseded ones skipped
        when the consumer is slower than the stream; ``conflate=False``: every book in order (bounded buffer)."""
        if self.mock:
            return None
        stream = self._ensure_stream(symbols, depth)
        return stream.books({s.upper() for s in symbols}, depth, conflate=conflate)

    def stream_tickers(self, symbols: list[str]) -> AsyncIterator[tuple[str, Decimal, Any]] | None:
        """Last-trade ticks ``(symbol, price, ts)`` from the WebSocket ``ticker`` type."""
        if self.mock:
            return None
        return self._ensure_stream(symbols).tickers(set(symbols))

    @property
    def stream(self) -> Any:
        return self._stream

    def _ensure_stream(self, symbols: list[str], depth: int | None = None) -> Any:
        if self._stream is None:
            from .ws import UpbitStream

            cfg = self.config
            self._stream = UpbitStream(
                url=str(cfg["ws_url"]), exchange=self.name, fmt=str(cfg["ws_format"]),
                ping_interval=float(cfg["ws_ping_interval_seconds"]),
                silence_timeout=float(cfg["ws_silence_timeout_seconds"]),
                backoff_initial=float(cfg["ws_reconnect_initial_seconds"]),
                backoff_max=float(cfg["ws_reconnect_max_seconds"]),
                observer=self._observer,
            )
        self._stream.subscribe(symbols, depth)
        self._stream.start()
        return self._stream

    # ------------------------------------------------------------------------------------------- rules
    def market_rules(self, symbol: str) -> MarketRules:
        if self.mock:
            rules = self._simulated_exchange().market_rules(symbol)
            return MarketRules(symbol, None, rules.step_size, rules.min_qty, self.min_order)
        return MarketRules(symbol=symbol, tick_size=None, step_size=_QTY_STEP, min_qty=Decimal(0),
                           min_notional=self.min_order)

    def price_step(self, symbol: str, price: Decimal) -> Decimal:
        return price_unit(price, self._overrides.get(symbol.upper(), self._table))

    # ----------------------------------------------------------------------------------------- private
    def _private_sim(self) -> Any | None:
        """The simulated backend for private calls, or None when they go to Upbit."""
        return self.routing.private_backend()

    async def fetch_balances(self) -> dict[str, Decimal]:
        sim = self._private_sim()
        if sim is not None:
            return await sim.fetch_balances()
        return parse_accounts(await self.rest.request("accounts"))

    async def fetch_balance_details(self) -> dict[str, Balance]:
        """Free and ``locked`` (held by open orders, withdrawals) per currency, from ``GET /v1/accounts``."""
        sim = self._private_sim()
        if sim is not None:  # the simulated wallet reports free amounts only
            return {asset: Balance(free) for asset, free in (await sim.fetch_balances()).items()}
        return parse_account_details(await self.rest.request("accounts"))

    def _order_body(self, request: OrderRequest, book: OrderBook | None) -> dict[str, str]:
        symbol = request.symbol
        market = market_for(symbol)
        side = "bid" if request.side is Side.BUY else "ask"
        body: dict[str, str] = {"market": market, "side": side}
        if request.order_type is OrderType.LIMIT:
            if request.price is None or request.qty is None:
                raise UpbitOrderRejected("a limit order needs price and qty", name="invalid_parameter")
            price = self.round_price(symbol, Decimal(request.price), request.side)
            qty = self.round_qty(symbol, Decimal(request.qty))
            total = price * qty
            body.update(volume=_fmt(qty), price=_fmt(price), ord_type="limit")
        elif request.side is Side.BUY:
            amount = request.quote_amount
            if amount is None:
                if request.qty is None or book is None:
                    raise UpbitOrderRejected("a market buy needs quote_amount (KRW) or qty",
                                             name="invalid_parameter")
                vwap = book.vwap(Side.BUY, Decimal(request.qty))
                if vwap is None:
                    raise UpbitOrderRejected(f"book too thin to size a market buy of {request.qty} {symbol}",
                                             name="insufficient_liquidity")
                amount = vwap * Decimal(request.qty)
            total = Decimal(amount).quantize(Decimal(1), rounding=ROUND_UP if request.quote_amount is None
                                             else ROUND_DOWN)
            body.update(price=_fmt(total), ord_type="price")
        else:
            if request.qty is None:
                raise UpbitOrderRejected("a market sell needs qty", name="invalid_parameter")
            qty = self.round_qty(symbol, Decimal(request.qty))
            ref = book.best_bid if book is not None and book.best_bid is not None else None
            total = qty * ref if ref is not None else self.min_order
            body.update(volume=_fmt(qty), ord_type="market")
        if total < self.min_order:
            raise UpbitOrderRejected(
                f"order total {total} KRW is below Upbit's minimum of {self.min_order} KRW",
                name=f"under_min_total_{side}", endpoint="/v1/orders")
        body["identifier"] = request.client_order_id
        return body

    async def place_order(self, request: OrderRequest) -> Order:
        """Limit or market order. Rounds the price to Upbit's KRW price unit (buys up, sells down) and the
        volume to 8 decimals, refuses totals under ``min_order_krw`` before sending. In live mode the order is
        sent once: if the answer is lost (timeout, dropped connection, 5xx) the order is looked up by its
        identifier instead of being re-sent."""
        sim = self._private_sim()
        if sim is not None:
            if not self.mock:
                await self.fetch_order_book(request.symbol, 30)  # the simulated account fills against it
            return await sim.place_order(request)
        book = None
        if request.order_type is OrderType.MARKET:
            book = await self.fetch_order_book(request.symbol, 30)
        body = self._order_body(request, book)
        try:
            row = await self.rest.request("place_order", body=body)
        except (UpbitNetworkError, UpbitServerError) as exc:
            log.warning("upbit: order %s: answer lost (%s); looking it up instead of re-sending",
                        request.client_order_id, exc)
            row = None
            attempts = max(1, int(self.config["order_lookup_attempts"]))
            for attempt in range(attempts):
                if attempt:
                    await asyncio.sleep(float(self.config["order_lookup_delay_seconds"]))
                try:
                    row = await self.rest.request("order", {"identifier": request.client_order_id})
                    break
                except UpbitNotFound:
                    continue
                except UpbitError as lookup_exc:
                    raise type(exc)(f"{exc.message}; outcome unknown (lookup failed: {lookup_exc.message})",
                                    status=exc.status, name=exc.name, endpoint=exc.endpoint) from exc
            if row is None:
                raise UpbitOrderNotPlaced(
                    f"order {request.client_order_id} was not placed ({exc.message}; not found after {attempts} "
                    "lookups); nothing was re-sent", endpoint="/v1/orders") from exc
            log.warning("upbit: order %s was placed despite the lost answer", request.client_order_id)
        return parse_order(row, self.name)

    @staticmethod
    def _id_params(order_id: str) -> dict[str, str]:
        return {"uuid": order_id} if _UUID.match(order_id) else {"identifier": order_id}

    async def cancel_order(self, symbol: str, order_id: str) -> Order:
        sim = self._private_sim()
        if sim is not None:
            return await sim.cancel_order(symbol, order_id)
        params = self._id_params(order_id)
        order = parse_order(await self.rest.request("cancel_order", params), self.name)
        if order.status.value in ("open", "partially_filled"):
            # Upbit accepts the cancel and applies it just after answering: read the state once more
            order = parse_order(await self.rest.request("order", params), self.name)
        return order

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        sim = self._private_sim()
        if sim is not None:
            return await sim.fetch_open_orders(symbol)
        orders: list[Order] = []
        for page in range(1, 11):
            params: list[tuple[str, Any]] = []
            if symbol:
                params.append(("market", market_for(symbol)))
            params += [("states[]", ["wait", "watch"]), ("page", page), ("limit", 100), ("order_by", "desc")]
            rows = await self.rest.request("open_orders", params)
            orders.extend(parse_order(r, self.name) for r in rows)
            if len(rows) < 100:
                break
        return orders

    async def fetch_order(self, symbol: str, order_id: str) -> Order:
        sim = self._private_sim()
        if sim is not None:
            return await sim.fetch_order(symbol, order_id)
        return parse_order(await self.rest.request("order", self._id_params(order_id)), self.name)

    # ---------------------------------------------------------------------------------- health, metrics
    @hookimpl
    def arbframe_register_metrics(self, registry: Any, context: Any) -> None:
        from arbframe import ExchangeMetrics  # shared, registry-scoped families

        ExchangeMetrics.get(registry)

    @hookimpl
    def arbframe_health_checks(self, config: Any, context: Any) -> list[HealthCheck]:
        timeout = float(self.config["health_timeout_seconds"])
        return [HealthCheck("upbit", self.health_probe, timeout_seconds=timeout + 0.5)]

    async def health_probe(self) -> HealthResult:
        """Reachability (``GET /v1/market/all``) and, with keys, one authenticated call (``GET /v1/accounts``).
        Uses its own short-lived session, so it works from any event loop; keys appear masked only."""
        if not self.enabled:
            return HealthResult("upbit", HealthStatus.DISABLED, "disabled in config")
        if self.mock:
            return HealthResult("upbit", HealthStatus.OK, "mock mode: simulated market and account",
                                {"simulated": True})
        cfg = self.config
        details: dict[str, Any] = {"base_url": cfg["base_url"], "api_key": mask_secret(self._access_key),
                                   "private": "upbit" if self.live_private else "simulated"}
        if self.rest.banned():
            details["banned_until"] = self.rest.banned_until.isoformat()
            return HealthResult("upbit", HealthStatus.ERROR, "suspended after HTTP 418 (IP/account blocked)",
                                details)
        probe = UpbitRest(base_url=str(cfg["base_url"]), access_key=self._access_key,
                          secret_key=self._secret_key, timeout=float(cfg["health_timeout_seconds"]),
                          max_retries=0, limiter=RateLimiter(float(cfg["rate_limit"])))
        try:
            started = time.perf_counter()
            markets = await probe.request("markets", {"is_details": "false"})
            details["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
            details["markets"] = len(markets) if isinstance(markets, list) else 0
            if not self.has_credentials:
                return HealthResult("upbit", HealthStatus.WARN,
                                    f"reachable ({details['latency_ms']} ms); no API keys: private calls "
                                    "use a simulated account", details)
            accounts = parse_accounts(await probe.request("accounts"))
            details["authenticated"] = True
            details["currencies"] = len(accounts)
            return HealthResult("upbit", HealthStatus.OK,
                                f"reachable ({details['latency_ms']} ms), authenticated with key "
                                f"{mask_secret(self._access_key)}", details)
        except UpbitError as exc:
            details["error"] = exc.name or type(exc).__name__
            return HealthResult("upbit", HealthStatus.ERROR, str(exc), details)
        except Exception as exc:  # a health probe reports, never raises
            return HealthResult("upbit", HealthStatus.ERROR, f"{type(exc).__name__}: {exc}", details)
        finally:
            await probe.close()


def _fmt(value: Decimal) -> str:
    """A plain decimal string (no exponent) for Upbit's NumberString fields."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"
