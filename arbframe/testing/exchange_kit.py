"""Contract tests every :class:`arbframe.Exchange` driver must pass.

Use it from a plugin's tests with a few lines::

    import pytest
    from arbframe.testing.exchange_kit import ExchangeContract

    class TestMyVenueContract(ExchangeContract):
        symbol = "BTC"

        @pytest.fixture
        async def exchange(self):
            ex = MyVenue(section, context)   # pointed at a fake/test venue, never the internet
            await ex.connect()
            yield ex
            await ex.close()

The fixture must yield a *connected* exchange whose private calls (balances, orders) reach a test venue:
a local fake server in live mode, a testnet, or the kernel's simulated account. Class attributes tune
what is checked:

``symbol``                 the base asset to test with (``BTC``)
``depth``                  order-book depth to ask for
``supports_orders``        False skips the place/cancel/fetch round trip (a read-only venue)
``resting_orders``         True when a limit order far from the market stays open (a real or fake venue);
                           False for venues that fill or reject at once (simple simulators)
``error_types``            exceptions the driver raises for venue errors (unknown order, rejected order)
``error_taxonomy``         True: venue errors are :class:`arbframe.ExchangeError` kinds, and the kit asserts the
                           exact kind (``UnknownOrder`` for an unknown id, ``OrderRejected`` below the minimum)

Fault mapping (optional): provide a ``venue_faults`` fixture yielding ``(fake, kinds)`` - a
:class:`arbframe.testing.fake_venue.FakeVenue` the ``exchange`` fixture talks to, and the fault kinds to check -
and the kit injects each kind and asserts the driver raises the kind in
:data:`arbframe.testing.fake_venue.EXPECTED_ERRORS`: a request fault on ``fetch_order_book`` (then the venue must
recover), an order fault (:data:`~arbframe.testing.fake_venue.ORDER_FAULT_KINDS`) on ``place_order`` of a resting
limit order. ``reject``/``insufficient_balance`` must raise their kind; after ``accept_then_timeout`` and
``error_after_accept`` (the venue placed the order, its answer was lost) the driver returns the order found by its
own lookup or raises ``OrderStatusUnknown`` naming the client order id, and ``fetch_order(symbol,
client_order_id)`` finds it. Order faults skip when the order never reached the fake (orders on a simulated
account). Without the fixture those checks are skipped; a missing ``exchange`` fixture fails. The driver's
request timeout must be shorter than the faults' ``delay`` (1 s).
``cancel_settle_polls``    how many times to re-fetch an order after cancelling (venues that cancel async)

Each check is also available as a plain function (``check_order_book`` ...) for use outside the class.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta, timezone
from decimal import ROUND_UP, Decimal
from typing import Any, ClassVar

import pytest

from arbframe.core.errors import ExchangeError, OrderRejected, UnknownOrder
from arbframe.core.models import (
    MarketRules,
    Order,
    OrderBook,
    OrderRequest,
    OrderStatus,
    OrderType,
    Quote,
    Side,
    new_id,
)
from arbframe.kernel.interfaces import Exchange
from arbframe.testing.fake_venue import EXPECTED_ERRORS, ORDER_FAULT_KINDS

__all__ = [
    "ExchangeContract",
    "check_balances",
    "check_market_rules",
    "check_order",
    "check_order_book",
    "check_quote",
    "check_utc",
    "resting_order_request",
]

_MAX_FUTURE_SKEW = timedelta(minutes=5)


# ------------------------------------------------------------------------------------------- plain checks
def check_utc(ts: Any, what: str = "ts") -> None:
    """``ts`` is an aware datetime in UTC."""
    assert ts is not None, f"{what} is None"
    assert ts.tzinfo is not None, f"{what} is naive: {ts!r}"
    assert ts.utcoffset() == timedelta(0), f"{what} is not UTC: {ts!r}"
    assert ts.tzinfo == timezone.utc or ts.utcoffset() == timedelta(0)


def check_order_book(book: OrderBook, exchange: Exchange | None = None, symbol: str | None = None,
                     depth: int | None = None) -> None:
    """Levels are exact decimals, bids best-first descending, asks ascending, and the book is not crossed."""
    assert isinstance(book, OrderBook), f"expected OrderBook, got {type(book).__name__}"
    if exchange is not None:
        assert book.exchange == exchange.name, f"book.exchange {book.exchange!r} != {exchange.name!r}"
        assert book.simulated == exchange.simulated, "book.simulated must match exchange.simulated"
    if symbol is not None:
        assert book.symbol == symbol, f"book.symbol {book.symbol!r} != {symbol!r}"
    assert isinstance(book.bids, tuple) and isinstance(book.asks, tuple), "levels must be tuples"
    assert book.bids and book.asks, "empty side in a liquid test market"
    if depth is not None:
        assert len(book.bids) <= depth and len(book.asks) <= depth, "more levels than requested"
    for side_name, levels in (("bids", book.bids), ("asks", book.asks)):
        for lvl in levels:
            assert type(lvl.price) is Decimal, f"{side_name} price is {type(lvl.price).__name__}, not Decimal"
            assert type(lvl.qty) is Decimal, f"{side_name} qty is {type(lvl.qty).__name__}, not Decimal"
            assert lvl.price > 0, f"{side_name} price {lvl.price} <= 0"
            assert lvl.qty > 0, f"{side_name} qty {lvl.qty} <= 0"
            assert lvl.price.is_finite() and lvl.qty.is_finite()
    bid_prices = [lvl.price for lvl in book.bids]
    ask_prices = [lvl.price for lvl in book.asks]
    assert bid_prices == sorted(bid_prices, reverse=True), "bids not sorted best (highest) first"
    assert ask_prices == sorted(ask_prices), "asks not sorted best (lowest) first"
    assert len(set(bid_prices)) == len(bid_prices), "duplicate bid price levels"
    assert len(set(ask_prices)) == len(ask_prices), "duplicate ask price levels"
    best_bid, best_ask = top_of_book(book)
    assert best_bid < best_ask, f"crossed book: bid {best_bid} >= ask {best_ask}"
    check_utc(book.ts, "book.ts")


def top_of_book(book: OrderBook) -> tuple[Decimal, Decimal]:
    """(best bid, best ask), failing the test when either side is empty."""
    bid, ask = book.best_bid, book.best_ask
    assert bid is not None and ask is not None, f"{book.exchange} {book.symbol}: a side of the book is empty"
    return bid, ask


def check_quote(quote: Quote, exchange: Exchange | None = None, symbol: str | None = None) -> None:
    assert isinstance(quote, Quote)
    assert type(quote.bid) is Decimal and type(quote.ask) is Decimal, "quote prices must be Decimal"
    assert 0 < quote.bid < quote.ask, f"bad quote bid={quote.bid} ask={quote.ask}"
    if exchange is not None:
        assert quote.exchange == exchange.name
    if symbol is not None:
        assert quote.symbol == symbol
    check_utc(quote.ts, "quote.ts")


def check_market_rules(rules: MarketRules, symbol: str) -> None:
    assert isinstance(rules, MarketRules)
    assert rules.symbol == symbol
    assert rules.tick_size is None or (type(rules.tick_size) is Decimal and rules.tick_size > 0)
    assert type(rules.step_size) is Decimal and rules.step_size > 0, "step_size must be a positive Decimal"
    assert type(rules.min_qty) is Decimal and rules.min_qty >= 0
    assert type(rules.min_notional) is Decimal and rules.min_notional >= 0


def check_balances(balances: Any) -> None:
    assert isinstance(balances, dict), "fetch_balances must return a dict"
    for asset, amount in balances.items():
        assert isinstance(asset, str) and asset == asset.upper() and asset, f"bad asset name {asset!r}"
        assert type(amount) is Decimal, f"balance of {asset} is {type(amount).__name__}, not Decimal"
        assert amount >= 0, f"negative balance {asset}={amount}"


def check_order(order: Order, exchange: Exchange, request: OrderRequest | None = None) -> None:
    assert isinstance(order, Order), f"expected Order, got {type(order).__name__}"
    assert order.exchange == exchange.name
    assert isinstance(order.status, OrderStatus)
    assert isinstance(order.side, Side) and isinstance(order.order_type, OrderType)
    assert type(order.qty) is Decimal and order.qty >= 0
    assert type(order.filled_qty) is Decimal and order.filled_qty >= 0
    assert order.price is None or type(order.price) is Decimal
    assert order.avg_price is None or type(order.avg_price) is Decimal
    assert order.fee is not None, (f"{exchange.name}: order.fee is None; report Decimal(0) when the venue charged "
                                   "nothing, and the fee in the asset the venue charged (Order.fee_currency)")
    assert type(order.fee) is Decimal, f"{exchange.name}: order.fee is {type(order.fee).__name__}, not Decimal"
    assert order.fee >= 0, f"{exchange.name}: negative fee {order.fee}"
    assert order.id, "order.id must be set"
    check_utc(order.ts, "order.ts")
    if request is not None:
        assert order.symbol == request.symbol
        assert order.side is request.side
        assert order.order_type is request.order_type
        if order.client_order_id is not None:
            assert order.client_order_id == request.client_order_id


def _order_key(order: Order) -> str:
    return order.exchange_order_id or order.id


def resting_order_request(exchange: Exchange, symbol: str, book: OrderBook, *, far: Decimal = Decimal("0.7"),
                          side: Side = Side.BUY) -> OrderRequest:
    """A valid limit order that should not fill: a buy ``far`` x the best bid (or a sell at best ask / far),
    rounded to the venue's grid and sized just above the minimum notional and quantity."""
    rules = exchange.market_rules(symbol)
    best_bid, best_ask = top_of_book(book)
    if side is Side.BUY:
        price = exchange.round_price(symbol, best_bid * far, Side.SELL)  # round down: even further away
    else:
        price = exchange.round_price(symbol, best_ask / far, Side.BUY)
    step = rules.step_size
    need = max(rules.min_qty, (rules.min_notional * Decimal("1.5")) / price if price > 0 else rules.min_qty)
    qty = (need / step).to_integral_value(rounding=ROUND_UP) * step
    if qty <= 0:
        qty = step
    return OrderRequest(symbol=symbol, side=side, order_type=OrderType.LIMIT, client_order_id=new_id(),
                        qty=qty, price=price)


