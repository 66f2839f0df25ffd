"""The simulated market that mock mode, ``make run`` and the tests trade against.

One seeded world that every venue quotes from, so a kimchi premium seen on the simulated Upbit against the
simulated Binance is the premium the world holds. Everything it makes (books, FX rates, orders) has
``simulated=True``.

Public API (exchange plugins use these in mock mode; import them from :mod:`arbframe`):

``SimulatedMarket(symbols=("BTC", "ETH"), *, seed=42, venues=None, start=None, tick_seconds=1.0, usdkrw=1380,
base_prices=None, premium_mean=0.02, premium_sigma=0.002, premium_reversion=0.02, excursion_prob=0.01,
excursion_min=0.015, excursion_max=0.04, excursion_up_prob=0.7, tether_mean=0.003, spread_bps=2,
level_gap_bps=1, level_notional_usd=30000, depth=15)``
    ``venues`` maps venue name -> quote currency (default ``{"upbit": "KRW", "binance": "USDT"}``).
    ``.step(now=None)`` advances one tick (``now`` defaults to the previous time + ``tick_seconds``).
    ``.order_book(exchange, symbol, depth=15) -> OrderBook``: a KRW book on KRW venues (Upbit's KRW price-unit
    table, :func:`krw_price_unit`), a USDT book with tick and lot sizes on USDT venues (:meth:`rules`).
    ``order_book(<KRW venue>, "USDT")`` is the KRW-USDT market (tether premium).
    ``.fx_rate() -> FxRate`` (USD/KRW, source ``"simulated"``), ``.quote_currency(exchange)``,
    ``.rules(exchange, symbol) -> MarketRules``, ``.add_venue(name, quote_currency)``, ``.now``,
    ``.premium(symbol)``, ``.tether_premium()``, ``.usd_price(symbol)``, ``.set_state(symbol, usd_price=...,
    premium=...)`` and ``.set_fx(rate)`` for scripted tests.
    Books are a pure function of (seed, tick, venue, symbol): the same seed gives the same books in any call
    order; books are cached within a tick.

``SimulatedAccount(exchange, quote_currency, balances, fee_rate, book_source, *, rules=None, ids=None)``
    A paper wallet and order simulator for one venue's private API. ``book_source`` is a callable
    ``(symbol) -> OrderBook`` or a :class:`SimulatedMarket` (its book for ``exchange`` is used). Async methods:
    ``fetch_balances()``, ``place_order(OrderRequest) -> Order`` (market orders walk the book, market buys may be
    sized by ``quote_amount``; limit orders fill their marketable part and rest otherwise, with funds reserved),
    ``cancel_order(symbol, order_id)``, ``fetch_open_orders(symbol=None)``, ``fetch_order(symbol, order_id)``.
    Resting orders are matched against the current book whenever the account is queried. Invalid orders raise
    :class:`arbframe.OrderRejected` (a ``ValueError``), :class:`arbframe.InsufficientFunds` (one of those) when the
    wallet cannot pay, and an unknown order id :class:`arbframe.UnknownOrder` (a ``KeyError``).

``SimulatedExchange(name, market, *, quote_currency=None, fee_rate=Decimal("0.001"), balances=None, rules=None)``
    A complete :class:`arbframe.Exchange` over the two above; ``SimulatedExchange.for_venue(...)`` is the same
    with the arguments by keyword and accepts plain numbers/strings. Exchange plugins delegate to it in mock mode.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import ROUND_DOWN, Decimal
from typing import Any

from arbframe.core.errors import InsufficientFunds, OrderRejected, UnknownOrder
from arbframe.core.models import (
    ZERO,
    BookLevel,
    FxRate,
    IdGenerator,
    MarketRules,
    Order,
    OrderBook,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    utcnow,
)
from arbframe.kernel.hookspecs import hookimpl
from arbframe.kernel.interfaces import Exchange, FxSource, HealthCheck, HealthResult, HealthStatus
from arbframe.trading.paper import InsufficientLiquidity, PaperWallet, walk_book

DEFAULT_VENUES = {"upbit": "KRW", "binance": "USDT"}
DEFAULT_BASE_PRICES = {"BTC": 95000.0, "ETH": 3500.0, "XRP": 2.2, "SOL": 180.0}

# Upbit KRW market price units (in force since 2025-07-31): (lower bound of the band, price unit).
_KRW_UNITS: tuple[tuple[Decimal, Decimal], ...] = tuple(
    (Decimal(lo), Decimal(unit))
    for lo, unit in (
        ("1000000", "1000"),
        ("500000", "500"),
        ("100000", "100"),
        ("50000", "50"),
        ("10000", "10"),
        ("5000", "5"),
        ("100", "1"),
        ("10", "0.1"),
        ("1", "0.01"),
        ("0.1", "0.001"),
        ("0.01", "0.0001"),
        ("0.001", "0.00001"),
        ("0.0001", "0.000001"),
        ("0.00001", "0.0000001"),
    )
)
_KRW_UNIT_FLOOR = Decimal("0.00000001")
# KRW-USDT / KRW-USDC use 0.5 KRW in the 1,000-10,000 band (Upbit notice of 2025-03-21).
_STABLE_UNIT = Decimal("0.5")
_STABLECOINS = frozenset({"USDT", "USDC"})
_UPBIT_QTY_STEP = Decimal("0.00000001")
KRW_MIN_NOTIONAL = Decimal("5000")
USDT_MIN_NOTIONAL = Decimal("5")


def krw_price_unit(price: Decimal, symbol: str | None = None) -> Decimal:
    """Upbit's KRW-market price unit at ``price`` (the stablecoin band override applies to USDT/USDC)."""
    if symbol in _STABLECOINS and Decimal(1000) <= price < Decimal(10000):
        return _STABLE_UNIT
    for lower, unit in _KRW_UNITS:
        if price >= lower:
            return unit
    return _KRW_UNIT_FLOOR


