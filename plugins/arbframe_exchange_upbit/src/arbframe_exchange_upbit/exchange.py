"""The ``upbit`` exchange driver (entry point ``arbframe.exchange: upbit``), built on arbframe's venue blocks.

Where each call goes (:class:`arbframe.VenueRouting`):

==========================  =====================================  ==========================================
situation                   market data                            balances / orders
==========================  =====================================  ==========================================
``context.mock`` true       kernel ``SimulatedExchange``           the same simulated exchange's account
mode != live or no keys     Upbit REST / WebSocket                 a ``SimulatedAccount`` (warning when no keys)
mode == live with keys      Upbit REST / WebSocket                 Upbit private REST (JWT-signed)
==========================  =====================================  ==========================================

Orders therefore only ever reach Upbit in live mode. ``fetch_order_book`` serves the WebSocket book when
``use_websocket`` is on and the stream was heard from within ``stream_max_age_seconds``, and polls REST otherwise
(stream down, reconnecting, or silent). The stream's own iterator (``stream_order_books``) has a REST fallback
too: while no connection has delivered for ``ws_rest_fallback_after_seconds`` it yields books polled from
``GET /v1/orderbook`` (every symbol in one request, every ``ws_rest_fallback_interval_seconds``, leaving a fifth of
each rate-limit quota to other calls), stamped with Upbit's time of the book.

Every venue failure is an :class:`arbframe.ExchangeError` kind (see :mod:`.rest`); every default is declared once,
in :data:`SCHEMA`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from collections.abc import AsyncIterator, Mapping
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from typing import Any, ClassVar

from arbframe import (
    Backoff,
    Balance,
    ConfigError,
    Exchange,
    ExchangeError,
    HealthCheck,
    HealthResult,
    HealthStatus,
    InvalidRequest,
    MarketRules,
    Order,
    OrderBook,
    OrderRejected,
    OrderRequest,
    OrderStatus,
    OrderStatusUnknown,
    OrderType,
    PluginContext,
    ProtocolError,
    Side,
    StreamSettings,
    TransportError,
    UnknownOrder,
    VenueMetrics,
    VenueRouting,
    VenueUnavailable,
    configured_symbols,
    hookimpl,
    mask_secret,
    paper_balances,
    round_to_step,
    schema_defaults,
    usable_credential,
    utcnow,
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
from .rest import GROUP_LIMITS, UpbitRest
from .ticks import KRW_PRICE_UNITS, build_table, price_unit

__all__ = ["SCHEMA", "UpbitExchange"]

log = logging.getLogger("arbframe.upbit")

_QTY_STEP = Decimal("0.00000001")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
#: stablecoin markets keep a 0.5 KRW unit in the 1,000-10,000 band (Upbit notice effective 2025-03-21)
_STABLE_TABLE = [[lo, unit] for lo, unit in KRW_PRICE_UNITS if not 1000 <= lo < 10000] + [[1000, "0.5"]]
_DEFAULT_OVERRIDES = {"USDT": _STABLE_TABLE, "USDC": _STABLE_TABLE}
_OPEN = (OrderStatus.NEW, OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)
#: the share of each rate-limit quota the stream's REST fallback leaves to other calls (orders first)
FALLBACK_RESERVE = 0.2
_TIME_IN_FORCE = {"IOC": "ioc", "FOK": "fok"}

_NUM = {"type": "number", "exclusiveMinimum": 0}
_TABLE = {"type": ["array", "null"], "items": {"type": "array", "minItems": 2, "maxItems": 2,
                                               "items": {"type": ["number", "string"]}}}
#: the ``upbit:`` config section; every default lives here (read with :func:`arbframe.schema_defaults`)
SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Upbit connector (arbframe-exchange-upbit)",
    "additionalProperties": False,
    # `arbframe config validate` refuses a watchdog that could fire before a keepalive is answered
    "x-arbframe-greater-than": {"ws_silence_timeout_seconds": "ws_ping_interval_seconds"},
    "properties": {
        "enabled": {"type": "boolean", "default": True},
        "api_key": {"type": ["string", "null"], "writeOnly": True, "default": "", "description": "Upbit access key"},
        "api_secret": {"type": ["string", "null"], "writeOnly": True, "default": "",
                       "description": "Upbit secret key"},
        "rate_limit": {**_NUM, "default": 10, "description": "overall requests per second (seed D4)"},
        "group_limits": {"type": "object", "additionalProperties": _NUM, "default": {},
                         "description": "requests/s per Upbit request group (market, ticker, orderbook, default, "
                                        "order, order-test, ...); Upbit's published limits otherwise"},
        "base_url": {"type": "string", "default": "https://api.upbit.com"},
        "ws_url": {"type": "string", "default": "wss://api.upbit.com/websocket/v1"},
        "fee_rate": {"type": "number", "minimum": 0, "maximum": 0.05, "default": 0.0005},
        "min_order_krw": {"type": "number", "minimum": 0, "default": 5000},
        "timeout_seconds": {**_NUM, "default": 5.0, "description": "bound on one REST request"},
        "max_retries": {"type": "integer", "minimum": 0, "maximum": 10, "default": 3},
        "retry_backoff_seconds": {"type": "number", "minimum": 0, "default": 0.2,
                                  "description": "first retry's wait (doubling, with jitter); a 429 holds every "
                                                 "request back that long"},
        "retry_backoff_max_seconds": {"type": "number", "minimum": 0, "default": 5.0},
        "ban_seconds": {**_NUM, "default": 60, "description": "pause after HTTP 418 when Upbit does not say how "
                                                             "long"},
        "use_websocket": {"type": "boolean", "default": False,
                          "description": "serve order books from the WebSocket stream (REST fallback)"},
        "ws_format": {"enum": ["SIMPLE", "DEFAULT"], "default": "SIMPLE"},
        "ws_ping_interval_seconds": {**_NUM, "default": 5.0, "description": "keepalive PING interval; shorter "
                                     "than ws_silence_timeout_seconds"},
        "ws_silence_timeout_seconds": {**_NUM, "default": 15.0,
                                       "description": "a stream silent this long (not even the PING answer) is dead "
                                                      "and reopened; longer than ws_ping_interval_seconds"},
        "ws_reconnect_initial_seconds": {**_NUM, "default": 0.5},
        "ws_reconnect_max_seconds": {**_NUM, "default": 30.0},
        "stream_max_age_seconds": {**_NUM, "default": 3.0},
        "ws_rest_fallback_after_seconds": {"type": ["number", "null"], "minimum": 0, "default": 2.0,
                                           "description": "the stream's books come from REST polling while no "
                                                          "connection has delivered for this long (null: never)"},
        "ws_rest_fallback_interval_seconds": {**_NUM, "default": 1.0,
                                              "description": "seconds between REST polls of the stream's fallback"},
        "symbols": {"type": "array", "items": {"type": "string"},
                    "description": "symbols to stream from start-up (default: arbitrage.symbols)"},
        "price_units": {**_TABLE, "default": None, "description": "KRW price-unit table [[lower_bound, unit], ...]"},
        "price_unit_overrides": {"type": ["object", "null"], "additionalProperties": _TABLE, "default": None},
        "simulated_balances": {"type": "object", "additionalProperties": {"type": ["number", "string"]},
                               "default": {"KRW": 10000000},
                               "description": "wallet of the simulated account (no keys / not live); "
                                              "paper.balances.upbit when not set"},
        "health_timeout_seconds": {**_NUM, "default": 3.0},
        "order_lookup_attempts": {"type": "integer", "minimum": 1, "default": 3,
                                  "description": "lookups by identifier after an order's answer is lost"},
        "order_lookup_delay_seconds": {"type": "number", "minimum": 0, "default": 1.0},
    },
}


class UpbitExchange(Exchange):
    """Upbit KRW markets: REST + WebSocket market data, JWT-signed private API, mock-mode fallbacks."""

    name: ClassVar[str] = "upbit"
    quote_currency: ClassVar[str] = QUOTE
    #: IOC/FOK limit orders (``OrderRequest.time_in_force``) and the venue's test endpoint (``OrderRequest.test``)
    order_options: ClassVar[frozenset[str]] = frozenset({"time_in_force", "test"})
    api_version: ClassVar[int] = 1

    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        return SCHEMA

    # ------------------------------------------------------------------------------------------ build
    def __init__(self, section: Mapping[str, Any] | None = None, context: PluginContext | None = None) -> None:
        self.config = cfg = schema_defaults(SCHEMA, section)
        self.context = context
        try:
            fallback_after = cfg["ws_rest_fallback_after_seconds"]
            self.stream_settings = StreamSettings(
                ping_interval=float(cfg["ws_ping_interval_seconds"]),
                idle_timeout=float(cfg["ws_silence_timeout_seconds"]),
                backoff=Backoff(initial=float(cfg["ws_reconnect_initial_seconds"]),
                                maximum=float(cfg["ws_reconnect_max_seconds"])),
                fallback_after=None if fallback_after is None else float(fallback_after),
                fallback_interval=float(cfg["ws_rest_fallback_interval_seconds"]))
        except ValueError as exc:
            raise ConfigError(f"upbit.ws_silence_timeout_seconds must be greater than upbit.ws_ping_interval_seconds"
                              f" ({exc})") from None
        self.enabled = bool(cfg["enabled"])
        self._fee_rate = Decimal(str(cfg["fee_rate"]))
        self.min_order = Decimal(str(cfg["min_order_krw"]))
        self._table = build_table(cfg["price_units"])
        overrides = cfg["price_unit_overrides"] if cfg["price_unit_overrides"] is not None else _DEFAULT_OVERRIDES
        self._overrides = {str(k).upper(): build_table(v) for k, v in overrides.items()}
        self._access_key = usable_credential(cfg.get("api_key"))
        self._secret_key = usable_credential(cfg.get("api_secret"))
        self._last_books: dict[str, OrderBook] = {}
        self.routing = VenueRouting(
            self.name, context=context, quote_currency=QUOTE, fee_rate=self._fee_rate,
            balances=paper_balances(self.name, context, section or {}) or cfg["simulated_balances"],
            api_key=self._access_key, api_secret=self._secret_key, base_url=str(cfg["base_url"]),
            symbols=configured_symbols(cfg, context), last_book=self._last_books.get, rules=self.market_rules,
            log=log,
        )
        self.mode, self.mock, self.live_private = self.routing.mode, self.routing.mock, self.routing.live_private
        self.metrics = VenueMetrics(self.name, groups=("requests", "retry_after", *GROUP_LIMITS))
        if context is not None and context.registry is not None:
            self._bind_metrics(context.registry)
        self.rest = self._rest(float(cfg["timeout_seconds"]), int(cfg["max_retries"]), self.metrics)
        self.use_websocket = bool(cfg["use_websocket"]) and not self.mock
        self._stream: Any = None
        self.routing.announce()

    def _rest(self, timeout: float, retries: int, metrics: VenueMetrics | None = None) -> UpbitRest:
        cfg = self.config
        return UpbitRest(str(cfg["base_url"]), access_key=self._access_key, secret_key=self._secret_key,
                         rate_limit=float(cfg["rate_limit"]), group_limits=cfg["group_limits"], timeout=timeout,
                         max_retries=retries, backoff=float(cfg["retry_backoff_seconds"]),
                         backoff_max=float(cfg["retry_backoff_max_seconds"]), ban_seconds=float(cfg["ban_seconds"]),
                         metrics=metrics, exchange=self.name)

    def _bind_metrics(self, registry: Any) -> None:
        """Report into the kernel's registry, every error kind and rate-limit group at 0 so alerts see the first."""
        self.metrics.bind(registry)  # every error kind and rate-limit group at 0

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

    # ------------------------------------------------------------------------------------- lifecycle
    async def connect(self) -> None:
        if self.mock:
            self._simulated_exchange()
            return
        try:
            await self.fetch_markets()
        except ExchangeError as exc:
            log.warning("upbit: could not load the market list (%s); carrying on", exc)
        if self.use_websocket and self.routing.symbols:
            self._ensure_stream(self.routing.symbols)

    async def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.stop()
        await self.rest.close()

    # ------------------------------------------------------------------------------------ market data
    async def fetch_markets(self) -> list[str]:
        """Symbols of Upbit's KRW markets (``GET /v1/market/all``)."""
        if self.mock:
            return list(self._simulated_exchange().market.symbols)
        rows = await self.rest.call("markets", {"is_details": "false"})
        markets = {str(r["market"]) for r in rows if isinstance(r, dict) and "market" in r}
        return sorted(symbol_for(m) for m in markets if m.startswith(QUOTE + "-"))

    async def fetch_last_prices(self, symbols: list[str]) -> dict[str, Decimal]:
        """Last trade prices (``GET /v1/ticker``), symbol -> KRW."""
        if self.mock:
            sim = self._simulated_exchange()
            books = [await sim.fetch_order_book(s, 1) for s in symbols]
            return {b.symbol: (b.best_bid + b.best_ask) / 2 for b in books}
        rows = await self.rest.call("ticker", {"markets": ",".join(market_for(s) for s in symbols)})
        try:
            return {symbol_for(r["market"]): dec(r["trade_price"]) for r in rows}
        except (KeyError, TypeError) as exc:
            raise ProtocolError(f"upbit /v1/ticker: unexpected answer ({exc})") from None

    async def fetch_order_book(self, symbol: str, depth: int = 15) -> OrderBook:
        """The freshest book: the WebSocket's when ``use_websocket`` and it is fresh, else REST."""
        if self.mock:
            return await self._simulated_exchange().fetch_order_book(symbol, depth)
        if self.use_websocket:
            return await self.fresh_order_book(symbol, depth)
        return await self.rest_order_book(symbol, depth)

    async def rest_order_book(self, symbol: str, depth: int = 15) -> OrderBook:
        """``GET /v1/orderbook`` for one symbol (always REST)."""
        return (await self.rest_order_books([symbol], depth))[symbol.upper()]

    async def rest_order_books(self, symbols: list[str], depth: int = 15) -> dict[str, OrderBook]:
        """Books of several symbols in one request."""
        symbols = [s.upper() for s in symbols]
        if self.mock:
            sim = self._simulated_exchange()
            return {s: await sim.fetch_order_book(s, depth) for s in symbols}
        params = {"markets": ",".join(market_for(s) for s in symbols), "count": min(max(depth, 1), 30)}
        rows = await self.rest.call("orderbook", params)
        if not isinstance(rows, list):
            raise ProtocolError("upbit /v1/orderbook: expected a list", exchange=self.name, endpoint="/v1/orderbook")
        books = {}
        try:
            for row in rows:
                book = parse_rest_orderbook(row, self.name, depth)
                books[book.symbol] = self._last_books[book.symbol] = book
        except ProtocolError as exc:
            self.metrics.error(exc)
            raise
        missing = [s for s in symbols if s not in books]
        if missing:
            raise InvalidRequest(f"upbit /v1/orderbook: no order book for {', '.join(missing)}", exchange=self.name,
                                 endpoint="/v1/orderbook")
        return books

    async def fresh_order_book(self, symbol: str, depth: int = 15) -> OrderBook:
        """What the engine calls each tick when streaming: the stream's book for ``symbol`` when its connection
        was heard from within ``stream_max_age_seconds``; otherwise (down, reconnecting, silent) a REST poll."""
        if self.mock:
            return await self._simulated_exchange().fetch_order_book(symbol, depth)
        symbol = symbol.upper()
        book = self._ensure_stream([symbol], depth).latest(symbol, float(self.config["stream_max_age_seconds"]))
        if book is None:
            return await self.rest_order_book(symbol, depth)
        if len(book.bids) > depth or len(book.asks) > depth:
            book = OrderBook(book.exchange, book.symbol, book.bids[:depth], book.asks[:depth], book.ts, book.simulated)
        self._last_books[symbol] = book
        return book

    def stream_order_books(self, symbols: list[str], depth: int = 15, *,
                           conflate: bool = True) -> AsyncIterator[OrderBook] | None:
        """Books from the WebSocket. ``conflate`` (default): the newest book per symbol, superseded ones skipped
        when the consumer is slower than the stream; ``conflate=False``: every book in order (bounded buffer)."""
        if self.mock:
            return None
        return self._ensure_stream(symbols, depth).books(symbols, depth, conflate=conflate)

    def stream_tickers(self, symbols: list[str]) -> AsyncIterator[tuple[str, Decimal, Any]] | None:
        """Last-trade ticks ``(symbol, price, ts)`` from the WebSocket ``ticker`` type."""
        if self.mock:
            return None
        return self._ensure_stream(symbols).tickers(symbols)

    @property
    def stream(self) -> Any:
        return self._stream

    async def _poll_books(self, symbols: list[str], depth: int) -> AsyncIterator[OrderBook]:
        """The stream's REST fallback: every symbol's book in one ``GET /v1/orderbook``, sent only when the rate
        limiter has room to spare (a fifth of each quota stays for other calls; nothing queues ahead of them)."""
        if not symbols:
            return
        await self.rest.limiter.wait_free("/v1/orderbook", reserve=FALLBACK_RESERVE)
        for book in (await self.rest_order_books(symbols, min(max(depth, 1), 30))).values():
            yield book

    def _ensure_stream(self, symbols: list[str], depth: int | None = None) -> Any:
        if self._stream is None:
            from .ws import UpbitStream  # imports aiohttp only when a stream runs

            cfg = self.config
            self._stream = UpbitStream(str(cfg["ws_url"]), exchange=self.name, fmt=str(cfg["ws_format"]),
                                       depth=depth or 15, settings=self.stream_settings, metrics=self.metrics,
                                       poll=self._poll_books)
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

    def round_qty(self, symbol: str, qty: Decimal) -> Decimal:
        """Down to Upbit's 8-decimal volume grid (what :meth:`market_rules` says, without building it per order)."""
        if self.mock:
            return super().round_qty(symbol, qty)
        return round_to_step(qty, _QTY_STEP)

    # ----------------------------------------------------------------------------------------- private
    def _private_sim(self) -> Any | None:
        """The simulated backend for private calls, or None when they go to Upbit."""
        return self.routing.private_backend()

    async def fetch_balances(self) -> dict[str, Decimal]:
        sim = self._private_sim()
        if sim is not None:
            return await sim.fetch_balances()
        return parse_accounts(await self.rest.call("accounts"))

    async def fetch_balance_details(self) -> dict[str, Balance]:
        """Free and ``locked`` (held by open orders, withdrawals) per currency, from ``GET /v1/accounts``."""
        sim = self._private_sim()
        if sim is not None:  # the simulated wallet reports free amounts only
            return {asset: Balance(free) for asset, free in (await sim.fetch_balances()).items()}
        return parse_account_details(await self.rest.call("accounts"))

    def _order_body(self, request: OrderRequest, book: OrderBook | None) -> dict[str, str]:
        """Upbit's ``POST /v1/orders`` body; ``OrderRejected`` (nothing sent) below ``min_order_krw``."""
        symbol = request.symbol
        side = "bid" if request.side is Side.BUY else "ask"
        body: dict[str, str] = {"market": market_for(symbol), "side": side}

        def refuse(message: str, code: str = "invalid_parameter") -> OrderRejected:
            return OrderRejected(f"upbit: {message}", exchange=self.name, endpoint="/v1/orders", code=code,
                                 client_order_id=request.client_order_id)

        if request.order_type is OrderType.LIMIT:
            if request.price is None or request.qty is None:
                raise refuse("a limit order needs price and qty")
            price = self.round_price(symbol, Decimal(request.price), request.side)
            qty = self.round_qty(symbol, Decimal(request.qty))
            total = price * qty
            body.update(volume=_fmt(qty), price=_fmt(price), ord_type="limit")
            tif = _TIME_IN_FORCE.get(request.time_in_force.upper())
            if tif is not None:
                body["time_in_force"] = tif
        elif request.side is Side.BUY:
            amount = request.quote_amount
            if amount is None:
                if request.qty is None or book is None:
                    raise refuse("a market buy needs quote_amount (KRW) or qty")
                vwap = book.vwap(Side.BUY, Decimal(request.qty))
                if vwap is None:
                    raise refuse(f"book too thin to size a market buy of {request.qty} {symbol}",
                                 "insufficient_liquidity")
                amount = vwap * Decimal(request.qty)
            total = Decimal(amount).quantize(Decimal(1), rounding=ROUND_UP if request.quote_amount is None
                                             else ROUND_DOWN)
            body.update(price=_fmt(total), ord_type="price")
        else:
            if request.qty is None:
                raise refuse("a market sell needs qty")
            qty = self.round_qty(symbol, Decimal(request.qty))
            total = qty * book.best_bid if book is not None and book.best_bid is not None else self.min_order
            body.update(volume=_fmt(qty), ord_type="market")
        if total < self.min_order:
            raise refuse(f"order total {total} KRW is below Upbit's minimum of {self.min_order} KRW",
                         f"under_min_total_{side}")
        body["identifier"] = request.client_order_id
        return body

    async def place_order(self, request: OrderRequest) -> Order:
        """Send one order carrying ``request.client_order_id`` as Upbit's ``identifier``. Rounds the price to
        Upbit's KRW price unit (buys up, sells down) and the volume to 8 decimals; ``time_in_force`` IOC/FOK is
        sent as ``ioc``/``fok``; ``request.test`` sends it to ``POST /v1/orders/test`` (checked by Upbit, never
        placed: returned ``new``, nothing filled). Raises ``OrderRejected``/``InsufficientFunds`` (no order),
        ``RateLimited`` (after the retries a 429 allows), ``Banned``, ``AuthenticationError``. The order is sent
        once: when its answer is lost (timeout, dropped connection, 5xx, garbled body) it is looked up by its
        identifier (``order_lookup_attempts`` times), never re-sent; still not found -> ``OrderStatusUnknown``."""
        sim = self._private_sim()
        if sim is not None:
            if request.test:
                return Order(id=request.client_order_id, ts=utcnow(), exchange=self.name, symbol=request.symbol,
                             side=request.side, order_type=request.order_type, qty=request.qty or Decimal(0),
                             price=request.price, client_order_id=request.client_order_id, simulated=True)
            if not self.mock:
                await self.fetch_order_book(request.symbol, 30)  # the simulated account fills against it
            return await sim.place_order(request)
        book = None
        if request.order_type is OrderType.MARKET:
            book = await self.fetch_order_book(request.symbol, 30)
        body = self._order_body(request, book)
        if request.test:
            return _dry(parse_order(await self.rest.call("test_order", body=body), self.name))
        try:
            row = await self.rest.call("place_order", body=body)
        except (TransportError, VenueUnavailable, ProtocolError) as exc:  # sent; the outcome is unknown
            return await self._reconcile(request, exc)
        return parse_order(row, self.name)

    async def _reconcile(self, request: OrderRequest, lost: ExchangeError) -> Order:
        """Look an order whose answer was lost up by its identifier; ``OrderStatusUnknown`` if that fails."""
        cid = request.client_order_id
        log.warning("upbit: order %s: answer lost (%s); looking it up instead of re-sending", cid, lost)
        attempts = int(self.config["order_lookup_attempts"])
        why = "not found"
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(float(self.config["order_lookup_delay_seconds"]))
            try:
                order = parse_order(await self.rest.call("order", {"identifier": cid}), self.name)
            except UnknownOrder:
                continue
            except ExchangeError as exc:
                why = f"lookup failed: {exc}"
                continue
            log.warning("upbit: order %s was placed despite the lost answer: %s", cid, order.status.value)
            return order
        unknown = OrderStatusUnknown(
            f"upbit: order {cid}: {lost}; {why} after {attempts} lookups by identifier; nothing was re-sent: "
            f"reconcile with fetch_order({request.symbol!r}, {cid!r})", exchange=self.name, endpoint="/v1/orders",
            client_order_id=cid)
        self.metrics.error(unknown)
        raise unknown from lost

    @staticmethod
    def _id_params(order_id: str) -> dict[str, str]:
        return {"uuid": order_id} if _UUID.match(order_id) else {"identifier": order_id}

    async def cancel_order(self, symbol: str, order_id: str) -> Order:
        """Cancel by uuid or identifier; returns the order's state (``CANCELED``, or what it became first)."""
        sim = self._private_sim()
        if sim is not None:
            return await sim.cancel_order(symbol, order_id)
        params = self._id_params(order_id)
        try:
            order = parse_order(await self.rest.call("cancel_order", params), self.name)
        except InvalidRequest as refused:  # not cancellable: it filled or was cancelled first
            order = await self.fetch_order(symbol, order_id)
            if order.status in _OPEN:
                raise refused
            return order
        if order.status in _OPEN:  # Upbit answers before the cancel is applied: read the state once more
            order = parse_order(await self.rest.call("order", params), self.name)
        return order

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        sim = self._private_sim()
        if sim is not None:
            return await sim.fetch_open_orders(symbol)
        orders: list[Order] = []
        for page in range(1, 11):
            params: dict[str, Any] = {"market": market_for(symbol)} if symbol else {}
            params.update({"states[]": ["wait", "watch"], "page": page, "limit": 100, "order_by": "desc"})
            rows = await self.rest.call("open_orders", params)
            orders.extend(parse_order(r, self.name) for r in rows)
            if len(rows) < 100:
                break
        return orders

    async def fetch_order(self, symbol: str, order_id: str) -> Order:
        """One order by Upbit uuid or by identifier (the client order id); ``UnknownOrder`` when Upbit has none."""
        sim = self._private_sim()
        if sim is not None:
            return await sim.fetch_order(symbol, order_id)
        return parse_order(await self.rest.call("order", self._id_params(order_id)), self.name)

    # ---------------------------------------------------------------------------------- health, metrics
    @hookimpl
    def arbframe_register_metrics(self, registry: Any, context: Any) -> None:
        self._bind_metrics(registry)

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
        details: dict[str, Any] = {"base_url": self.config["base_url"], "api_key": mask_secret(self._access_key),
                                   "private": "upbit" if self.live_private else "simulated"}
        banned = self.rest.banned_for()
        if banned > 0:
            details["banned_for_seconds"] = round(banned)
            return HealthResult("upbit", HealthStatus.ERROR, f"suspended after HTTP 418 (IP/account blocked) for "
                                f"another {banned:.0f}s", details)
        probe = self._rest(float(self.config["health_timeout_seconds"]), 0)  # not counted in the venue's metrics
        try:
            started = time.perf_counter()
            markets = await probe.call("markets", {"is_details": "false"})
            details["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
            details["markets"] = len(markets) if isinstance(markets, list) else 0
            if not self.has_credentials:
                return HealthResult("upbit", HealthStatus.WARN,
                                    f"reachable ({details['latency_ms']} ms); no API keys: private calls "
                                    "use a simulated account", details)
            details["currencies"] = len(parse_accounts(await probe.call("accounts")))
            details["authenticated"] = True
            return HealthResult("upbit", HealthStatus.OK,
                                f"reachable ({details['latency_ms']} ms), authenticated with key "
                                f"{mask_secret(self._access_key)}", details)
        except ExchangeError as exc:
            details["error"] = exc.code or exc.kind
            return HealthResult("upbit", HealthStatus.ERROR, str(exc), details)
        except Exception as exc:  # a health probe reports, never raises
            return HealthResult("upbit", HealthStatus.ERROR, f"{type(exc).__name__}: {exc}", details)
        finally:
            await probe.close()


def _dry(order: Order) -> Order:
    """A dry run's answer: the order as checked, ``new``, nothing filled."""
    return dataclasses.replace(order, status=OrderStatus.NEW, filled_qty=Decimal(0), avg_price=None, fee=Decimal(0))


def _fmt(value: Decimal) -> str:
    """A plain decimal string (no exponent) for Upbit's NumberString fields."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"
