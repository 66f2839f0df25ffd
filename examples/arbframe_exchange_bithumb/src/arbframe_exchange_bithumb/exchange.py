"""The ``bithumb`` exchange driver (entry point ``arbframe.exchange: bithumb``), built on arbframe's venue blocks.

Market data: Bithumb's public REST order book (``GET /public/orderbook/BTC_KRW?count=N`` answers
``{"status": "0000", "data": {"timestamp", "bids": [{"price", "quantity"}], "asks": [...]}}``; any other
``status`` is an error), or the kernel's simulated market (``market_data: simulated``, or ``auto`` in mock mode).
Balances and orders always go to a simulated account (paper trading): this example has no private API, so
``mode: live`` refuses to start. :class:`arbframe.VenueHttp` does the rate limiting, retries, metrics and HTTP
error kinds; :class:`arbframe.VenueRouting` the simulated parts; the schema holds every default.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

from arbframe import (
    BookLevel,
    ConfigError,
    Exchange,
    ExchangeError,
    HealthCheck,
    HealthResult,
    HealthStatus,
    HttpAnswer,
    InvalidRequest,
    MarketRules,
    Order,
    OrderBook,
    OrderRequest,
    PluginContext,
    ProtocolError,
    Quota,
    RateLimits,
    RetryPolicy,
    VenueHttp,
    VenueMetrics,
    VenueRouting,
    VenueUnavailable,
    configured_symbols,
    hookimpl,
    mask_url,
    paper_balances,
    schema_defaults,
)

__all__ = ["DEFAULT_PRICE_UNITS", "SCHEMA", "BithumbExchange", "classify", "parse_orderbook"]

log = logging.getLogger("arbframe.bithumb")
QUOTE = "KRW"
QTY_STEP = Decimal("0.00000001")
#: KRW price units (lower bound of the band, unit), highest first; ``bithumb.price_units`` overrides them
DEFAULT_PRICE_UNITS: tuple[tuple[str, str], ...] = (
    ("1000000", "1000"), ("500000", "500"), ("100000", "100"), ("50000", "50"), ("10000", "10"), ("5000", "5"),
    ("1000", "1"), ("100", "0.1"), ("10", "0.01"), ("1", "0.001"), ("0", "0.0001"),
)
#: Bithumb's public API allows 135 requests per second per IP
LIMITS = RateLimits(quotas=(Quota("requests", 135, 1.0, safety=0.9),), default_cost={"requests": 1})
_POSITIVE = {"type": "number", "exclusiveMinimum": 0}
SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "description": "Bithumb connector (arbframe-exchange-bithumb, an example plugin)",
    "properties": {
        "enabled": {"type": "boolean", "default": True},
        "market_data": {"enum": ["auto", "simulated", "rest"], "default": "auto",
                        "description": "auto: the simulated market when mock_mode is true, Bithumb's REST otherwise"},
        "base_url": {"type": "string", "pattern": "^https?://", "default": "https://api.bithumb.com"},
        "timeout_seconds": {**_POSITIVE, "default": 3.0, "description": "bound on one REST request"},
        "max_retries": {"type": "integer", "minimum": 0, "default": 2, "description": "retries of a failed read"},
        "fee_rate": {"type": "number", "minimum": 0, "maximum": 0.05, "default": 0.0004,
                     "description": "taker fee as a fraction"},
        "min_order_krw": {"type": "number", "minimum": 0, "default": 5000},
        "price_units": {"type": ["array", "null"], "default": None,
                        "description": "KRW price units [[lower_bound, unit], ...] (default: the built-in table)",
                        "items": {"type": "array", "minItems": 2, "maxItems": 2,
                                  "items": {"type": ["number", "string"]}}},
        "symbols": {"type": "array", "items": {"type": "string"}, "description": "default: arbitrage.symbols"},
        "simulated_balances": {"type": "object", "additionalProperties": {"type": ["number", "string"]},
                               "default": {"KRW": 10000000}, "description": "wallet of the simulated account"},
        "health_symbol": {"type": "string", "minLength": 1, "default": "BTC"},
        "health_timeout_seconds": {**_POSITIVE, "default": 3.0},
    },
}


def classify(answer: HttpAnswer) -> ExchangeError | None:
    """Bithumb's ``{"status": "5500", "message": ...}`` bodies as error kinds (``0000`` is success)."""
    try:
        body = answer.json()
    except ProtocolError:
        body = None
    code = str(body.get("status", "")) if isinstance(body, dict) else ""
    if answer.status < 400 and code in ("", "0000"):
        return None
    message = body.get("message", "") if isinstance(body, dict) else ""
    text = f"bithumb {answer.endpoint}: HTTP {answer.status} {code} {message}".rstrip()
    # 5600 (notice: maintenance, overload) and 59xx (unknown error) are the venue's own trouble
    kind = VenueUnavailable if answer.status >= 500 or code == "5600" or code.startswith("59") else InvalidRequest
    return kind(text, code=code or None)