def _pow10(exp: int) -> Decimal:
    return Decimal(1).scaleb(exp)


def usdt_rules(symbol: str, price: float) -> MarketRules:
    """Binance-like filters for a USDT market at ``price``: tick ~1e-6 of the price, lot worth ~0.1-1 USDT."""
    mag = math.floor(math.log10(price)) if price > 0 else 0
    tick = _pow10(max(mag - 6, -8))
    step = _pow10(min(max(-mag - 1, -8), 0))
    return MarketRules(symbol=symbol, tick_size=tick, step_size=step, min_qty=step, min_notional=USDT_MIN_NOTIONAL)


def _stable_seed(*parts: object) -> int:
    return zlib.crc32(":".join(str(p) for p in parts).encode())


class SimulatedMarket:
    """A seeded world: USD prices, USD/KRW, a kimchi premium per symbol and a tether premium (see module doc)."""

    def __init__(
        self,
        symbols: Sequence[str] = ("BTC", "ETH"),
        *,
        seed: int = 42,
        venues: Mapping[str, str] | None = None,
        start: datetime | None = None,
        tick_seconds: float = 1.0,
        usdkrw: float = 1380.0,
        base_prices: Mapping[str, float] | None = None,
        premium_mean: float = 0.02,
        premium_sigma: float = 0.002,
        premium_reversion: float = 0.02,
        excursion_prob: float = 0.01,
        excursion_min: float = 0.015,
        excursion_max: float = 0.04,
        excursion_up_prob: float = 0.7,
        tether_mean: float = 0.003,
        price_sigma: float = 0.0004,
        fx_sigma: float = 0.00005,
        spread_bps: float = 2.0,
        level_gap_bps: float = 1.0,
        level_notional_usd: float = 30000.0,
        depth: int = 15,
    ) -> None:
        self.symbols = [s.upper() for s in symbols]
        self.seed = seed
        self.venues: dict[str, str] = dict(venues or DEFAULT_VENUES)
        self.tick_seconds = float(tick_seconds)
        self.now: datetime = (start or utcnow()).astimezone(timezone.utc)
        self.tick = 0
        self._rng = random.Random(seed)
        self._ids = IdGenerator(seed)
        self.premium_mean = premium_mean
        self.premium_sigma = premium_sigma
        self.premium_reversion = premium_reversion
        self.excursion_prob = excursion_prob
        self.excursion_min = excursion_min
        self.excursion_max = excursion_max
        self.excursion_up_prob = excursion_up_prob
        self.tether_mean = tether_mean
        self.price_sigma = price_sigma
        self.fx_sigma = fx_sigma
        self.spread_bps = spread_bps
        self.level_gap_bps = level_gap_bps
        self.level_notional_usd = level_notional_usd
        self.depth = depth
        self._usdkrw0 = float(usdkrw)
        self._usdkrw = float(usdkrw)
        self._tether = tether_mean
        prices = dict(DEFAULT_BASE_PRICES)
        prices.update({k.upper(): float(v) for k, v in (base_prices or {}).items()})
        self._price: dict[str, float] = {}
        self._premium: dict[str, float] = {}
        for sym in self.symbols:
            self._price[sym] = prices.get(sym) or 1.0 + (_stable_seed(sym) % 10000) / 100.0
            self._premium[sym] = premium_mean
        self._books: dict[tuple[str, str, int], OrderBook] = {}
        self._fx: FxRate | None = None
        self._rules: dict[tuple[str, str], MarketRules] = {}

    # ----------------------------------------------------------------------------------------- configuration
    def add_venue(self, name: str, quote_currency: str) -> None:
        self.venues[name] = quote_currency.upper()

    def quote_currency(self, exchange: str) -> str:
        try:
            return self.venues[exchange]
        except KeyError:
            raise KeyError(f"simulated market has no venue {exchange!r} (venues: {sorted(self.venues)})") from None

    def _check_symbol(self, symbol: str) -> None:
        if symbol not in self._price:
            raise KeyError(f"simulated market has no symbol {symbol!r} (symbols: {self.symbols})")

    # ------------------------------------------------------------------------------------------------ state
    def usd_price(self, symbol: str) -> float:
        return self._price[symbol]

    def premium(self, symbol: str) -> float:
        return self._premium[symbol]

    def tether_premium(self) -> float:
        return self._tether

    def usdkrw(self) -> float:
        return self._usdkrw

    def set_state(self, symbol: str, *, usd_price: float | None = None, premium: float | None = None) -> None:
        """Script the world (tests): takes effect for books built after the call."""
        self._check_symbol(symbol)
        if usd_price is not None:
            self._price[symbol] = float(usd_price)
        if premium is not None:
            self._premium[symbol] = float(premium)
        self._books.clear()

    def set_fx(self, rate: float, tether_premium: float | None = None) -> None:
        self._usdkrw = float(rate)
        if tether_premium is not None:
            self._tether = float(tether_premium)
        self._books.clear()
        self._fx = None

    def step(self, now: datetime | None = None) -> datetime:
        """Advance one tick; returns the new market time."""
        new_now = now.astimezone(timezone.utc) if now is not None else self.now + timedelta(seconds=self.tick_seconds)
        dt = (new_now - self.now).total_seconds()
        dt = min(max(dt, 0.0), 60.0) or self.tick_seconds
        self.now = new_now
        self.tick += 1
        rng = self._rng
        sq = math.sqrt(dt)
        theta = min(self.premium_reversion * dt, 1.0)
        for sym in self.symbols:
            self._price[sym] *= math.exp(rng.gauss(0.0, self.price_sigma * sq))
            p = self._premium[sym]
            p += theta * (self.premium_mean - p) + rng.gauss(0.0, self.premium_sigma * sq)
            if rng.random() < min(self.excursion_prob * dt, 1.0):
                size = rng.uniform(self.excursion_min, self.excursion_max)
                p += size if rng.random() < self.excursion_up_prob else -size
            self._premium[sym] = p
        self._usdkrw += min(0.01 * dt, 1.0) * (self._usdkrw0 - self._usdkrw)
        self._usdkrw *= math.exp(rng.gauss(0.0, self.fx_sigma * sq))
        self._tether += theta * (self.tether_mean - self._tether) + rng.gauss(0.0, 0.0003 * sq)
        self._books.clear()
        self._fx = None
        return new_now

    # --------------------------------------------------------------------------------------------- quoting
    def fx_rate(self) -> FxRate:
        """The world's USD/KRW rate now (source ``simulated``)."""
        if self._fx is None:
            self._fx = FxRate(
                id=self._ids(),
                ts=self.now,
                rate=Decimal(f"{self._usdkrw:.2f}"),
                source="simulated",
                simulated=True,
            )
        return self._fx

    def rules(self, exchange: str, symbol: str) -> MarketRules:
        """Order rules of ``symbol`` on ``exchange`` (KRW venue: price bands, 1e-8 lot, 5,000 KRW minimum)."""
        key = (exchange, symbol)
        found = self._rules.get(key)
        if found is None:
            if self.quote_currency(exchange) == "KRW":
                found = MarketRules(symbol, None, _UPBIT_QTY_STEP, _UPBIT_QTY_STEP, KRW_MIN_NOTIONAL)
            else:
                self._check_symbol(symbol)
                found = usdt_rules(symbol, self._price[symbol])
            self._rules[key] = found
        return found

    def mid(self, exchange: str, symbol: str) -> float:
        """Mid price of ``symbol`` on ``exchange`` in its quote currency."""
        ccy = self.quote_currency(exchange)
        if symbol in _STABLECOINS:
            if ccy != "KRW":
                raise KeyError(f"{exchange} quotes in {ccy}; the {symbol} market exists on KRW venues only")
            return self._usdkrw * (1.0 + self._tether)
        self._check_symbol(symbol)
        usd = self._price[symbol]
        if ccy == "KRW":
            return usd * self._usdkrw * (1.0 + self._premium[symbol])
        return usd

    def order_book(self, exchange: str, symbol: str, depth: int = 15) -> OrderBook:
        """The book of ``symbol`` on ``exchange`` at the current tick (cached within the tick)."""
        key = (exchange, symbol, depth)
        book = self._books.get(key)
        if book is None:
            book = self._build_book(exchange, symbol, depth)
            self._books[key] = book
        return book

    def _build_book(self, exchange: str, symbol: str, depth: int) -> OrderBook:
        ccy = self.quote_currency(exchange)
        mid = self.mid(exchange, symbol)
        rng = random.Random(_stable_seed(self.seed, self.tick, exchange, symbol))
        if ccy == "KRW":
            tick = krw_price_unit(Decimal(f"{mid:.8f}"), symbol)
            step = _UPBIT_QTY_STEP
        else:
            rules = self.rules(exchange, symbol)
            tick = rules.tick_size or Decimal("0.00000001")
            step = rules.step_size
        tick_f = float(tick)
        mid_units = round(mid / tick_f)
        half = max(1, round(mid * self.spread_bps / 20000.0 / tick_f))
        gap = max(1, round(mid * self.level_gap_bps / 10000.0 / tick_f))
        usd_per_unit = mid / (self._usdkrw if ccy == "KRW" else 1.0)
        step_f = float(step)
        step_exp = step.as_tuple().exponent
        assert isinstance(step_exp, int)
        places = max(0, -step_exp)

        def levels(sign: int) -> tuple[BookLevel, ...]:
            out = []
            for i in range(depth):
                units = mid_units + sign * (half + i * gap)
                if units <= 0:
                    break
                notional = self.level_notional_usd * rng.uniform(0.2, 1.2) * (1.0 + 0.15 * i)
                qty_units = max(1, int(notional / usd_per_unit / step_f))
                qty = Decimal(qty_units).scaleb(step_exp) if places else Decimal(qty_units) * step
                out.append(BookLevel(units * tick, qty))
            return tuple(out)

        return OrderBook(exchange, symbol, levels(-1), levels(+1), self.now, simulated=True)