# --------------------------------------------------------------------------------------------- the class
class ExchangeContract:
    """Base class of an exchange driver's contract tests. Override the ``exchange`` fixture."""

    symbol: ClassVar[str] = "BTC"
    depth: ClassVar[int] = 5
    supports_orders: ClassVar[bool] = True
    resting_orders: ClassVar[bool] = True
    error_types: ClassVar[tuple[type[BaseException], ...]] = (Exception,)
    cancel_settle_polls: ClassVar[int] = 20
    stream_timeout_seconds: ClassVar[float] = 5.0
    error_taxonomy: ClassVar[bool] = False

    @pytest.fixture
    def exchange(self) -> Exchange:
        pytest.fail(f"{type(self).__name__} must override the `exchange` fixture (a connected driver on a test "
                    "venue); see arbframe.testing.exchange_kit", pytrace=False)

    @pytest.fixture
    def venue_faults(self) -> Any:
        pytest.skip("no `venue_faults` fixture: fault-to-error-kind mapping not checked for this venue")

    # ------------------------------------------------------------------------------------- fault mapping
    @pytest.mark.parametrize("fault", sorted(EXPECTED_ERRORS))
    async def test_contract_fault_maps_to_error_kind(self, exchange: Exchange, venue_faults: Any, fault: str) -> None:
        fake, kinds = venue_faults
        if fault not in kinds:
            pytest.skip(f"{exchange.name}: fault {fault!r} not checked")
        if fault in ORDER_FAULT_KINDS:
            await self._check_order_fault(exchange, fake, fault)
            return
        fake.inject(fault, 10)  # more than any sane number of retries
        try:
            with pytest.raises(EXPECTED_ERRORS[fault]) as info:
                await exchange.fetch_order_book(self.symbol, depth=self.depth)
        finally:
            fake.clear()
        assert isinstance(info.value, ExchangeError)
        assert info.value.kind == EXPECTED_ERRORS[fault].kind  # type: ignore[attr-defined]
        if fault != "banned":  # a ban lasts; everything else is over once the venue behaves again
            check_order_book(await exchange.fetch_order_book(self.symbol, depth=self.depth), exchange, self.symbol)

    async def _check_order_fault(self, exchange: Exchange, fake: Any, fault: str) -> None:
        if not self.supports_orders:
            pytest.skip("read-only venue")
        expected = EXPECTED_ERRORS[fault]
        request = resting_order_request(exchange, self.symbol,
                                        await exchange.fetch_order_book(self.symbol, depth=self.depth))
        sent_before = len(fake.placements)
        fake.inject(fault, 1)
        error: ExchangeError | None = None
        order: Order | None = None
        try:
            order = await exchange.place_order(request)
        except expected as exc:
            assert isinstance(exc, ExchangeError) and exc.kind == expected.kind  # type: ignore[attr-defined]
            error = exc
        finally:
            fake.clear()
        if len(fake.placements) == sent_before:
            pytest.skip(f"{exchange.name}: orders do not reach the fake venue (a simulated account)")
        if fault in ("reject", "insufficient_balance"):
            assert error is not None, f"{fault}: place_order must raise {expected.__name__}"
            return
        if error is not None:  # the venue placed it and its answer was lost: the error names the client order id
            assert error.client_order_id == request.client_order_id, "OrderStatusUnknown must name the client id"
        else:  # the driver's own lookup by client order id settled it
            assert order is not None
            check_order(order, exchange, request)
        check_order(await exchange.fetch_order(self.symbol, request.client_order_id), exchange, request)

    # ---------------------------------------------------------------------------------- identity & config
    async def test_contract_identity(self, exchange: Exchange) -> None:
        assert isinstance(exchange, Exchange)
        assert exchange.name and exchange.name == exchange.name.lower()
        assert exchange.quote_currency and exchange.quote_currency == exchange.quote_currency.upper()
        assert type(exchange.fee_rate) is Decimal and 0 <= exchange.fee_rate < Decimal("0.05")
        schema = type(exchange).config_schema()
        assert schema is None or (isinstance(schema, dict) and schema.get("type") == "object")
        if schema:
            for key, prop in schema.get("properties", {}).items():
                if any(word in key for word in ("secret", "password", "api_key")):
                    assert prop.get("writeOnly") is True, f"config key {key!r} must be writeOnly"

    # ------------------------------------------------------------------------------------- market data
    async def test_contract_order_book(self, exchange: Exchange) -> None:
        book = await exchange.fetch_order_book(self.symbol, depth=self.depth)
        check_order_book(book, exchange, self.symbol, self.depth)

    async def test_contract_order_book_depth_one(self, exchange: Exchange) -> None:
        book = await exchange.fetch_order_book(self.symbol, depth=1)
        check_order_book(book, exchange, self.symbol, 1)

    async def test_contract_ticker(self, exchange: Exchange) -> None:
        quote = await exchange.fetch_ticker(self.symbol)
        check_quote(quote, exchange, self.symbol)
        assert quote.simulated == exchange.simulated

    async def test_contract_stream(self, exchange: Exchange) -> None:
        stream = exchange.stream_order_books([self.symbol], depth=self.depth)
        if stream is None:
            pytest.skip(f"{exchange.name} cannot stream")
        agen = stream.__aiter__()
        try:
            book = await asyncio.wait_for(agen.__anext__(), self.stream_timeout_seconds)
            check_order_book(book, exchange, self.symbol, self.depth)
        finally:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                await aclose()

    async def test_contract_krw_venue_quotes_usdt(self, exchange: Exchange) -> None:
        """A KRW venue must quote ``USDT`` (its KRW-USDT book gives the tether premium; docs/PLUGINS.md)."""
        if exchange.quote_currency != "KRW":
            pytest.skip(f"{exchange.name} quotes {exchange.quote_currency}, not KRW")
        try:
            quote = await exchange.fetch_ticker("USDT")
        except Exception as exc:  # the message names what the venue lacks
            pytest.fail(f"{exchange.name}: a KRW venue must quote USDT (KRW-USDT), but fetch_ticker('USDT') raised "
                        f"{type(exc).__name__}: {exc}", pytrace=False)
        check_quote(quote, exchange, "USDT")

    # ------------------------------------------------------------------------------- rules and rounding
    async def test_contract_market_rules(self, exchange: Exchange) -> None:
        check_market_rules(exchange.market_rules(self.symbol), self.symbol)

    async def test_contract_rounding(self, exchange: Exchange) -> None:
        book = await exchange.fetch_order_book(self.symbol, depth=1)
        best_bid, best_ask = top_of_book(book)
        mid = (best_bid + best_ask) / 2
        odd = mid + (exchange.price_step(self.symbol, mid) / 3)
        step = exchange.price_step(self.symbol, odd)
        assert type(step) is Decimal and step > 0
        up = exchange.round_price(self.symbol, odd, Side.BUY)
        down = exchange.round_price(self.symbol, odd, Side.SELL)
        assert type(up) is Decimal and type(down) is Decimal
        assert down <= odd <= up, f"buy rounds up, sell rounds down: {down} <= {odd} <= {up}"
        assert up - down <= exchange.price_step(self.symbol, up), "rounding moved more than one step"
        for price in (up, down):
            grid = exchange.price_step(self.symbol, price)
            assert (price / grid) % 1 == 0, f"{price} is off the price grid"
        # a price on the grid is left alone
        assert exchange.round_price(self.symbol, down, Side.BUY) == down
        assert exchange.round_price(self.symbol, down, Side.SELL) == down
        rules = exchange.market_rules(self.symbol)
        qty = rules.step_size * Decimal("3.7")
        rounded = exchange.round_qty(self.symbol, qty)
        assert type(rounded) is Decimal
        assert rounded <= qty and qty - rounded < rules.step_size
        assert (rounded / rules.step_size) % 1 == 0

    # ---------------------------------------------------------------------------------------- private
    async def test_contract_balances(self, exchange: Exchange) -> None:
        check_balances(await exchange.fetch_balances())

    async def test_contract_open_orders_shape(self, exchange: Exchange) -> None:
        orders = await exchange.fetch_open_orders(self.symbol)
        assert isinstance(orders, list)
        for order in orders:
            check_order(order, exchange)
            assert order.symbol == self.symbol
            assert order.status in (OrderStatus.NEW, OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)

    async def test_contract_order_round_trip(self, exchange: Exchange) -> None:
        if not self.supports_orders:
            pytest.skip("read-only venue")
        book = await exchange.fetch_order_book(self.symbol, depth=self.depth)
        request = resting_order_request(exchange, self.symbol, book)
        order = await exchange.place_order(request)
        check_order(order, exchange, request)
        assert order.qty == request.qty
        if order.price is not None:
            assert order.price == request.price
        key = _order_key(order)

        fetched = await exchange.fetch_order(self.symbol, key)
        check_order(fetched, exchange, request)
        assert _order_key(fetched) == key

        if not self.resting_orders:
            return
        assert fetched.status in (OrderStatus.NEW, OrderStatus.OPEN), f"far order must rest: {fetched.status}"
        open_keys = {_order_key(o) for o in await exchange.fetch_open_orders(self.symbol)}
        assert key in open_keys, "a resting order must be listed as open"
        open_all = {_order_key(o) for o in await exchange.fetch_open_orders(None)}
        assert key in open_all, "fetch_open_orders(None) lists every symbol"

        cancelled = await exchange.cancel_order(self.symbol, key)
        check_order(cancelled, exchange, request)
        assert _order_key(cancelled) == key
        status = cancelled.status
        for _ in range(self.cancel_settle_polls):
            if status is OrderStatus.CANCELED:
                break
            await asyncio.sleep(0.01)
            status = (await exchange.fetch_order(self.symbol, key)).status
        assert status is OrderStatus.CANCELED, f"order not cancelled: {status}"
        open_keys = {_order_key(o) for o in await exchange.fetch_open_orders(self.symbol)}
        assert key not in open_keys, "a cancelled order must not be listed as open"

    async def test_contract_unknown_order_raises(self, exchange: Exchange) -> None:
        if not self.supports_orders:
            pytest.skip("read-only venue")
        expected = UnknownOrder if self.error_taxonomy else self.error_types
        with pytest.raises(expected):
            await exchange.fetch_order(self.symbol, "00000000-0000-4000-8000-000000000000")

    async def test_contract_too_small_order_refused(self, exchange: Exchange) -> None:
        if not self.supports_orders:
            pytest.skip("read-only venue")
        rules = exchange.market_rules(self.symbol)
        if rules.min_notional <= 0 and rules.min_qty <= 0:
            pytest.skip("venue has no minimum order size")
        book = await exchange.fetch_order_book(self.symbol, depth=1)
        price = exchange.round_price(self.symbol, top_of_book(book)[0] * Decimal("0.7"), Side.SELL)
        qty = rules.step_size
        if qty * price >= rules.min_notional and qty >= rules.min_qty:
            pytest.skip("the smallest step is already above the minimum")
        request = OrderRequest(symbol=self.symbol, side=Side.BUY, order_type=OrderType.LIMIT,
                               client_order_id=new_id(), qty=qty, price=price)
        try:
            order = await exchange.place_order(request)
        except OrderRejected:
            return
        except self.error_types:
            assert not self.error_taxonomy, "an order below the minimum must raise arbframe.OrderRejected"
            return
        assert order.status is OrderStatus.REJECTED, "an order below the minimum must raise or be REJECTED"

    async def test_contract_close_is_idempotent(self, exchange: Exchange) -> None:
        await exchange.close()
        await exchange.close()
