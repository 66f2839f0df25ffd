"""The ``binance`` exchange driver (entry point ``arbframe.exchange: binance``), Binance spot, USDT markets.

Where each call goes:

==========================  =====================================  ==========================================
situation                   market data                            balances / orders
==========================  =====================================  ==========================================
``context.mock`` true       kernel ``SimulatedExchange``           the same simulated exchange's account
mode != live or no keys     Binance REST / WebSocket               a ``SimulatedAccount`` (warning when no keys)
mode == live with keys      Binance REST / WebSocket               Binance private REST (HMAC-SHA256 signed)
==========================  =====================================  ==========================================

Signed requests therefore only ever reach Binance in live mode (the one exception is the health check's
read-only ``GET /api/v3/account`` when keys are configured, so keys can be verified before going live).

Market data: :meth:`BinanceExchange.fetch_order_book` returns the freshest book — the WebSocket's when
``use_websocket`` is on and the stream's book is younger than ``stream_max_age_seconds``, a REST poll otherwise
(:meth:`fresh_order_book`; :meth:`rest_order_book` always polls). Symbols are base assets (``BTC``) mapped to
markets (``BTCUSDT``) with ``quote_asset`` and the optional ``symbol_map``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from decimal import Decimal
from typing import Any, ClassVar

from arbframe import (
    Balance,
    Exchange,
    HealthCheck,
    HealthResult,
    HealthStatus,
    MarketRules,
    Order,
    OrderBook,
    OrderRequest,
    OrderStatus,
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
from arbframe_exchange_binance.errors import (
    BinanceAPIError,
    BinanceBanned,
    BinanceDuplicateOrder,
    BinanceError,
    BinanceFilterError,
    BinanceInsufficientBalance,
    BinanceOrderStatusUnknown,
    BinanceParseError,
    BinanceServerError,
    BinanceTransportError,
    BinanceUnknownOrder,
)
from arbframe_exchange_binance.parsing import (
    book_ticker_to_book,
    depth_to_book,
    parse_balances,
    parse_order,
    utc_now,
)
from arbframe_exchange_binance.ratelimit import RateLimiter
from arbframe_exchange_binance.rest import BinanceRest, RestSettings, depth_weight
from arbframe_exchange_binance.rules import SymbolRules, parse_exchange_info, prepare_order
from arbframe_exchange_binance.stream import BookStream, StreamSettings

__all__ = ["DEFAULTS", "TESTNET_BASE_URL", "TESTNET_WS_URL", "BinanceExchange"]

log = logging.getLogger("arbframe.binance")

MAINNET_BASE_URL = "https://api.binance.com"
MAINNET_WS_URL = "wss://stream.binance.com:9443"
TESTNET_BASE_URL = "https://testnet.binance.vision"
TESTNET_WS_URL = "wss://stream.testnet.binance.vision"

DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "api_key": "",
    "api_secret": "",
    "testnet": False,
    "base_url": MAINNET_BASE_URL,
    "ws_url": MAINNET_WS_URL,
    "quote_asset": "USDT",
    "symbol_map": {},
    "symbols": [],
    "fee_rate": 0.001,
    "rate_limit": 10,
    "weight_limit_per_minute": 6000,
    "orders_per_10s": 100,
    "rate_limit_safety": 0.9,
    "recv_window": 5000,
    "timeout_seconds": 10.0,
    "connect_timeout_seconds": 5.0,
    "max_retries": 3,
    "retry_backoff_seconds": 0.5,
    "retry_backoff_max_seconds": 8.0,
    "max_retry_after_seconds": 60.0,
    "time_sync_interval_seconds": 300.0,
    "exchange_info_ttl_seconds": 3600.0,
    "order_lookup_attempts": 3,
    "order_lookup_interval_seconds": 1.0,
    "resend_after_lookup": True,
    "use_websocket": False,
    "ws_depth_speed": "100ms",
    "ws_silence_timeout_seconds": 10.0,
    "ws_max_connection_age_seconds": 23.5 * 3600,
    "ws_reconnect_initial_seconds": 0.5,
    "ws_reconnect_max_seconds": 30.0,
    "rest_poll_interval_seconds": 1.0,
    "stream_max_age_seconds": 3.0,
    "simulated_balances": {"USDT": 10000},
    "health_timeout_seconds": 3.0,
    "clock_offset_warn_ms": 1000,
}


class _Metrics:
    """ExchangeMetrics of the kernel registry with cached label children (hot path = one dict lookup)."""

    def __init__(self, registry: Any, exchange: str) -> None:
        from arbframe import ExchangeMetrics  # shared, registry-scoped families

        m = ExchangeMetrics.get(registry)
        # counters at 0 for every error kind and limit group, so the first error (a 418 ban) is an increase
        m.precreate(exchange, groups=("requests", "weight", "orders", "retry_after"))
        self.requests, self.request_seconds, self.errors = m.requests, m.request_seconds, m.errors
        self.ws_reconnects, self.ws_message_age_seconds = m.ws_reconnects, m.ws_message_age_seconds
        self.clock_offset_seconds = m.clock_offset_seconds
        self.rate_limit_waits, self.rate_limit_wait_seconds = m.rate_limit_waits, m.rate_limit_wait_seconds
        self.exchange = exchange

    def wait(self, group: str, seconds: float) -> None:
        self.rate_limit_waits.labels(self.exchange, group).inc()
        self.rate_limit_wait_seconds.labels(self.exchange, group).inc(max(0.0, seconds))


class BinanceExchange(Exchange):
    """Binance spot: REST + WebSocket market data, HMAC-signed private API, mock-mode fallbacks."""

    name: ClassVar[str] = "binance"
    quote_currency: ClassVar[str] = "USDT"
    api_version: ClassVar[int] = 1

    # ---------------------------------------------------------------------------------------- config
    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        pos = {"type": "number", "exclusiveMinimum": 0}
        nonneg = {"type": "number", "minimum": 0}
        return {
            "type": "object",
            "description": "Binance spot connector (arbframe-exchange-binance)",
            "additionalProperties": False,
            "properties": {
                "enabled": {"type": "boolean", "default": True},
                "api_key": {"type": ["string", "null"], "writeOnly": True, "description": "Binance API key"},
                "api_secret": {"type": ["string", "null"], "writeOnly": True,
                               "description": "Binance secret key (HMAC)"},
                "testnet": {"type": "boolean", "default": False,
                            "description": "use the spot testnet URLs where base_url/ws_url are left at mainnet"},
                "base_url": {"type": "string", "default": MAINNET_BASE_URL,
                             "description": f"REST base URL (testnet: {TESTNET_BASE_URL})"},
                "ws_url": {"type": "string", "default": MAINNET_WS_URL,
                           "description": f"market-stream base URL (testnet: {TESTNET_WS_URL})"},
                "quote_asset": {"type": "string", "default": "USDT"},
                "symbol_map": {"type": "object", "additionalProperties": {"type": "string"},
                               "description": "symbol -> Binance market where it is not <symbol><quote_asset>"},
                "symbols": {"type": "array", "items": {"type": "string"},
                            "description": "symbols to load rules for / stream at start-up "
                                           "(default: arbitrage.symbols)"},
                "fee_rate": {"type": ["number", "string"], "default": 0.001, "description": "taker fee fraction"},
                "rate_limit": {**pos, "default": 10, "description": "REST requests per second (seed D4)"},
                "weight_limit_per_minute": {"type": "integer", "minimum": 1, "default": 6000,
                                            "description": "REQUEST_WEIGHT per minute (exchangeInfo overrides)"},
                "orders_per_10s": {"type": "integer", "minimum": 1, "default": 100},
                "rate_limit_safety": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 0.9},
                "recv_window": {"type": "integer", "minimum": 1, "maximum": 60000, "default": 5000,
                                "description": "ms a signed request stays valid"},
                "timeout_seconds": {**pos, "default": 10.0, "description": "total time per REST request"},
                "connect_timeout_seconds": {**pos, "default": 5.0},
                "max_retries": {"type": "integer", "minimum": 0, "maximum": 10, "default": 3},
                "retry_backoff_seconds": {**nonneg, "default": 0.5},
                "retry_backoff_max_seconds": {**nonneg, "default": 8.0},
                "max_retry_after_seconds": {**nonneg, "default": 60.0,
                                            "description": "longest Retry-After (429) waited out before raising"},
                "time_sync_interval_seconds": {**pos, "default": 300.0},
                "exchange_info_ttl_seconds": {**pos, "default": 3600.0},
                "order_lookup_attempts": {"type": "integer", "minimum": 1, "maximum": 20, "default": 3},
                "order_lookup_interval_seconds": {**nonneg, "default": 1.0},
                "resend_after_lookup": {"type": "boolean", "default": True,
                                        "description": "re-send an order (same client id) only after look-ups "
                                                       "confirmed it does not exist"},
                "use_websocket": {"type": "boolean", "default": False,
                                  "description": "serve books from the WebSocket streams (REST fallback)"},
                "ws_depth_speed": {"enum": ["100ms", "1000ms"], "default": "100ms"},
                "ws_silence_timeout_seconds": {**pos, "default": 10.0,
                                               "description": "a stream silent this long is dead"},
                "ws_max_connection_age_seconds": {**pos, "default": 84600.0,
                                                  "description": "roll over before Binance's 24 h disconnect"},
                "ws_reconnect_initial_seconds": {**pos, "default": 0.5},
                "ws_reconnect_max_seconds": {**pos, "default": 30.0},
                "rest_poll_interval_seconds": {**pos, "default": 1.0,
                                               "description": "REST polling period while the stream is down"},
                "stream_max_age_seconds": {**pos, "default": 3.0,
                                           "description": "older stream books are replaced by a REST poll"},
                "simulated_balances": {"type": "object", "additionalProperties": {"type": ["number", "string"]},
                                       "description": "wallet of the simulated account (no keys / not live)"},
                "health_timeout_seconds": {**pos, "default": 3.0},
                "clock_offset_warn_ms": {**nonneg, "default": 1000},
            },
        }

    # ------------------------------------------------------------------------------------------ build
    def __init__(self, section: Mapping[str, Any] | None = None, context: PluginContext | None = None) -> None:
        cfg = dict(DEFAULTS)
        cfg.update({k: v for k, v in (section or {}).items() if v is not None or k in ("api_key", "api_secret")})
        if cfg.get("testnet"):
            if cfg["base_url"] == MAINNET_BASE_URL:
                cfg["base_url"] = TESTNET_BASE_URL
            if cfg["ws_url"] == MAINNET_WS_URL:
                cfg["ws_url"] = TESTNET_WS_URL
        self.config = cfg
        self.context = context
        self.enabled = bool(cfg["enabled"])
        self._fee_rate = Decimal(str(cfg["fee_rate"]))
        self.quote_asset = str(cfg["quote_asset"]).upper()
        self._symbol_map = {str(k).upper(): str(v).upper() for k, v in (cfg.get("symbol_map") or {}).items()}
        self._api_key = usable_credential(cfg.get("api_key"))
        self._api_secret = usable_credential(cfg.get("api_secret"))
        self._last_books: dict[str, OrderBook] = {}
        self.routing = VenueRouting(
            self.name, context=context, quote_currency=self.quote_asset, fee_rate=self._fee_rate,
            balances=paper_balances(self.name, context, section or {}) or cfg["simulated_balances"],
            api_key=self._api_key, api_secret=self._api_secret, base_url=str(cfg["base_url"]),
            symbols=configured_symbols(cfg, context), last_book=lambda symbol: self._last_books.get(symbol),
            rules=self.market_rules, log=log,
        )
        self.mode = self.routing.mode
        self.mock = self.routing.mock
        self.live_private = self.routing.live_private
        registry = getattr(context, "registry", None)
        self.metrics = _Metrics(registry, self.name) if registry is not None else None
        self.limiter = RateLimiter(
            requests_per_second=float(cfg["rate_limit"]),
            weight_per_minute=int(cfg["weight_limit_per_minute"]),
            orders_per_10s=int(cfg["orders_per_10s"]),
            safety=float(cfg["rate_limit_safety"]),
            on_wait=self.metrics.wait if self.metrics is not None else None,
        )
        self.rest = BinanceRest(
            self._rest_settings(), api_key=self._api_key, api_secret=self._api_secret, live=self.live_private,
            limiter=self.limiter, metrics=self.metrics, exchange=self.name, on_ban=self._on_ban,
        )
        self.use_websocket = bool(cfg["use_websocket"]) and not self.mock
        self.rules: dict[str, SymbolRules] = {}  # market -> rules
        self._unknown_markets: dict[str, float] = {}  # market -> when Binance said "Invalid symbol."
        self._rules_loaded_at: float | None = None
        self._markets_to_symbols: dict[str, str] = {}
        self._stream: BookStream | None = None
        self._ws_client: Any = None
        self._client_ids: set[str] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._ban: BinanceBanned | None = None
        self._closed = False
        self.routing.announce()

    def _rest_settings(self, *, timeout: float | None = None, retries: int | None = None) -> RestSettings:
        cfg = self.config
        return RestSettings(
            base_url=str(cfg["base_url"]),
            recv_window=int(cfg["recv_window"]),
            request_timeout=float(timeout if timeout is not None else cfg["timeout_seconds"]),
            connect_timeout=min(float(cfg["connect_timeout_seconds"]),
                                float(timeout if timeout is not None else cfg["timeout_seconds"])),
            max_retries=int(retries if retries is not None else cfg["max_retries"]),
            retry_backoff=float(cfg["retry_backoff_seconds"]),
            retry_backoff_max=float(cfg["retry_backoff_max_seconds"]),
            max_retry_after=float(cfg["max_retry_after_seconds"]),
            time_sync_interval=float(cfg["time_sync_interval_seconds"]),
        )

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

    def _on_ban(self, err: BinanceBanned) -> None:
        self._ban = err
        log.error("binance: trading and polling stopped by an IP ban (HTTP 418, Retry-After %s s)", err.retry_after)

    # ------------------------------------------------------------------------------------- symbols
    def market_of(self, symbol: str) -> str:
        """``BTC`` -> ``BTCUSDT`` (``symbol_map`` first)."""
        sym = symbol.upper()
        found = self._symbol_map.get(sym)
        if found is not None:
            return found
        return sym + self.quote_asset

    def symbol_of(self, market: str) -> str:
        """``BTCUSDT`` -> ``BTC`` (from exchangeInfo's baseAsset when known)."""
        m = market.upper()
        for sym, mapped in self._symbol_map.items():
            if mapped == m:
                return sym
        known = self._markets_to_symbols.get(m)
        if known is not None:
            return known
        rules = self.rules.get(m)
        if rules is not None and rules.base:
            return rules.base
        if m.endswith(self.quote_asset) and len(m) > len(self.quote_asset):
            return m[: -len(self.quote_asset)]
        return m

    def _configured_symbols(self) -> list[str]:
        return self.routing.symbols

    def _simulated_exchange(self) -> Any:
        return self.routing.simulated_exchange()

    # ------------------------------------------------------------------------------------- lifecycle
    async def connect(self) -> None:
        self._closed = False
        if self.mock:
            self._simulated_exchange()
            return
        await self.rest.open()
        symbols = self._configured_symbols()
        try:
            await self.load_rules(symbols or None)
        except BinanceError as exc:
            log.warning("binance: could not load exchangeInfo (%s); rules load on first use", exc)
        if self.live_private:
            try:
                offset = await self.rest.sync_time()
                log.info("binance: server clock offset %.3fs", offset)
            except BinanceError as exc:
                log.warning("binance: could not read the server time (%s); re-trying before signed calls", exc)
        if self.use_websocket and symbols:
            self._ensure_stream(symbols, 15)

    async def close(self) -> None:
        self._closed = True
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.stop()
        ws_client, self._ws_client = self._ws_client, None
        if ws_client is not None and not ws_client.closed:
            await ws_client.close()
        await self.rest.close()

    # ------------------------------------------------------------------------------------------ rules
    async def load_rules(self, symbols: list[str] | None = None) -> dict[str, SymbolRules]:
        """``GET /api/v3/exchangeInfo`` (for ``symbols``, or every market), cached; limits update the limiter."""
        params: dict[str, Any] = {}
        if symbols:
            markets = sorted({self.market_of(s) for s in symbols})
            params = ({"symbol": markets[0]} if len(markets) == 1
                      else {"symbols": json.dumps(markets, separators=(",", ":"))})
        payload = await self.rest.public("/api/v3/exchangeInfo", params)
        rules, limits = parse_exchange_info(payload)
        self.rules.update(rules)
        for market, r in rules.items():
            if r.base and market == self.market_of(r.base):
                self._markets_to_symbols[market] = r.base
        self._rules_loaded_at = time.monotonic()
        self.limiter.set_limits(weight_per_minute=limits.get("weight_per_minute"),
                                orders_per_10s=limits.get("orders_per_10s"))
        return rules

    async def symbol_rules(self, symbol: str) -> SymbolRules:
        """The cached rules of ``symbol`` (loaded, or refreshed after ``exchange_info_ttl_seconds``)."""
        market = self.market_of(symbol)
        ttl = float(self.config["exchange_info_ttl_seconds"])
        unknown_since = self._unknown_markets.get(market)
        if unknown_since is not None and time.monotonic() - unknown_since < ttl:
            raise BinanceFilterError(f"binance: no market {market} for {symbol}", filter_type="SYMBOL")
        stale = self._rules_loaded_at is None or time.monotonic() - self._rules_loaded_at > ttl
        if market not in self.rules or stale:
            wanted = sorted({*self._configured_symbols(), symbol.upper(),
                             *(self.symbol_of(m) for m in self.rules)} - {self.symbol_of(m) for m in
                                                                           self._unknown_markets})
            try:
                await self.load_rules(wanted)
            except BinanceAPIError as exc:
                if exc.code != -1121:  # "Invalid symbol." fails the whole batch: ask for this one alone
                    raise
                try:
                    await self.load_rules([symbol])
                except BinanceAPIError as single:
                    if single.code != -1121:
                        raise
                    self._unknown_markets[market] = time.monotonic()  # not asked again before the TTL
        try:
            return self.rules[market]
        except KeyError:
            raise BinanceFilterError(f"binance: no market {market} for {symbol}", filter_type="SYMBOL") from None

    def market_rules(self, symbol: str) -> MarketRules:
        if self.mock:
            return self._simulated_exchange().market_rules(symbol)
        rules = self.rules.get(self.market_of(symbol))
        if rules is None:
            raise BinanceFilterError(
                f"binance: rules for {symbol} not loaded yet (connect(), fetch a book or await symbol_rules())",
                filter_type="SYMBOL")
        return rules.market_rules(symbol)

    async def _ensure_rules_quietly(self, symbol: str) -> None:
        if self.market_of(symbol) in self.rules:
            return
        try:
            await self.symbol_rules(symbol)
        except BinanceError as exc:
            log.warning("binance: exchangeInfo for %s unavailable (%s)", symbol, exc)

    # ------------------------------------------------------------------------------------ market data
    async def fetch_order_book(self, symbol: str, depth: int = 15) -> OrderBook:
        """The freshest book: the WebSocket's when ``use_websocket`` and it is fresh, else REST."""
        if self.mock:
            return await self._simulated_exchange().fetch_order_book(symbol, depth)
        if self.use_websocket:
            return await self.fresh_order_book(symbol, depth)
        return await self.rest_order_book(symbol, depth)

    async def rest_order_book(self, symbol: str, depth: int = 15) -> OrderBook:
        """``GET /api/v3/ticker/bookTicker`` for depth 1, else ``GET /api/v3/depth?limit=depth`` (always REST)."""
        if self.mock:
            return await self._simulated_exchange().fetch_order_book(symbol, depth)
        await self._ensure_rules_quietly(symbol)
        market = self.market_of(symbol)
        if depth <= 1:
            data = await self.rest.public("/api/v3/ticker/bookTicker", {"symbol": market}, weight=2)
            book = book_ticker_to_book(data, symbol, utc_now(), exchange=self.name)
        else:
            limit = min(max(depth, 1), 5000)
            data = await self.rest.public("/api/v3/depth", {"symbol": market, "limit": limit},
                                          weight=depth_weight(limit))
            try:
                book = depth_to_book(data, symbol, utc_now(), depth=depth, exchange=self.name)
            except (KeyError, TypeError, IndexError, ValueError, ArithmeticError) as exc:
                raise BinanceParseError(f"binance /api/v3/depth: unexpected answer ({exc})",
                                        endpoint="/api/v3/depth") from exc
        self._last_books[symbol] = book
        return book

    async def fresh_order_book(self, symbol: str, depth: int = 15) -> OrderBook:
        """The engine's per-tick call when streaming: the stream's book for ``symbol`` if it is younger than
        ``stream_max_age_seconds`` (trimmed to ``depth``); otherwise — stream starting, down, reconnecting or
        silent — a REST poll. Starts the stream on first use."""
        if self.mock:
            return await self._simulated_exchange().fetch_order_book(symbol, depth)
        if depth > 20:  # partial depth streams carry at most 20 levels: deeper books come from REST
            return await self.rest_order_book(symbol, depth)
        stream = self._ensure_stream([symbol], depth)
        book = stream.fresh(symbol, float(self.config["stream_max_age_seconds"]))
        if book is not None:
            if len(book.bids) > depth or len(book.asks) > depth:
                book = OrderBook(book.exchange, book.symbol, book.bids[:depth], book.asks[:depth], book.ts,
                                 book.simulated)
            self._last_books[symbol] = book
            return book
        return await self.rest_order_book(symbol, depth)

    def stream_order_books(self, symbols: list[str], depth: int = 15) -> AsyncIterator[OrderBook] | None:
        """Every new book of ``symbols`` from the WebSocket (REST-polled while it is down); None in mock mode."""
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
        return stream.books(set(wanted), depth, self._last_books.__setitem__)

    @property
    def stream(self) -> BookStream | None:
        return self._stream

    def _ensure_stream(self, symbols: list[str], depth: int) -> BookStream:
        """The running stream, rebuilt when it lacks a symbol or enough depth (partial depth: 5/10/20 levels)."""
        want = {s.upper() for s in symbols} | set(self._configured_symbols())
        depth = min(max(depth, 1), 20)
        stream = self._stream
        if stream is not None:
            if not (want <= set(stream.symbols) and stream.depth >= depth):
                # widen the subscription in place: running iterators keep flowing (rolled over, no gap)
                stream.update(sorted(want | set(stream.symbols)), max(depth, stream.depth))
            stream.start()
            return stream
        cfg = self.config
        settings = StreamSettings(
            ws_url=str(cfg["ws_url"]),
            depth_speed=str(cfg["ws_depth_speed"]),
            stale_after=float(cfg["ws_silence_timeout_seconds"]),
            max_age=float(cfg["ws_max_connection_age_seconds"]),
            reconnect_min=float(cfg["ws_reconnect_initial_seconds"]),
            reconnect_max=float(cfg["ws_reconnect_max_seconds"]),
            poll_interval=float(cfg["rest_poll_interval_seconds"]),
        )
        self._stream = BookStream(
            sorted(want), depth, market_of=self.market_of, settings=settings, session_factory=self._ws_session,
            rest_fallback=self._poll_book, metrics=self.metrics, exchange=self.name,
            server_time=self.rest.server_time,
        )
        self._stream.start()
        return self._stream

    def _ws_session(self) -> Any:
        """A session for WebSockets only: no total timeout (a stream lives for hours)."""
        session = self._ws_client
        if session is None or session.closed:
            import aiohttp

            session = self._ws_client = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=float(self.config["connect_timeout_seconds"])))
        return session

    async def _poll_book(self, symbol: str, depth: int) -> OrderBook:
        if self._ban is not None and self.rest.banned_until > time.monotonic():
            raise self._ban
        return await self.rest_order_book(symbol, depth)

    # ------------------------------------------------------------------------------------------ private
    def _private_sim(self) -> Any:
        """The simulated private API in use, or None when calls go to Binance."""
        return self.routing.private_backend()

    async def _sim_call(self, coro: Any) -> Any:
        from arbframe import InsufficientFunds  # the paper wallet's error (mock mode only)

        try:
            return await coro
        except InsufficientFunds as exc:
            raise BinanceInsufficientBalance(f"binance (simulated): {exc}") from exc
        except KeyError as exc:
            raise BinanceUnknownOrder(f"binance (simulated): {exc}") from exc
        except ValueError as exc:
            raise BinanceFilterError(f"binance (simulated): {exc}") from exc

    async def fetch_balances(self) -> dict[str, Decimal]:
        """Free balance per asset (``GET /api/v3/account``, ``omitZeroBalances``)."""
        sim = self._private_sim()
        if sim is not None:
            return await sim.fetch_balances()
        return {asset: b.free for asset, b in (await self.fetch_balance_details()).items() if b.free > 0}

    async def fetch_balance_details(self) -> dict[str, Balance]:
        """Free and locked (held by open orders) balance per asset; an asset with either above 0 is listed."""
        sim = self._private_sim()
        if sim is not None:  # the simulated wallet reports free amounts only
            return {asset: Balance(free) for asset, free in (await sim.fetch_balances()).items()}
        data = await self.rest.request("GET", "/api/v3/account", {"omitZeroBalances": "true"}, signed=True,
                                       weight=20)
        try:
            return parse_balances(data)
        except (TypeError, ValueError, ArithmeticError, KeyError) as exc:
            raise BinanceParseError(f"binance /api/v3/account: unexpected answer ({exc})",
                                    endpoint="/api/v3/account") from exc

    async def place_order(self, request: OrderRequest) -> Order:
        sim = self._private_sim()
        if sim is not None:
            if not self.mock and request.symbol not in self._last_books:
                await self.fetch_order_book(request.symbol, 15)
            if not self.mock:
                await self._ensure_rules_quietly(request.symbol)
            return await self._sim_call(sim.place_order(request))
        return await self._live_place(request)

    async def _live_place(self, req: OrderRequest) -> Order:
        rules = await self.symbol_rules(req.symbol)
        reference = None
        if req.order_type is OrderType.MARKET and req.qty is not None:
            book = self._last_books.get(req.symbol)
            if book is None and self._stream is not None:
                book = self._stream.fresh(req.symbol)
            if book is not None:
                reference = book.best_ask if req.side is Side.BUY else book.best_bid
        prepared = prepare_order(req, rules, reference_price=reference)
        params = {**prepared.params, "newOrderRespType": "FULL"}
        cid = req.client_order_id
        self._client_ids.add(cid)
        try:
            data = await self.rest.request("POST", "/api/v3/order", params, signed=True, weight=1,
                                           idempotent=False, order=True)
        except (BinanceTransportError, BinanceServerError, BinanceParseError) as exc:
            return await self._recover_order(req, params, exc)
        except BinanceDuplicateOrder:
            log.warning("binance: client order id %s already in use; returning that order", cid)
            return await self.fetch_order(req.symbol, cid)
        try:
            return parse_order(data, req.symbol, exchange=self.name)
        except BinanceParseError as exc:
            # Accepted, but the answer is not what we can read: the order exists, so never fail as if it did
            # not; look it up (the look-up is not re-sent while it is there) and if that cannot be read either,
            # BinanceOrderStatusUnknown names the client order id and the field.
            return await self._recover_order(req, params, exc, accepted=True)

    async def _recover_order(self, req: OrderRequest, params: dict[str, str], cause: BinanceError, *,
                             accepted: bool = False) -> Order:
        """The answer to a POST was lost (or unreadable, ``accepted``): look the order up by client order id;
        never re-send blindly, and never re-send an order Binance accepted."""
        cid = req.client_order_id
        attempts = int(self.config["order_lookup_attempts"])
        interval = float(self.config["order_lookup_interval_seconds"])
        log.warning("binance: order %s outcome unknown (%s); looking it up by client order id", cid, cause)
        absent = 0
        for i in range(attempts):
            if i:
                await asyncio.sleep(interval)
            try:
                return await self.fetch_order(req.symbol, cid)
            except BinanceUnknownOrder:
                absent += 1
            except (BinanceTransportError, BinanceServerError, BinanceParseError) as exc:
                log.info("binance: look-up of %s failed (%s)", cid, exc)
        if absent == attempts and self.config["resend_after_lookup"] and not accepted:
            log.warning("binance: order %s does not exist after %d look-ups; sending it once more (same client "
                        "order id, so Binance refuses a duplicate of an open order)", cid, attempts)
            try:
                data = await self.rest.request("POST", "/api/v3/order", params, signed=True, weight=1,
                                               idempotent=False, order=True)
                return parse_order(data, req.symbol, exchange=self.name)
            except BinanceDuplicateOrder:
                return await self.fetch_order(req.symbol, cid)
            except (BinanceTransportError, BinanceServerError, BinanceParseError) as exc:
                cause = exc
        raise BinanceOrderStatusUnknown(
            f"binance: order {cid} on {self.market_of(req.symbol)}: outcome unknown after {attempts} look-ups "
            f"({cause}); not re-sent", client_order_id=cid, endpoint="/api/v3/order")

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
        sim = self._private_sim()
        if sim is not None:
            return await self._sim_call(sim.cancel_order(symbol, order_id))
        try:
            data = await self.rest.request("DELETE", "/api/v3/order", self._id_params(symbol, order_id),
                                           signed=True, weight=1)
        except BinanceUnknownOrder:
            order = await self.fetch_order(symbol, order_id)
            if order.status in (OrderStatus.CANCELED, OrderStatus.FILLED, OrderStatus.REJECTED):
                return order
            raise
        return parse_order(data, symbol, exchange=self.name)

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        sim = self._private_sim()
        if sim is not None:
            return await self._sim_call(sim.fetch_open_orders(symbol))
        params = {"symbol": self.market_of(symbol)} if symbol else {}
        rows = await self.rest.request("GET", "/api/v3/openOrders", params, signed=True,
                                       weight=6 if symbol else 80)
        return [parse_order(r, symbol or self.symbol_of(r["symbol"]), exchange=self.name) for r in rows]

    async def fetch_order(self, symbol: str, order_id: str) -> Order:
        sim = self._private_sim()
        if sim is not None:
            return await self._sim_call(sim.fetch_order(symbol, order_id))
        data = await self.rest.request("GET", "/api/v3/order", self._id_params(symbol, order_id), signed=True,
                                       weight=4)
        return parse_order(data, symbol, exchange=self.name)

    # ---------------------------------------------------------------------------------- health, metrics
    @hookimpl
    def arbframe_register_metrics(self, registry: Any, context: Any) -> None:
        from arbframe import ExchangeMetrics  # shared, registry-scoped families

        ExchangeMetrics.get(registry)

    @hookimpl
    def arbframe_health_checks(self, config: Any, context: Any) -> list[HealthCheck]:
        timeout = float(self.config["health_timeout_seconds"])
        return [HealthCheck("binance", self.health_probe, timeout_seconds=timeout * 2 + 0.5)]

    async def health_probe(self) -> HealthResult:
        """Reachability and clock offset (``GET /api/v3/time``) and, with keys, one authenticated read-only call
        (``GET /api/v3/account``). Uses its own short-lived session, so it works from any event loop."""
        if not self.enabled:
            return HealthResult("binance", HealthStatus.DISABLED, "disabled in config")
        if self.mock:
            return HealthResult("binance", HealthStatus.OK, "mock mode: simulated market and account",
                                {"simulated": True})
        cfg = self.config
        details: dict[str, Any] = {"base_url": cfg["base_url"], "api_key": mask_secret(self._api_key),
                                   "private": "binance" if self.live_private else "simulated"}
        banned = self.rest.banned_until - time.monotonic()
        if banned > 0:
            details["banned_for_seconds"] = round(banned)
            return HealthResult("binance", HealthStatus.ERROR, f"IP banned by Binance (HTTP 418) for another "
                                f"{banned:.0f}s", details)
        timeout = float(cfg["health_timeout_seconds"])
        probe = BinanceRest(self._rest_settings(timeout=timeout, retries=0), api_key=self._api_key,
                            api_secret=self._api_secret, live=True,
                            limiter=RateLimiter(requests_per_second=float(cfg["rate_limit"])),
                            exchange=self.name)
        try:
            started = time.perf_counter()
            offset = await probe.sync_time()
            details["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
            details["clock_offset_ms"] = round(offset * 1000, 1)
            if self.metrics is not None:
                self.metrics.clock_offset_seconds.labels(self.name).set(offset)
            clock_note = f"clock offset {offset * 1000:+.0f} ms"
            warn_clock = abs(offset * 1000) > float(cfg["clock_offset_warn_ms"])
            if not self.has_credentials:
                return HealthResult("binance", HealthStatus.WARN,
                                    f"reachable ({details['latency_ms']} ms, {clock_note}); no API keys: private "
                                    "calls use a simulated account", details)
            account = await probe.request("GET", "/api/v3/account", {"omitZeroBalances": "true"}, signed=True,
                                          weight=20)
            details["authenticated"] = True
            details["can_trade"] = bool(account.get("canTrade", False))
            details["assets"] = len(account.get("balances", ()))
            status = HealthStatus.WARN if warn_clock or not details["can_trade"] else HealthStatus.OK
            extra = "" if details["can_trade"] else "; the key cannot trade"
            return HealthResult("binance", status,
                                f"reachable ({details['latency_ms']} ms, {clock_note}), authenticated with key "
                                f"{mask_secret(self._api_key)}{extra}", details)
        except BinanceError as exc:
            details["error"] = type(exc).__name__
            return HealthResult("binance", HealthStatus.ERROR, str(exc), details)
        except Exception as exc:  # a health probe reports, never raises
            return HealthResult("binance", HealthStatus.ERROR, f"{type(exc).__name__}: {exc}", details)
        finally:
            with contextlib.suppress(Exception):
                await probe.close()