BookSource = Callable[[str], OrderBook]


def _as_book_source(exchange: str, source: Any, depth: int = 15) -> BookSource:
    if isinstance(source, SimulatedMarket):
        return lambda symbol: source.order_book(exchange, symbol, depth)
    if callable(source):
        return source
    raise TypeError("book_source must be a SimulatedMarket or a callable (symbol) -> OrderBook")


class SimulatedAccount:
    """Paper wallet + order simulator for one venue (see the module docstring for the full API)."""

    def __init__(
        self,
        exchange: str,
        quote_currency: str,
        balances: Mapping[str, Decimal | str | int | float] | None,
        fee_rate: Decimal | str | float,
        book_source: Any,
        *,
        rules: Callable[[str], MarketRules] | Mapping[str, MarketRules] | None = None,
        ids: Callable[[], str] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.exchange = exchange
        self.quote_currency = quote_currency.upper()
        self.wallet = PaperWallet(exchange, self.quote_currency, {k: str(v) for k, v in (balances or {}).items()})
        self.fee_rate = Decimal(str(fee_rate))
        self._books = _as_book_source(exchange, book_source)
        self._rules = rules
        self._ids = ids or IdGenerator()
        self._clock = clock or (lambda: book_source.now if isinstance(book_source, SimulatedMarket) else utcnow())
        self._orders: dict[str, Order] = {}
        self._open: dict[str, Order] = {}
        self._reserved: dict[str, Decimal] = {}

    # -------------------------------------------------------------------------------------------- helpers
    def _market_rules(self, symbol: str) -> MarketRules | None:
        r = self._rules
        if r is None:
            return None
        if callable(r):
            return r(symbol)
        return r.get(symbol)

    def _available(self, asset: str) -> Decimal:
        return self.wallet.get(asset) - self._reserved.get(asset, ZERO)

    def _reserve(self, asset: str, amount: Decimal) -> None:
        self._reserved[asset] = self._reserved.get(asset, ZERO) + amount

    def _release(self, asset: str, amount: Decimal) -> None:
        left = self._reserved.get(asset, ZERO) - amount
        if left > 0:
            self._reserved[asset] = left
        else:
            self._reserved.pop(asset, None)

    def _apply(self, fill: Any) -> None:
        if fill.side is Side.SELL and self._available(fill.symbol) < fill.qty:
            raise InsufficientFunds(
                f"{self.exchange}: selling {fill.qty} {fill.symbol} but {self._available(fill.symbol)} is free"
            )
        if fill.side is Side.BUY and self._available(self.quote_currency) < fill.notional + fill.fee:
            raise InsufficientFunds(
                f"{self.exchange}: buying costs {fill.notional + fill.fee} {self.quote_currency} "
                f"but {self._available(self.quote_currency)} is free"
            )
        self.wallet.apply_fill(fill)

    # ------------------------------------------------------------------------------------------- private API
    async def fetch_balances(self) -> dict[str, Decimal]:
        self._match_resting()
        return self.wallet.snapshot()

    async def place_order(self, request: OrderRequest) -> Order:
        symbol = request.symbol
        book = self._books(symbol)
        rules = self._market_rules(symbol)
        qty = request.qty
        if qty is not None and rules is not None:
            qty = (qty / rules.step_size).to_integral_value(rounding=ROUND_DOWN) * rules.step_size
        order_id = self._ids()
        now = self._clock()
        if request.order_type is OrderType.MARKET:
            if qty is None:
                if request.side is not Side.BUY or request.quote_amount is None:
                    raise OrderRejected("a market order needs qty (or quote_amount for a buy)")
                qty = self._qty_for_quote(book, request.quote_amount)
            self._check_minimums(symbol, qty, book, rules)
            try:
                fill = walk_book(book, request.side, qty, self.fee_rate, self.quote_currency)
            except InsufficientLiquidity as exc:
                raise OrderRejected(f"{self.exchange}: {exc}") from None
            self._apply(fill)
            order = Order(
                id=order_id, ts=now, exchange=self.exchange, symbol=symbol, side=request.side,
                order_type=OrderType.MARKET, qty=qty, status=OrderStatus.FILLED, filled_qty=qty,
                avg_price=fill.avg_price, fee=fill.fee, fee_currency=self.quote_currency,
                client_order_id=request.client_order_id, exchange_order_id=order_id, simulated=True,
            )
            self._orders[order_id] = order
            return order
        # limit order
        if qty is None or request.price is None:
            raise OrderRejected("a limit order needs qty and price")
        self._check_minimums(symbol, qty, book, rules, price=request.price)
        order = Order(
            id=order_id, ts=now, exchange=self.exchange, symbol=symbol, side=request.side,
            order_type=OrderType.LIMIT, qty=qty, price=request.price, status=OrderStatus.OPEN,
            client_order_id=request.client_order_id, exchange_order_id=order_id, simulated=True,
        )
        # check the wallet can carry the whole order before touching anything
        if request.side is Side.SELL and self._available(symbol) < qty:
            raise InsufficientFunds(f"{self.exchange}: selling {qty} {symbol} but {self._available(symbol)} is free")
        cost = qty * request.price * (1 + self.fee_rate)
        if request.side is Side.BUY and self._available(self.quote_currency) < cost:
            raise InsufficientFunds(
                f"{self.exchange}: order needs {cost} {self.quote_currency} "
                f"but {self._available(self.quote_currency)} is free"
            )
        order = self._fill_limit(order, book)
        self._orders[order_id] = order
        if order.status in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED):
            self._open[order_id] = order
            self._reserve_for(order)
        return order

    async def cancel_order(self, symbol: str, order_id: str) -> Order:
        self._match_resting()
        order = self._orders.get(order_id)
        if order is None or order.symbol != symbol:
            raise UnknownOrder(f"{self.exchange}: unknown order {order_id} for {symbol}")
        if order_id not in self._open:
            return order
        self._release_for(order)
        del self._open[order_id]
        order = replace(order, status=OrderStatus.CANCELED)
        self._orders[order_id] = order
        return order

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        self._match_resting()
        return [o for o in self._open.values() if symbol is None or o.symbol == symbol]

    async def fetch_order(self, symbol: str, order_id: str) -> Order:
        self._match_resting()
        order = self._orders.get(order_id)
        if order is None or order.symbol != symbol:
            raise UnknownOrder(f"{self.exchange}: unknown order {order_id} for {symbol}")
        return order

    # ------------------------------------------------------------------------------------------ internals
    def _qty_for_quote(self, book: OrderBook, amount: Decimal) -> Decimal:
        """Quantity a market buy of ``amount`` quote currency (fee included) gets by walking the asks."""
        budget = amount / (1 + self.fee_rate)
        qty = ZERO
        for level in book.asks:
            cost = level.price * level.qty
            if cost >= budget:
                return qty + budget / level.price
            qty += level.qty
            budget -= cost
        raise OrderRejected(f"{self.exchange}: book too thin for a buy of {amount} {self.quote_currency}")

    def _check_minimums(
        self, symbol: str, qty: Decimal, book: OrderBook, rules: MarketRules | None, price: Decimal | None = None
    ) -> None:
        if qty <= 0:
            raise OrderRejected(f"{self.exchange}: order quantity must be positive (got {qty})")
        if rules is None:
            return
        if qty < rules.min_qty:
            raise OrderRejected(f"{self.exchange}: quantity {qty} below the minimum {rules.min_qty} for {symbol}")
        ref = price or book.best_ask or book.best_bid or ZERO
        if qty * ref < rules.min_notional:
            raise OrderRejected(
                f"{self.exchange}: order value {qty * ref} below the minimum {rules.min_notional} "
                f"{self.quote_currency} for {symbol}"
            )

    def _marketable_qty(self, order: Order, book: OrderBook) -> Decimal:
        remaining = order.qty - order.filled_qty
        price = order.price
        assert price is not None
        total = ZERO
        if order.side is Side.BUY:
            for level in book.asks:
                if level.price > price:
                    break
                total += level.qty
        else:
            for level in book.bids:
                if level.price < price:
                    break
                total += level.qty
        return min(total, remaining)

    def _fill_limit(self, order: Order, book: OrderBook) -> Order:
        take = self._marketable_qty(order, book)
        if take <= 0:
            return order
        fill = walk_book(book, order.side, take, self.fee_rate, self.quote_currency)
        self._apply(fill)
        filled = order.filled_qty + take
        prev_notional = (order.avg_price or ZERO) * order.filled_qty
        avg = (prev_notional + fill.notional) / filled
        status = OrderStatus.FILLED if filled >= order.qty else OrderStatus.PARTIALLY_FILLED
        return replace(order, filled_qty=filled, avg_price=avg, fee=order.fee + fill.fee,
                       fee_currency=self.quote_currency, status=status)

    def _reserve_for(self, order: Order) -> None:
        left = order.qty - order.filled_qty
        if order.side is Side.SELL:
            self._reserve(order.symbol, left)
        else:
            assert order.price is not None
            self._reserve(self.quote_currency, left * order.price * (1 + self.fee_rate))

    def _release_for(self, order: Order) -> None:
        left = order.qty - order.filled_qty
        if order.side is Side.SELL:
            self._release(order.symbol, left)
        else:
            assert order.price is not None
            self._release(self.quote_currency, left * order.price * (1 + self.fee_rate))

    def _match_resting(self) -> None:
        for order_id, order in list(self._open.items()):
            try:
                book = self._books(order.symbol)
            except Exception:
                continue
            self._release_for(order)
            try:
                updated = self._fill_limit(order, book)
            except (InsufficientFunds, InsufficientLiquidity):
                updated = order
            self._orders[order_id] = updated
            if updated.status is OrderStatus.FILLED:
                del self._open[order_id]
            else:
                self._open[order_id] = updated
                self._reserve_for(updated)