def _dec(value: Any, what: str) -> Decimal:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ProtocolError(f"bithumb: {what} is not a number: {value!r}") from None
    if not number.is_finite():
        raise ProtocolError(f"bithumb: {what} is not finite: {value!r}")
    return number


def _levels(raw: Any, side: str, depth: int) -> tuple[BookLevel, ...]:
    if not isinstance(raw, list) or not all(isinstance(e, Mapping) for e in raw):
        raise ProtocolError(f"bithumb: order book {side} is not a list of objects")
    merged: dict[Decimal, Decimal] = {}
    for entry in raw:
        price, qty = _dec(entry.get("price"), f"{side} price"), _dec(entry.get("quantity"), f"{side} quantity")
        if price > 0 and qty > 0:
            merged[price] = merged.get(price, Decimal(0)) + qty
    return tuple(BookLevel(p, merged[p]) for p in sorted(merged, reverse=(side == "bids"))[:depth])


def parse_orderbook(payload: Mapping[str, Any], symbol: str, depth: int, *, exchange: str = "bithumb") -> OrderBook:
    """An :class:`arbframe.OrderBook` from the ``/public/orderbook`` answer (levels sorted and merged)."""
    data = payload.get("data")
    if not isinstance(data, Mapping):
        raise ProtocolError("bithumb: order book answer has no 'data' object")
    try:
        ts = datetime.fromtimestamp(int(data["timestamp"]) / 1000, tz=timezone.utc)
    except (KeyError, TypeError, ValueError):
        raise ProtocolError(f"bithumb: bad order book timestamp {data.get('timestamp')!r}") from None
    return OrderBook(exchange, symbol, _levels(data.get("bids"), "bids", depth),
                     _levels(data.get("asks"), "asks", depth), ts)


