"""The ``binance`` exchange driver (entry point ``arbframe.exchange: binance``), Binance spot, USDT markets.

Where each call goes (:class:`arbframe.VenueRouting`):

==========================  =====================================  ==========================================
situation                   market data                            balances / orders
==========================  =====================================  ==========================================
``context.mock`` true       kernel ``SimulatedExchange``           the same simulated exchange's account
mode != live or no keys     Binance REST / WebSocket               a ``SimulatedAccount`` (warning when no keys)
mode == live with keys      Binance REST / WebSocket               Binance private REST (HMAC-SHA256 signed)
==========================  =====================================  ==========================================

Signed requests therefore only ever reach Binance in live mode (the one exception is the health check's
read-only ``GET /api/v3/account`` when keys are configured, so keys can be verified before going live).

Built on arbframe's venue blocks: :class:`~arbframe_exchange_binance.rest.BinanceRest` on ``VenueHttp`` (limits,
retries, metrics, error kinds), :class:`arbframe.BookStream` for the WebSocket streams; every failure is an
:class:`arbframe.ExchangeError` kind (:mod:`arbframe_exchange_binance.errors`); every default is in the schema.

Market data: :meth:`BinanceExchange.fetch_order_book` returns the freshest book — the stream's when
``use_websocket`` is on and its book is younger than ``stream_max_age_seconds``, a REST poll otherwise
(:meth:`fresh_order_book`; :meth:`rest_order_book` always polls). The stream's iterator
(:meth:`stream_order_books`) falls back to REST as well: while no connection has delivered for
``ws_rest_fallback_after_seconds`` it yields books polled symbol by symbol every
``ws_rest_fallback_interval_seconds``, each request sent only when the rate limiter has room to spare (a fifth of
each quota stays for orders), stamped with the time of their answer. A ``serverShutdown`` event rolls the stream
over to a new connection without a gap. Symbols are base assets (``BTC``) mapped to
markets (``BTCUSDT``) with ``quote_asset`` and the optional ``symbol_map``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from decimal import Decimal
from typing import Any, ClassVar

from arbframe import (
    Backoff,
    Balance,
    BookStream,
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
    StreamSpec,
    TransportError,
    UnknownOrder,
    VenueMetrics,
    VenueRouting,
    VenueUnavailable,
    configured_symbols,
    hookimpl,
    mask_secret,
    new_id,
    paper_balances,
    schema_defaults,
    usable_credential,
)
from arbframe_exchange_binance.errors import INVALID_SYMBOL, is_duplicate_order
from arbframe_exchange_binance.parsing import (
    book_ticker_to_book,
    depth_to_book,
    order_fees,
    parse_balances,
    parse_order,
    utc_now,
)
from arbframe_exchange_binance.rest import BinanceRest, depth_endpoint
from arbframe_exchange_binance.rules import PreparedOrder, SymbolRules, parse_exchange_info, prepare_order
from arbframe_exchange_binance.stream import BookParser, stream_name, stream_url

__all__ = ["SCHEMA", "TESTNET_BASE_URL", "TESTNET_WS_URL", "BinanceExchange"]

log = logging.getLogger("arbframe.binance")

MAINNET_BASE_URL = "https://api.binance.com"
MAINNET_WS_URL = "wss://stream.binance.com:9443"
TESTNET_BASE_URL = "https://testnet.binance.vision"
TESTNET_WS_URL = "wss://stream.testnet.binance.vision"

_POS = {"type": "number", "exclusiveMinimum": 0}
_NONNEG = {"type": "number", "minimum": 0}
#: the ``binance`` config section; every default is declared here once (``schema_defaults`` fills them in)
SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Binance spot connector (arbframe-exchange-binance)",
    "additionalProperties": False,
    "properties": {
        "enabled": {"type": "boolean", "default": True},
        "api_key": {"type": ["string", "null"], "writeOnly": True, "description": "Binance API key"},
        "api_secret": {"type": ["string", "null"], "writeOnly": True, "description": "Binance secret key (HMAC)"},
        "testnet": {"type": "boolean", "default": False,
                    "description": "use the spot testnet URLs where base_url/ws_url are left at mainnet"},
        "base_url": {"type": "string", "default": MAINNET_BASE_URL,
                     "description": f"REST base URL (testnet: {TESTNET_BASE_URL})"},
        "ws_url": {"type": "string", "default": MAINNET_WS_URL,
                   "description": f"market-stream base URL (testnet: {TESTNET_WS_URL})"},
        "quote_asset": {"type": "string", "default": "USDT"},
        "symbol_map": {"type": "object", "additionalProperties": {"type": "string"}, "default": {},
                       "description": "symbol -> Binance market where it is not <symbol><quote_asset>"},
        "symbols": {"type": "array", "items": {"type": "string"},
                    "description": "symbols to load rules for / stream at start-up (default: arbitrage.symbols)"},
        "fee_rate": {"type": ["number", "string"], "default": 0.001, "description": "taker fee fraction"},
        "rate_limit": {**_POS, "default": 10, "description": "REST requests per second (seed D4)"},
        "weight_limit_per_minute": {"type": "integer", "minimum": 1, "default": 6000,
                                    "description": "REQUEST_WEIGHT per minute (exchangeInfo overrides)"},
        "orders_per_10s": {"type": "integer", "minimum": 1, "default": 100},
        "rate_limit_safety": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 0.9},
        "recv_window": {"type": "integer", "minimum": 1, "maximum": 60000, "default": 5000,
                        "description": "ms a signed request stays valid"},
        "timeout_seconds": {**_POS, "default": 10.0, "description": "total time per REST request"},
        "connect_timeout_seconds": {**_POS, "default": 5.0, "description": "WebSocket connect timeout"},
        "max_retries": {"type": "integer", "minimum": 0, "maximum": 10, "default": 3,
                        "description": "retries of a read after a transient failure, or of any request after a 429"},
        "retry_backoff_seconds": {**_NONNEG, "default": 0.5},
        "retry_backoff_max_seconds": {**_NONNEG, "default": 8.0},
        "max_retry_after_seconds": {**_NONNEG, "default": 60.0,
                                    "description": "longest Retry-After (429) waited out before raising"},
        "time_sync_interval_seconds": {**_POS, "default": 300.0},
        "exchange_info_ttl_seconds": {**_POS, "default": 3600.0},
        "order_lookup_attempts": {"type": "integer", "minimum": 1, "maximum": 20, "default": 3,
                                  "description": "look-ups by client order id after an order's answer was lost"},
        "order_lookup_interval_seconds": {**_NONNEG, "default": 1.0},
        "use_websocket": {"type": "boolean", "default": False,
                          "description": "serve books from the WebSocket streams (REST when stale)"},
        "ws_depth_speed": {"enum": ["100ms", "1000ms"], "default": "100ms"},
        "ws_silence_timeout_seconds": {**_POS, "default": 10.0,
                                       "description": "a connection silent this long is dead and replaced"},
        "ws_max_connection_age_seconds": {**_POS, "default": 84600.0,
                                          "description": "roll over before Binance's 24 h disconnect"},
        "ws_reconnect_initial_seconds": {**_POS, "default": 0.5},
        "ws_reconnect_max_seconds": {**_POS, "default": 30.0},
        "stream_max_age_seconds": {**_POS, "default": 3.0,
                                   "description": "older stream books are replaced by a REST poll"},
        "ws_rest_fallback_after_seconds": {"type": ["number", "null"], "minimum": 0, "default": 2.0,
                                           "description": "the stream's books come from REST polling while no "
                                                          "connection has delivered for this long (null: never)"},
        "ws_rest_fallback_interval_seconds": {**_POS, "default": 1.0,
                                              "description": "seconds between REST polling rounds of the stream's "
                                                             "fallback"},
        "simulated_balances": {"type": "object", "additionalProperties": {"type": ["number", "string"]},
                               "default": {"USDT": 10000},
                               "description": "wallet of the simulated account (no keys / not live)"},
        "health_timeout_seconds": {**_POS, "default": 3.0},
        "clock_offset_warn_ms": {**_NONNEG, "default": 1000},
    },
}
_FINAL = (OrderStatus.CANCELED, OrderStatus.FILLED, OrderStatus.REJECTED)
#: the share of each rate-limit quota the stream's REST fallback leaves to other calls (orders first)
FALLBACK_RESERVE = 0.2


class BinanceExchange(Exchange):
    """Binance spot: REST + WebSocket market data, HMAC-signed private API, mock-mode fallbacks."""

    name: ClassVar[str] = "binance"
    quote_currency: ClassVar[str] = "USDT"
    #: IOC/FOK limit orders (``OrderRequest.time_in_force``) and the venue's test endpoint (``OrderRequest.test``)
    order_options: ClassVar[frozenset[str]] = frozenset({"time_in_force", "test"})
    api_version: ClassVar[int] = 1

    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        return SCHEMA

    def __init__(self, section: Mapping[str, Any] | None = None, context: PluginContext | None = None) -> None:
        self.config = cfg = schema_defaults(SCHEMA, section)
        if cfg["testnet"]:
            if cfg["base_url"] == MAINNET_BASE_URL:
                cfg["base_url"] = TESTNET_BASE_URL
            if cfg["ws_url"] == MAINNET_WS_URL:
                cfg["ws_url"] = TESTNET_WS_URL
        self.context = context
        self.enabled = bool(cfg["enabled"])
        self._fee_rate = Decimal(str(cfg["fee_rate"]))
        self.quote_asset = str(cfg["quote_asset"]).upper()
        self._symbol_map = {str(k).upper(): str(v).upper() for k, v in cfg["symbol_map"].items()}
        self._api_key = usable_credential(cfg.get("api_key"))
        self._api_secret = usable_credential(cfg.get("api_secret"))
        self._last_books: dict[str, OrderBook] = {}
        self.routing = VenueRouting(
            self.name, context=context, quote_currency=self.quote_asset, fee_rate=self._fee_rate,
            balances=paper_balances(self.name, context, section or {}) or cfg["simulated_balances"],
            api_key=self._api_key, api_secret=self._api_secret, base_url=str(cfg["base_url"]),
            symbols=configured_symbols(cfg, context), last_book=self._last_book, rules=self.market_rules,
            log=log,
        )
        self.mode, self.mock, self.live_private = self.routing.mode, self.routing.mock, self.routing.live_private
        self.metrics = VenueMetrics(self.name, getattr(context, "registry", None),
                                    groups=("requests", "weight", "orders", "retry_after"))
        self.rest = BinanceRest(cfg, api_key=self._api_key, api_secret=self._api_secret, metrics=self.metrics)
        self.limiter = self.rest.limiter
        self.use_websocket = bool(cfg["use_websocket"]) and not self.mock
        self.rules: dict[str, SymbolRules] = {}  # market -> rules
        self._unknown_markets: dict[str, float] = {}  # market -> when Binance said "Invalid symbol."
        self._rules_loaded_at: float | None = None
        self._markets_to_symbols: dict[str, str] = {}
        self.stream_parser = BookParser(self.symbol_of, self.name)
        self._stream: BookStream | None = None
        self._client_ids: set[str] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self.routing.announce()

    @property
    def has_credentials(self) -> bool:
        return bool(self._api_key and self._api_secret)

    def describe(self) -> str:
        return self.routing.describe("BinanceExchange")

    @property
    def fee_rate(self) -> Decimal:
        return self._fee_rate

    @property
    def simulated(self) -> bool:
        return self.mock

    # ------------------------------------------------------------------------------------- symbols
    def market_of(self, symbol: str) -> str:
        """``BTC`` -> ``BTCUSDT`` (``symbol_map`` first)."""
        sym = symbol.upper()
        return self._symbol_map.get(sym) or sym + self.quote_asset

    def symbol_of(self, market: str) -> str:
        """``BTCUSDT`` -> ``BTC`` (``symbol_map``, then exchangeInfo's baseAsset when known)."""
        m = market.upper()
        for sym, mapped in self._symbol_map.items():
            if mapped == m:
                return sym
        known = self._markets_to_symbols.get(m)
        if known is not None:
            return known
        if m.endswith(self.quote_asset) and len(m) > len(self.quote_asset):
            return m[: -len(self.quote_asset)]
        return m

    # ------------------------------------------------------------------------------------- lifecycle
    async def connect(self) -> None:
        if self.mock:
            self.routing.simulated_exchange()
            return
        symbols = self.routing.symbols
        try:
            await self.load_rules(symbols or None)
        except ExchangeError as exc:
            log.warning("binance: could not load exchangeInfo (%s); rules load on first use", exc)
        if self.live_private:
            try:
                log.info("binance: server clock offset %.3fs", await self.rest.sync_time())
            except ExchangeError as exc:
                log.warning("binance: could not read the server time (%s); re-trying before signed calls", exc)
        if self.use_websocket and symbols:
            self._ensure_stream(symbols, 15)

    async def close(self) -> None:
        background, self._background = self._background, set()
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.stop()
        await self.rest.close()

    # ------------------------------------------------------------------------------------------ rules
    async def load_rules(self, symbols: list[str] | None = None) -> dict[str, SymbolRules]:
        """``GET /api/v3/exchangeInfo`` (for ``symbols``, or every market), cached; limits update the limiter."""
        params: dict[str, Any] = {}
        if symbols:
            markets = sorted({self.market_of(s) for s in symbols})
            params = ({"symbol": markets[0]} if len(markets) == 1
                      else {"symbols": json.dumps(markets, separators=(",", ":"))})
        payload = await self.rest.call("GET", "/api/v3/exchangeInfo", params)
        rules, limits = parse_exchange_info(payload)
        self.rules.update(rules)
        for market, r in rules.items():
            if r.base and market == self.market_of(r.base):
                self._markets_to_symbols[market] = r.base
        self._rules_loaded_at = time.monotonic()
        for quota, key in (("weight", "weight_per_minute"), ("orders", "orders_per_10s")):
            if limits.get(key):
                self.limiter.set_limit(quota, limits[key])
        return rules

    async def symbol_rules(self, symbol: str) -> SymbolRules:
        """The cached rules of ``symbol`` (loaded, or refreshed after ``exchange_info_ttl_seconds``)."""
        market = self.market_of(symbol)
        ttl = float(self.config["exchange_info_ttl_seconds"])
        unknown_since = self._unknown_markets.get(market)
        if unknown_since is not None and time.monotonic() - unknown_since < ttl:
            raise InvalidRequest(f"binance: no market {market} for {symbol}", exchange=self.name, code=INVALID_SYMBOL)
        stale = self._rules_loaded_at is None or time.monotonic() - self._rules_loaded_at > ttl
        if market not in self.rules or stale:
            unknown = {self.symbol_of(m) for m in self._unknown_markets}
            wanted = sorted({*self.routing.symbols, symbol.upper(), *(self.symbol_of(m) for m in self.rules)} - unknown)
            try:
                await self.load_rules(wanted)
            except InvalidRequest as exc:
                if exc.code != INVALID_SYMBOL:  # "Invalid symbol." fails the whole batch: ask for this one alone
                    raise
                try:
                    await self.load_rules([symbol])
                except InvalidRequest as single:
                    if single.code != INVALID_SYMBOL:
                        raise
                    self._unknown_markets[market] = time.monotonic()  # not asked again before the TTL
        try:
            return self.rules[market]
        except KeyError:
            raise InvalidRequest(f"binance: no market {market} for {symbol}", exchange=self.name,
                                 code=INVALID_SYMBOL) from None

    def market_rules(self, symbol: str) -> MarketRules:
        if self.mock:
            return self.routing.simulated_exchange().market_rules(symbol)
        rules = self.rules.get(self.market_of(symbol))
        if rules is None:
            raise InvalidRequest(f"binance: rules for {symbol} not loaded yet (connect(), fetch a book or await "
                                 "symbol_rules())", exchange=self.name)
        return rules.market_rules(symbol)

    def price_step(self, symbol: str, price: Decimal) -> Decimal:
        """The symbol's tick size, read off its cached rules (no ``MarketRules`` built per call: every order's
        price bound is rounded with it)."""
        if not self.mock:
            rules = self.rules.get(self.market_of(symbol))
            if rules is not None and rules.tick_size > 0:
                return rules.tick_size
        return super().price_step(symbol, price)

    async def _ensure_rules_quietly(self, symbol: str) -> None:
        if self.market_of(symbol) in self.rules:
            return
        try:
            await self.symbol_rules(symbol)
        except ExchangeError as exc:
            log.warning("binance: exchangeInfo for %s unavailable (%s)", symbol, exc)

    # ------------------------------------------------------------------------------------ market data
    async def fetch_order_book(self, symbol: str, depth: int = 15) -> OrderBook:
        """The freshest book: the WebSocket's when ``use_websocket`` and it is fresh, else REST."""
        if self.mock:
            return await self.routing.simulated_exchange().fetch_order_book(symbol, depth)
        if self.use_websocket:
            return await self.fresh_order_book(symbol, depth)
        return await self.rest_order_book(symbol, depth)

    async def rest_order_book(self, symbol: str, depth: int = 15) -> OrderBook:
        """``GET /api/v3/ticker/bookTicker`` for depth 1, else ``GET /api/v3/depth?limit=depth`` (always REST)."""
        if self.mock:
            return await self.routing.simulated_exchange().fetch_order_book(symbol, depth)
        await self._ensure_rules_quietly(symbol)
        market = self.market_of(symbol)
        try:
            if depth <= 1:
                data = await self.rest.call("GET", "/api/v3/ticker/bookTicker", {"symbol": market})
                book = book_ticker_to_book(data, symbol, utc_now(), exchange=self.name)
            else:
                limit = min(max(depth, 1), 5000)
                data = await self.rest.call("GET", "/api/v3/depth", {"symbol": market, "limit": limit},
                                            endpoint=depth_endpoint(limit))
                book = depth_to_book(data, symbol, utc_now(), depth=depth, exchange=self.name)
        except (KeyError, TypeError, IndexError, ValueError, ArithmeticError) as exc:
            if isinstance(exc, ExchangeError):
                raise
            error = ProtocolError(f"binance {market} book: unexpected answer ({type(exc).__name__}: {exc})",
                                  exchange=self.name, endpoint="/api/v3/depth")
            self.metrics.error(error)
            raise error from None
        self._last_books[symbol] = book
        return book

    async def fresh_order_book(self, symbol: str, depth: int = 15) -> OrderBook:
        """The engine's per-tick call when streaming: the stream's book for ``symbol`` if it is younger than
        ``stream_max_age_seconds`` (trimmed to ``depth``); otherwise — stream starting, down, reconnecting or
        silent — a REST poll. Starts the stream on first use."""
        if self.mock:
            return await self.routing.simulated_exchange().fetch_order_book(symbol, depth)
        if depth > 20:  # partial depth streams carry at most 20 levels: deeper books come from REST
            return await self.rest_order_book(symbol, depth)
        stream = self._ensure_stream([symbol], depth)
        book = stream.latest(symbol, float(self.config["stream_max_age_seconds"]))
        if book is None:
            return await self.rest_order_book(symbol, depth)
        if len(book.bids) > depth or len(book.asks) > depth:
            book = OrderBook(book.exchange, book.symbol, book.bids[:depth], book.asks[:depth], book.ts, book.simulated)
        self._last_books[symbol] = book
        return book

    def stream_order_books(self, symbols: list[str], depth: int = 15) -> AsyncIterator[OrderBook] | None:
        """Every new book of ``symbols`` from the WebSocket streams (reconnecting by itself); None in mock mode."""
        if self.mock:
            return None
        wanted = [s.upper() for s in symbols]
        stream = self._ensure_stream(wanted, depth)
        loop = asyncio.get_running_loop()
        for s in wanted:  # rules (market_rules) load in the background; the stream does not wait for them
            if self.market_of(s) not in self.rules:
                task = loop.create_task(self._ensure_rules_quietly(s))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
        return stream.books(wanted, depth)

    def _last_book(self, symbol: str) -> OrderBook | None:
        """The newest book of ``symbol`` this driver saw (the stream's while it is up): paper fills use it."""
        latest = self._stream.latest(symbol) if self._stream is not None else None
        return latest if latest is not None else self._last_books.get(symbol)

    @property
    def stream(self) -> BookStream | None:
        return self._stream

    async def _poll_books(self, symbols: list[str], depth: int) -> AsyncIterator[OrderBook]:
        """The stream's REST fallback: each symbol's book (``rest_order_book``), one request at a time and each
        only when the rate limiter has room to spare (:data:`FALLBACK_RESERVE` of each quota stays for orders and
        other calls; nothing queues ahead of them). A symbol that fails is skipped; a round in which every symbol
        failed raises the last error (the stream backs off)."""
        depth = min(max(depth, 1), 20)
        endpoint = "/api/v3/ticker/bookTicker" if depth <= 1 else depth_endpoint(depth)
        failed: ExchangeError | None = None
        delivered = 0
        for symbol in symbols:
            await self.limiter.wait_free(endpoint, reserve=FALLBACK_RESERVE)
            try:
                book = await self.rest_order_book(symbol, depth)
            except ExchangeError as exc:
                failed = exc
                continue
            delivered += 1
            yield book
        if failed is not None and not delivered:
            raise failed

    def _ensure_stream(self, symbols: list[str], depth: int) -> BookStream:
        """The running stream, widened in place (rolled over without a gap) when it lacks a symbol or depth."""
        depth = min(max(depth, 1), 20)
        stream = self._stream
        if stream is None:
            cfg = self.config
            speed, ws_url = str(cfg["ws_depth_speed"]), str(cfg["ws_url"])
            fallback_after = cfg["ws_rest_fallback_after_seconds"]
            spec = StreamSpec(
                url=lambda syms, d: stream_url(ws_url, [stream_name(self.market_of(s), d, speed) for s in syms]),
                parse=self.stream_parser.parse, poll=self._poll_books)
            settings = StreamSettings(
                ping_interval=None,  # Binance pings; the supervisor answers (and a silent connection is dead)
                idle_timeout=float(cfg["ws_silence_timeout_seconds"]),
                max_age=float(cfg["ws_max_connection_age_seconds"]),
                backoff=Backoff(initial=float(cfg["ws_reconnect_initial_seconds"]),
                                maximum=float(cfg["ws_reconnect_max_seconds"])),
                connect_timeout=float(cfg["connect_timeout_seconds"]),
                fallback_after=None if fallback_after is None else float(fallback_after),
                fallback_interval=float(cfg["ws_rest_fallback_interval_seconds"]))
            stream = self._stream = BookStream(self.name, spec, {*symbols, *self.routing.symbols}, depth,
                                               settings=settings, metrics=self.metrics)
            self.stream_parser.on_shutdown = stream.rollover  # serverShutdown: a new connection before the old goes
        else:
            stream.update(symbols, depth)
        stream.start()
        return stream

    # ------------------------------------------------------------------------------------------ private
    async def fetch_balances(self) -> dict[str, Decimal]:
        """Free balance per asset (``GET /api/v3/account``, ``omitZeroBalances``)."""
        sim = self.routing.private_backend()
        if sim is not None:
            return await sim.fetch_balances()
        return {asset: b.free for asset, b in (await self.fetch_balance_details()).items() if b.free > 0}

    async def fetch_balance_details(self) -> dict[str, Balance]:
        """Free and locked (held by open orders) balance per asset; an asset with either above 0 is listed."""
        sim = self.routing.private_backend()
        if sim is not None:  # the simulated wallet reports free amounts only
            return {asset: Balance(free) for asset, free in (await sim.fetch_balances()).items()}
        data = await self.rest.call("GET", "/api/v3/account", {"omitZeroBalances": "true"})
        try:
            return parse_balances(data)
        except (TypeError, ValueError, ArithmeticError, KeyError, AttributeError) as exc:
            raise ProtocolError(f"binance /api/v3/account: unexpected answer ({exc})", exchange=self.name,
                                endpoint="/api/v3/account") from None

    async def place_order(self, request: OrderRequest) -> Order:
        """``POST /api/v3/order`` (``newOrderRespType=FULL``) carrying ``newClientOrderId``; ``request.test`` sends
        it to ``POST /api/v3/order/test`` instead (signed and checked by Binance, never placed: returned ``NEW``,
        nothing filled). Never re-sent after its answer was lost: :meth:`_recover_order`."""
        sim = self.routing.private_backend()
        if sim is None:
            return await self._live_place(request)
        if not self.mock:
            if self._last_book(request.symbol) is None:
                await self.fetch_order_book(request.symbol, 15)
            await self._ensure_rules_quietly(request.symbol)
        if request.test:
            return self._test_order(request, None, simulated=True)
        return await sim.place_order(request)

    def _fresh_rules(self, symbol: str) -> SymbolRules | None:
        """``symbol``'s cached rules when :meth:`symbol_rules` would return them without a request (loaded, within
        ``exchange_info_ttl_seconds``); else None. Every order reads them: no coroutine for the usual case."""
        loaded = self._rules_loaded_at
        if loaded is None or time.monotonic() - loaded > float(self.config["exchange_info_ttl_seconds"]):
            return None
        market = self.market_of(symbol)
        return None if market in self._unknown_markets else self.rules.get(market)

    async def _live_place(self, req: OrderRequest) -> Order:
        rules = self._fresh_rules(req.symbol) or await self.symbol_rules(req.symbol)
        reference = None
        if req.order_type is OrderType.MARKET and req.qty is not None:
            book = self._last_book(req.symbol)
            if book is not None:
                reference = book.best_ask if req.side is Side.BUY else book.best_bid
        prepared = prepare_order(req, rules, reference_price=reference)
        params = {**prepared.params, "newOrderRespType": "FULL"}
        if req.test:
            await self.rest.call("POST", "/api/v3/order/test", params, idempotent=False)
            return self._test_order(req, prepared)
        cid = req.client_order_id
        self._client_ids.add(cid)
        try:
            data = await self.rest.call("POST", "/api/v3/order", params, idempotent=False)
        except OrderRejected as exc:
            if not is_duplicate_order(exc):
                raise
            log.warning("binance: client order id %s belongs to an open order; returning that order", cid)
            return await self.fetch_order(req.symbol, cid)
        except (TransportError, VenueUnavailable, ProtocolError) as exc:
            return await self._recover_order(req, exc)
        try:
            return parse_order(data, req.symbol, exchange=self.name)
        except ProtocolError as exc:  # accepted, but unreadable: the order exists; read it back
            return await self._recover_order(req, exc)

    def _test_order(self, req: OrderRequest, prepared: PreparedOrder | None, *, simulated: bool = False) -> Order:
        qty = prepared.qty if prepared is not None and prepared.qty is not None else req.qty
        price = prepared.price if prepared is not None and prepared.price is not None else req.price
        return Order(id=req.client_order_id or new_id(), ts=utc_now(), exchange=self.name, symbol=req.symbol,
                     side=req.side, order_type=req.order_type, qty=qty or Decimal(0), price=price,
                     status=OrderStatus.NEW, filled_qty=Decimal(0), avg_price=None, fee=Decimal(0),
                     fee_currency="", client_order_id=req.client_order_id, simulated=simulated)

    async def _recover_order(self, req: OrderRequest, cause: ExchangeError) -> Order:
        """The answer to a POST was lost (or unreadable): look the order up by client order id, and if the
        look-ups do not find it raise :class:`arbframe.OrderStatusUnknown`. Never re-send it: Binance refuses a
        duplicate client order id only while that order is open, so a copy of an order that filled would fill
        again. The caller reconciles with ``fetch_order(symbol, client_order_id)``."""
        cid = req.client_order_id
        attempts = int(self.config["order_lookup_attempts"])
        interval = float(self.config["order_lookup_interval_seconds"])
        log.warning("binance: order %s outcome unknown (%s); looking it up by client order id", cid, cause)
        for i in range(attempts):
            if i:
                await asyncio.sleep(interval)
            try:
                return await self.fetch_order(req.symbol, cid)
            except UnknownOrder:
                continue
            except (TransportError, VenueUnavailable, ProtocolError) as exc:
                log.info("binance: look-up of %s failed (%s)", cid, exc)
        error = OrderStatusUnknown(
            f"binance: order {cid} on {self.market_of(req.symbol)}: outcome unknown after {attempts} look-ups "
            f"({cause}); not re-sent: reconcile with fetch_order", exchange=self.name, endpoint="/api/v3/order",
            client_order_id=cid)
        self.metrics.error(error)
        raise error from cause

    def _id_params(self, symbol: str, order_id: str) -> dict[str, str]:
        params = {"symbol": self.market_of(symbol)}
        if order_id in self._client_ids or not order_id.isdigit():
            params["origClientOrderId"] = order_id
        else:
            params["orderId"] = order_id
        return params

    async def cancel_order(self, symbol: str, order_id: str) -> Order:
        """``DELETE /api/v3/order`` by exchange order id (digits) or client order id; an order that is already
        final (cancelled by an earlier, lost answer, or filled) is returned as it is."""
        sim = self.routing.private_backend()
        if sim is not None:
            return await sim.cancel_order(symbol, order_id)
        try:
            data = await self.rest.call("DELETE", "/api/v3/order", self._id_params(symbol, order_id),
                                        endpoint="/api/v3/order:DELETE")
        except UnknownOrder:
            order = await self.fetch_order(symbol, order_id)
            if order.status in _FINAL:
                return order
            raise
        return parse_order(data, symbol, exchange=self.name)

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        sim = self.routing.private_backend()
        if sim is not None:
            return await sim.fetch_open_orders(symbol)
        params = {"symbol": self.market_of(symbol)} if symbol else {}
        rows = await self.rest.call("GET", "/api/v3/openOrders", params,
                                    endpoint="/api/v3/openOrders" if symbol else "/api/v3/openOrders:all")
        return [parse_order(r, symbol or self.symbol_of(r["symbol"]), exchange=self.name) for r in rows]

    async def fetch_order(self, symbol: str, order_id: str) -> Order:
        sim = self.routing.private_backend()
        if sim is not None:
            return await sim.fetch_order(symbol, order_id)
        data = await self.rest.call("GET", "/api/v3/order", self._id_params(symbol, order_id),
                                    endpoint="/api/v3/order:GET")
        order = parse_order(data, symbol, exchange=self.name)
        if order.filled_qty > 0 and not order.fee and order.exchange_order_id:
            order = await self._with_trade_fees(order)
        return order

    async def _with_trade_fees(self, order: Order) -> Order:
        """A look-up answer carries no commission (only a placement's ``FULL`` answer has ``fills``): read it
        from the order's trades (``GET /api/v3/myTrades?orderId=``), or the books would miss a fee charged in the
        coin. A failed read keeps the order as it is (logged)."""
        try:
            trades = await self.rest.call("GET", "/api/v3/myTrades",
                                          {"symbol": self.market_of(order.symbol), "orderId": order.exchange_order_id})
            fees = order_fees({"fills": trades}, exchange=self.name, client_id=order.client_order_id or "")
        except ExchangeError as exc:
            log.warning("binance: commission of order %s not read (%s); recorded without its fee",
                        order.client_order_id, exc)
            return order
        if not fees:
            return order
        fee_currency, fee = fees[0]
        return dataclasses.replace(order, fee=fee, fee_currency=fee_currency, fees=tuple(fees) if len(fees) > 1 else ())

    # ---------------------------------------------------------------------------------- health, metrics
    @hookimpl
    def arbframe_register_metrics(self, registry: Any, context: Any) -> None:
        self.metrics.bind(registry)

    @hookimpl
    def arbframe_health_checks(self, config: Any, context: Any) -> list[HealthCheck]:
        timeout = float(self.config["health_timeout_seconds"])
        return [HealthCheck("binance", self.health_probe, timeout_seconds=timeout * 2 + 0.5)]

    async def health_probe(self) -> HealthResult:
        """Reachability and clock offset (``GET /api/v3/time``) and, with keys, one authenticated read-only call
        (``GET /api/v3/account``). Uses its own short-lived client, so it works from any event loop."""
        if not self.enabled:
            return HealthResult("binance", HealthStatus.DISABLED, "disabled in config")
        if self.mock:
            return HealthResult("binance", HealthStatus.OK, "mock mode: simulated market and account",
                                {"simulated": True})
        cfg = self.config
        details: dict[str, Any] = {"base_url": cfg["base_url"], "api_key": mask_secret(self._api_key),
                                   "private": "binance" if self.live_private else "simulated"}
        banned = self.limiter.banned_for()
        if banned > 0:
            details["banned_for_seconds"] = round(banned)
            return HealthResult("binance", HealthStatus.ERROR, f"IP banned by Binance (HTTP 418) for another "
                                f"{banned:.0f}s", details)
        probe = BinanceRest(cfg, api_key=self._api_key, api_secret=self._api_secret, metrics=VenueMetrics(self.name),
                            timeout=float(cfg["health_timeout_seconds"]), retries=0)
        try:
            started = time.perf_counter()
            offset = await probe.sync_time()
            details["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
            details["clock_offset_ms"] = round(offset * 1000, 1)
            self.metrics.clock_offset(offset)
            clock_note = f"clock offset {offset * 1000:+.0f} ms"
            warn_clock = abs(offset * 1000) > float(cfg["clock_offset_warn_ms"])
            if not self.has_credentials:
                return HealthResult("binance", HealthStatus.WARN,
                                    f"reachable ({details['latency_ms']} ms, {clock_note}); no API keys: private "
                                    "calls use a simulated account", details)
            account = await probe.call("GET", "/api/v3/account", {"omitZeroBalances": "true"})
            details["authenticated"] = True
            details["can_trade"] = bool(account.get("canTrade", False))
            details["assets"] = len(account.get("balances", ()))
            status = HealthStatus.WARN if warn_clock or not details["can_trade"] else HealthStatus.OK
            extra = "" if details["can_trade"] else "; the key cannot trade"
            return HealthResult("binance", status,
                                f"reachable ({details['latency_ms']} ms, {clock_note}), authenticated with key "
                                f"{mask_secret(self._api_key)}{extra}", details)
        except ExchangeError as exc:
            details["error"] = exc.kind
            return HealthResult("binance", HealthStatus.ERROR, str(exc), details)
        except Exception as exc:  # a health probe reports, never raises
            return HealthResult("binance", HealthStatus.ERROR, f"{type(exc).__name__}: {exc}", details)
        finally:
            with contextlib.suppress(Exception):
                await probe.close()