class SimulatedExchange(Exchange):
    """An :class:`arbframe.Exchange` quoting from a :class:`SimulatedMarket` with a :class:`SimulatedAccount`.

    ``SimulatedExchange(name, market, *, quote_currency=None, fee_rate=Decimal("0.001"), balances=None,
    rules=None, depth=15)``: ``quote_currency`` defaults to the market's currency for ``name`` (the venue is added
    to the market when missing); ``rules`` optionally overrides the market's :class:`MarketRules` per symbol.
    """

    def __init__(
        self,
        name: str,
        market: SimulatedMarket,
        *,
        quote_currency: str | None = None,
        fee_rate: Decimal | str | float = Decimal("0.001"),
        balances: Mapping[str, Decimal | str | int | float] | None = None,
        rules: Mapping[str, MarketRules] | None = None,
        depth: int = 15,
    ) -> None:
        self.name = name  # type: ignore[misc]  # instance value shadows the class-level entry-point name
        self.market = market
        if quote_currency is None:
            quote_currency = market.quote_currency(name)
        elif market.venues.get(name) != quote_currency.upper():
            market.add_venue(name, quote_currency)
        self.quote_currency = quote_currency.upper()  # type: ignore[misc]
        self._fee_rate = Decimal(str(fee_rate))
        self._rule_overrides = dict(rules or {})
        self.depth = depth
        self.account = SimulatedAccount(
            name,
            self.quote_currency,
            balances,
            self._fee_rate,
            lambda symbol: market.order_book(name, symbol, depth),
            rules=self.market_rules,
            ids=IdGenerator(_stable_seed(market.seed, "orders", name)),
            clock=lambda: market.now,
        )

    @classmethod
    def for_venue(
        cls,
        name: str,
        market: SimulatedMarket,
        *,
        quote_currency: str | None = None,
        fee_rate: Decimal | str | float = Decimal("0.001"),
        balances: Mapping[str, Decimal | str | int | float] | None = None,
        rules: Mapping[str, MarketRules] | None = None,
        depth: int = 15,
    ) -> SimulatedExchange:
        return cls(name, market, quote_currency=quote_currency, fee_rate=fee_rate, balances=balances,
                   rules=rules, depth=depth)

    @property
    def fee_rate(self) -> Decimal:
        return self._fee_rate

    @property
    def simulated(self) -> bool:
        return True

    async def fetch_order_book(self, symbol: str, depth: int = 15) -> OrderBook:
        return self.market.order_book(self.name, symbol, depth)

    async def fetch_balances(self) -> dict[str, Decimal]:
        return await self.account.fetch_balances()

    async def place_order(self, request: OrderRequest) -> Order:
        return await self.account.place_order(request)

    async def cancel_order(self, symbol: str, order_id: str) -> Order:
        return await self.account.cancel_order(symbol, order_id)

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        return await self.account.fetch_open_orders(symbol)

    async def fetch_order(self, symbol: str, order_id: str) -> Order:
        return await self.account.fetch_order(symbol, order_id)

    def market_rules(self, symbol: str) -> MarketRules:
        found = self._rule_overrides.get(symbol)
        return found if found is not None else self.market.rules(self.name, symbol)

    def price_step(self, symbol: str, price: Decimal) -> Decimal:
        if self.quote_currency == "KRW":
            return krw_price_unit(price, symbol)
        return super().price_step(symbol, price)