class BithumbExchange(Exchange):
    """Bithumb KRW markets: public order books over REST, orders on a simulated account."""

    name: ClassVar[str] = "bithumb"
    quote_currency: ClassVar[str] = QUOTE
    api_version: ClassVar[int] = 1  # the kernel plugin API this driver is written for
    fee_rate: Decimal = Decimal(0)  # type: ignore[assignment]  # plain attributes, set from config
    simulated: bool = False  # type: ignore[assignment]

    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        return SCHEMA

    def __init__(self, section: Mapping[str, Any] | None = None, context: PluginContext | None = None) -> None:
        self.config = cfg = schema_defaults(SCHEMA, section)
        if context is not None and context.mode == "live":
            raise ConfigError("bithumb: the example Bithumb connector has no private API and trades on a simulated "
                              "account only; it cannot run with mode: live (use mode: paper)")
        mock = bool(context.mock) if context is not None else False
        self.simulated = cfg["market_data"] == "simulated" or (cfg["market_data"] == "auto" and mock)
        self.fee_rate = Decimal(str(cfg["fee_rate"]))
        units = cfg["price_units"] or DEFAULT_PRICE_UNITS
        self._units = sorted(((Decimal(str(lo)), Decimal(str(u))) for lo, u in units), reverse=True)
        self.base_url = str(cfg["base_url"])
        self.metrics = VenueMetrics(self.name, context.registry if context is not None else None)
        self.http = VenueHttp(self.name, self.base_url, limits=LIMITS, metrics=self.metrics, classify=classify,
                              timeout=float(cfg["timeout_seconds"]), retry=RetryPolicy(attempts=1 + cfg["max_retries"]),
                              transport="urllib", user_agent="arbframe-exchange-bithumb/0.2")  # stdlib only
        self._books: dict[str, OrderBook] = {}
        self.routing = VenueRouting(
            self.name, context=context, quote_currency=QUOTE, fee_rate=self.fee_rate,
            balances=paper_balances(self.name, context, cfg) or {}, api_key=None, api_secret=None,
            base_url=mask_url(self.base_url), symbols=configured_symbols(cfg, context), last_book=self._books.get,
            rules=self.market_rules, log=log)
        log.info("bithumb: market data from %s, orders on a simulated account",
                 "the simulated market" if self.simulated else mask_url(self.base_url))

    def describe(self) -> str:
        source = "SimulatedMarket" if self.simulated else mask_url(self.base_url)
        return f"BithumbExchange(market data: {source}, private: simulated account)"

    # ------------------------------------------------------------------------------------------- hooks
    @hookimpl
    def arbframe_register_metrics(self, registry: Any, context: PluginContext) -> None:
        self.metrics.bind(registry)

    @hookimpl
    def arbframe_health_checks(self, config: Mapping[str, Any], context: PluginContext) -> list[HealthCheck]:
        return [HealthCheck(self.name, self.health_probe, float(self.config["health_timeout_seconds"]))]

    async def health_probe(self) -> HealthResult:
        if self.simulated:
            return HealthResult(self.name, HealthStatus.OK, "simulated market (mock mode)",
                                {"market_data": "simulated"})
        url = mask_url(self.base_url)
        symbol = str(self.config["health_symbol"]).upper()
        try:
            book = await self.fetch_order_book(symbol, 1)
        except ExchangeError as exc:
            return HealthResult(self.name, HealthStatus.ERROR, f"Cannot read {url}: {exc}", {"url": url})
        return HealthResult(self.name, HealthStatus.OK, f"{symbol}/KRW bid {book.best_bid} ask {book.best_ask} from "
                            f"{url}", {"url": url})

    # ------------------------------------------------------------------------------------ market data
    async def close(self) -> None:
        await self.http.close()

    async def fetch_order_book(self, symbol: str, depth: int = 15) -> OrderBook:
        symbol = symbol.upper()
        if self.simulated:
            return await self.routing.simulated_exchange().fetch_order_book(symbol, depth)
        payload = await self.http.json("GET", f"/public/orderbook/{symbol}_{QUOTE}", endpoint="orderbook",
                                       params={"count": max(1, depth)})
        try:
            book = self._books[symbol] = parse_orderbook(payload, symbol, depth, exchange=self.name)
        except ProtocolError as exc:
            self.metrics.error(exc)
            raise
        return book

    def market_rules(self, symbol: str) -> MarketRules:
        return MarketRules(symbol=symbol, tick_size=None, step_size=QTY_STEP, min_qty=QTY_STEP,
                           min_notional=Decimal(str(self.config["min_order_krw"])))

    def price_step(self, symbol: str, price: Decimal) -> Decimal:
        return next((unit for lower, unit in self._units if price >= lower), self._units[-1][1])

    # ------------------------------------------------------- private: a simulated account (paper trading)
    def _private(self) -> Any:
        return self.routing.simulated_exchange() if self.simulated else self.routing.simulated_account()

    async def fetch_balances(self) -> dict[str, Decimal]:
        return await self._private().fetch_balances()

    async def place_order(self, request: OrderRequest) -> Order:
        if not self.simulated:
            await self.fetch_order_book(request.symbol, depth=15)  # fill against a fresh book
        return await self._private().place_order(request)

    async def cancel_order(self, symbol: str, order_id: str) -> Order:
        return await self._private().cancel_order(symbol, order_id)

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        return await self._private().fetch_open_orders(symbol)

    async def fetch_order(self, symbol: str, order_id: str) -> Order:
        return await self._private().fetch_order(symbol, order_id)
