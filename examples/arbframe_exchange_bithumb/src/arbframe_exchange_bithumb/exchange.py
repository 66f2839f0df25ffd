"""The ``bithumb`` exchange driver (entry point ``arbframe.exchange: bithumb``).

Where each call goes:

====================================  ===================================  ======================================
situation                             market data                          balances / orders
====================================  ===================================  ======================================
``market_data: simulated``, or        the kernel's ``SimulatedMarket``     the same ``SimulatedExchange``'s
``auto`` with ``mock_mode: true``     (``context.market``)                 simulated account
``market_data: rest``, or             Bithumb public REST order book       a ``SimulatedAccount`` filled against
``auto`` with ``mock_mode: false``    (``base_url``)                       the last book fetched
====================================  ===================================  ======================================

This example never sends an order to Bithumb: it has no private API, so ``mode: live`` refuses to start with a
clear message (a selected driver that cannot work stops the service before the first tick).

It shows everything a plugin contributes: the config section schema (``config_schema``), a health check and
metrics through hooks implemented as methods (the kernel registers the driver instance with its plugin manager
after building it), and the declared plugin API version.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar

from arbframe import (
    ConfigError,
    Exchange,
    ExchangeMetrics,
    HealthCheck,
    HealthResult,
    HealthStatus,
    MarketRules,
    Order,
    OrderBook,
    OrderRequest,
    PluginContext,
    SimulatedAccount,
    SimulatedExchange,
    SimulatedMarket,
    hookimpl,
    mask_url,
)

from .client import QUOTE, BithumbError, PublicClient

__all__ = ["DEFAULTS", "DEFAULT_PRICE_UNITS", "BithumbExchange"]

log = logging.getLogger("arbframe.bithumb")

#: KRW price units, (lower bound of the price band, unit), highest band first. The defaults follow the venue's
#: published table at the time of writing; override them with ``bithumb.price_units`` when it changes.
DEFAULT_PRICE_UNITS: tuple[tuple[str, str], ...] = (
    ("1000000", "1000"),
    ("500000", "500"),
    ("100000", "100"),
    ("50000", "50"),
    ("10000", "10"),
    ("5000", "5"),
    ("1000", "1"),
    ("100", "0.1"),
    ("10", "0.01"),
    ("1", "0.001"),
    ("0", "0.0001"),
)
QTY_STEP = Decimal("0.00000001")

DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "market_data": "auto",
    "base_url": "https://api.bithumb.com",
    "timeout_seconds": 3.0,
    "fee_rate": 0.0004,
    "min_order_krw": 5000,
    "price_units": None,
    "simulated_balances": {"KRW": 10000000},
    "health_symbol": "BTC",
    "health_timeout_seconds": 3.0,
}


class BithumbExchange(Exchange):
    """Bithumb KRW markets: public order books over REST, orders on a simulated account."""

    name: ClassVar[str] = "bithumb"
    quote_currency: ClassVar[str] = QUOTE
    #: the kernel plugin API this driver is written for (checked when the kernel loads it)
    api_version: ClassVar[int] = 1

    # ------------------------------------------------------------------------------------------- config
    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        """The ``bithumb:`` config section; the kernel validates it before building the driver."""
        positive = {"type": "number", "exclusiveMinimum": 0}
        return {
            "type": "object",
            "description": "Bithumb connector (arbframe-exchange-bithumb, an example plugin)",
            "additionalProperties": False,
            "properties": {
                "enabled": {"type": "boolean", "default": True},
                "market_data": {
                    "enum": ["auto", "simulated", "rest"],
                    "default": "auto",
                    "description": "auto: the simulated market when mock_mode is true, Bithumb's REST API otherwise",
                },
                "base_url": {"type": "string", "pattern": "^https?://", "default": DEFAULTS["base_url"]},
                "timeout_seconds": {**positive, "default": 3.0, "description": "bound on one REST request"},
                "fee_rate": {"type": "number", "minimum": 0, "maximum": 0.05, "default": 0.0004,
                             "description": "taker fee as a fraction"},
                "min_order_krw": {"type": "number", "minimum": 0, "default": 5000},
                "price_units": {
                    "type": ["array", "null"],
                    "description": "KRW price units [[lower_bound, unit], ...] (default: the built-in table)",
                    "items": {"type": "array", "minItems": 2, "maxItems": 2,
                              "items": {"type": ["number", "string"]}},
                },
                "simulated_balances": {"type": "object", "additionalProperties": {"type": ["number", "string"]},
                                       "description": "wallet of the simulated account"},
                "health_symbol": {"type": "string", "minLength": 1, "default": "BTC"},
                "health_timeout_seconds": {**positive, "default": 3.0},
            },
        }

    # -------------------------------------------------------------------------------------------- build
    def __init__(self, section: Mapping[str, Any] | None = None, context: PluginContext | None = None) -> None:
        cfg = {**DEFAULTS, **{k: v for k, v in (section or {}).items() if v is not None}}
        self.config = cfg
        self.context = context
        mode = context.mode if context is not None else "paper"
        if mode == "live":
            raise ConfigError(
                "bithumb: the example Bithumb connector has no private API and trades on a simulated account "
                "only; it cannot run with mode: live (use mode: paper)"
            )
        choice = str(cfg["market_data"])
        mock = bool(context.mock) if context is not None else False
        self._simulated = choice == "simulated" or (choice == "auto" and mock)
        self._fee_rate = Decimal(str(cfg["fee_rate"]))
        self.min_order_krw = Decimal(str(cfg["min_order_krw"]))
        units = cfg["price_units"] or DEFAULT_PRICE_UNITS
        self._units = sorted(((Decimal(str(lo)), Decimal(str(unit))) for lo, unit in units), reverse=True)
        self.base_url = str(cfg["base_url"])
        self._metrics: ExchangeMetrics | None = None
        self.client = PublicClient(self.base_url, timeout=float(cfg["timeout_seconds"]), observer=self._observe)
        self._books: dict[str, OrderBook] = {}
        self._sim: SimulatedExchange | None = None
        self._account: SimulatedAccount | None = None
        if context is not None and context.registry is not None:
            # the kernel also calls arbframe_register_metrics once the instance is registered; doing it here
            # too makes a driver built by hand (tests) count into the same registry
            self._metrics = ExchangeMetrics.get(context.registry)
        log.info("bithumb: market data from %s, orders on a simulated account",
                 "the simulated market" if self._simulated else mask_url(self.base_url))

    @property
    def fee_rate(self) -> Decimal:
        return self._fee_rate

    @property
    def simulated(self) -> bool:
        return self._simulated

    def describe(self) -> str:
        source = "SimulatedMarket" if self._simulated else mask_url(self.base_url)
        return f"BithumbExchange(market data: {source}, private: simulated account)"

    # ------------------------------------------------------------------------------------------- hooks
    @hookimpl
    def arbframe_register_metrics(self, registry: Any, context: PluginContext) -> None:
        """Count requests, latency and errors in the kernel's shared exchange families (label exchange=bithumb)."""
        self._metrics = ExchangeMetrics.get(registry)

    @hookimpl
    def arbframe_health_checks(self, config: Mapping[str, Any], context: PluginContext) -> list[HealthCheck]:
        """One bounded probe: the health symbol's order book answers (or the simulated market is in use)."""
        return [HealthCheck(self.name, self.health_probe,
                            timeout_seconds=float(self.config["health_timeout_seconds"]))]

    async def health_probe(self) -> HealthResult:
        symbol = str(self.config["health_symbol"]).upper()
        if self._simulated:
            return HealthResult(self.name, HealthStatus.OK, "simulated market (mock mode)",
                                {"market_data": "simulated"})
        started = time.perf_counter()
        try:
            book = await self.client.orderbook(symbol, 1, exchange=self.name)
        except BithumbError as exc:
            return HealthResult(self.name, HealthStatus.ERROR, f"Cannot read {mask_url(self.base_url)}: {exc}",
                                {"url": mask_url(self.base_url)})
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        return HealthResult(
            self.name, HealthStatus.OK,
            f"{symbol}/KRW bid {book.best_bid} ask {book.best_ask} from {mask_url(self.base_url)}",
            {"url": mask_url(self.base_url), "latency_ms": latency_ms},
        )

    def _observe(self, endpoint: str, status: str, seconds: float) -> None:
        m = self._metrics
        if m is None:
            return
        m.requests.labels(exchange=self.name, endpoint=endpoint, status=status).inc()
        m.request_seconds.labels(exchange=self.name, endpoint=endpoint).observe(seconds)

    def _count_error(self, exc: BithumbError) -> None:
        if self._metrics is not None:
            self._metrics.errors.labels(exchange=self.name, kind=exc.kind).inc()

    # ----------------------------------------------------------------------------------- simulated parts
    def _simulated_exchange(self) -> SimulatedExchange:
        if self._sim is None:
            market = getattr(self.context, "market", None)
            if market is None:  # no runner around (tests, scripts): a world of our own
                market = SimulatedMarket(("BTC", "ETH"))
                if self.context is not None:
                    self.context.market = market
            self._sim = SimulatedExchange(self.name, market, quote_currency=QUOTE, fee_rate=self._fee_rate,
                                          balances=self.config["simulated_balances"])
        return self._sim

    def _simulated_account(self) -> SimulatedAccount:
        if self._account is None:
            def last_book(symbol: str) -> OrderBook:
                book = self._books.get(symbol)
                if book is None:
                    raise ValueError(f"bithumb: no order book for {symbol} fetched yet")
                return book

            self._account = SimulatedAccount(self.name, QUOTE, self.config["simulated_balances"], self._fee_rate,
                                             last_book, rules=self.market_rules)
        return self._account

    def _private(self) -> Any:
        return self._simulated_exchange() if self._simulated else self._simulated_account()

    # -------------------------------------------------------------------------------------- lifecycle
    async def connect(self) -> None:
        if self._simulated:
            self._simulated_exchange()

    async def close(self) -> None:
        """Nothing stays open between requests; safe to call twice."""

    # ------------------------------------------------------------------------------------ market data
    async def fetch_order_book(self, symbol: str, depth: int = 15) -> OrderBook:
        symbol = symbol.upper()
        if self._simulated:
            return await self._simulated_exchange().fetch_order_book(symbol, depth)
        try:
            book = await self.client.orderbook(symbol, depth, exchange=self.name)
        except BithumbError as exc:
            self._count_error(exc)
            raise
        self._books[symbol] = book
        return book

    # ----------------------------------------------------------------------------------------- private
    async def fetch_balances(self) -> dict[str, Decimal]:
        return await self._private().fetch_balances()

    async def place_order(self, request: OrderRequest) -> Order:
        if not self._simulated:
            await self.fetch_order_book(request.symbol, depth=15)  # fill against a fresh book
        return await self._private().place_order(request)

    async def cancel_order(self, symbol: str, order_id: str) -> Order:
        return await self._private().cancel_order(symbol, order_id)

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        return await self._private().fetch_open_orders(symbol)

    async def fetch_order(self, symbol: str, order_id: str) -> Order:
        return await self._private().fetch_order(symbol, order_id)

    # ------------------------------------------------------------------------------------------- rules
    def market_rules(self, symbol: str) -> MarketRules:
        return MarketRules(symbol=symbol, tick_size=None, step_size=QTY_STEP, min_qty=QTY_STEP,
                           min_notional=self.min_order_krw)

    def price_step(self, symbol: str, price: Decimal) -> Decimal:
        for lower, unit in self._units:
            if price >= lower:
                return unit
        return self._units[-1][1]