class SimulatedVenue(SimulatedExchange):
    """A venue whose plugin is not installed, served by the simulated market in mock mode (it has its own row in
    the health report, saying so)."""

    def describe(self) -> str:
        return f"{self.name} (simulated market; no plugin installed)"

    @hookimpl
    def arbframe_health_checks(self, config: Any, context: Any) -> list[HealthCheck]:
        return [HealthCheck(self.name, self.health_probe, timeout_seconds=1.0)]

    async def health_probe(self) -> HealthResult:
        symbol = self.market.symbols[0]
        book = await self.fetch_order_book(symbol, 1)
        return HealthResult(
            self.name, HealthStatus.OK,
            f"mock mode: simulated market ({symbol} {book.best_bid}/{book.best_ask} {self.quote_currency}); "
            f"no {self.name} plugin installed",
            {"simulated": True, "quote_currency": self.quote_currency},
        )


class SimulatedFxSource(FxSource):
    """USD/KRW from the simulated market (mock mode): the world's own rate, marked ``simulated``."""

    name = "simulated"

    def __init__(self, market: SimulatedMarket) -> None:
        self.market = market

    async def fetch(self) -> FxRate:
        return self.market.fx_rate()


def market_from_config(config: Mapping[str, Any]) -> SimulatedMarket:
    """The simulated market mock mode trades against, from the ``simulation`` and ``arbitrage`` sections."""
    arb = config.get("arbitrage") or {}
    sim = dict(config.get("simulation") or {})
    fx = config.get("fx") or {}
    symbols = [str(s).upper() for s in arb.get("symbols", ["BTC", "ETH"])]
    venues = {str(arb.get("domestic", "upbit")): "KRW", str(arb.get("foreign", "binance")): "USDT"}
    usdkrw = sim.pop("usdkrw", None) or fx.get("static_rate") or 1380.0
    seed = int(sim.pop("seed", 42))
    return SimulatedMarket(symbols, seed=seed, venues=venues, usdkrw=float(usdkrw), **sim)
