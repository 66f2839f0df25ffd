"""An in-process :class:`arbframe.Exchange` over a :class:`~arbframe.testing.fake_venue.FakeVenue`'s matching
engine: no HTTP, the same books, balances, orders and faults, raising what a driver that follows the exchange
error taxonomy raises. For unit tests of the execution layer (and its benchmark); the venues' own fake servers
test the real drivers over HTTP.

::

    fake = FakeVenue(mids={"BTC": 135_000_000}, balances={"KRW": 10_000_000, "BTC": 1})
    upbit = FakeVenueExchange(fake, "upbit", step="0.0001")
    fake.inject("rate_limited", path="place_order")    # request faults by method name: place_order, fetch_order,
    fake.inject("accept_then_timeout", side="buy")     # cancel_order, fetch_balances, fetch_order_book

Request faults: ``rate_limited`` -> :class:`arbframe.RateLimited`, ``banned`` -> :class:`arbframe.Banned`,
``unavailable`` -> :class:`arbframe.VenueUnavailable`, ``timeout`` -> :class:`arbframe.RequestTimeout`, ``drop`` ->
:class:`arbframe.TransportError` (all before the venue acted). Order faults act in
:meth:`~arbframe.testing.fake_venue.FakeVenue.place_limit`; ``accept_then_timeout`` and ``error_after_accept``
(the order was placed, the answer lost) raise :class:`arbframe.OrderStatusUnknown`, as a driver does when its
own lookup did not settle it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from arbframe.core.errors import (
    Banned,
    InsufficientFunds,
    InvalidRequest,
    OrderRejected,
    OrderStatusUnknown,
    RateLimited,
    RequestTimeout,
    TransportError,
    UnknownOrder,
    VenueUnavailable,
)
from arbframe.core.models import (
    Balance,
    BookLevel,
    MarketRules,
    Order,
    OrderBook,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    utcnow,
)
from arbframe.kernel.interfaces import Exchange
from arbframe.testing.fake_venue import FakeOrder, FakeVenue, OrderRefused

__all__ = ["FakeVenueExchange"]

_STATUS = {"new": OrderStatus.NEW, "partially_filled": OrderStatus.PARTIALLY_FILLED, "filled": OrderStatus.FILLED,
           "canceled": OrderStatus.CANCELED}


class FakeVenueExchange(Exchange):
    """See the module docstring. ``calls`` lists ``(method, client order id or symbol)`` of every call."""

    order_options = frozenset({"time_in_force", "test"})

    def __init__(self, fake: FakeVenue, name: str, *, step: Decimal | str = "0.00000001",
                 min_qty: Decimal | str = "0", min_notional: Decimal | str = "0", fee_rate: Decimal | str | None = None
                 ) -> None:
        self.fake = fake
        self.name = name  # type: ignore[misc]
        self.quote_currency = fake.quote  # type: ignore[misc]
        self.step = Decimal(str(step))
        self.min_qty = Decimal(str(min_qty))
        self.min_notional = Decimal(str(min_notional))
        self._fee_rate = Decimal(str(fee_rate)) if fee_rate is not None else fake.fees["buy"][0]
        self.calls: list[tuple[str, str]] = []

    # ------------------------------------------------------------------------------------------ market data
    @property
    def fee_rate(self) -> Decimal:
        return self._fee_rate

    def market_rules(self, symbol: str) -> MarketRules:
        if symbol.upper() not in self.fake.mids:
            raise KeyError(symbol)
        return MarketRules(symbol.upper(), self.fake.tick, self.step, self.min_qty, self.min_notional)

    def price_step(self, symbol: str, price: Decimal) -> Decimal:
        return self.fake.price_step(symbol, price)

    async def fetch_order_book(self, symbol: str, depth: int = 15) -> OrderBook:
        self._fault("fetch_order_book", symbol)
        try:
            bids, asks = self.fake.book(symbol, depth)
        except KeyError:
            raise InvalidRequest(f"{self.name}: unknown symbol {symbol}", exchange=self.name) from None
        return OrderBook(self.name, symbol.upper(), tuple(BookLevel(p, q) for p, q in bids),
                         tuple(BookLevel(p, q) for p, q in asks), utcnow())

    # --------------------------------------------------------------------------------------------- trading
    async def fetch_balances(self) -> dict[str, Decimal]:
        self._fault("fetch_balances", "")
        return {asset: free for asset, free in self.fake.balances.items() if free or self.fake.locked.get(asset)}

    async def fetch_balance_details(self) -> dict[str, Balance]:
        self._fault("fetch_balances", "")
        assets = set(self.fake.balances) | set(self.fake.locked)
        return {a: Balance(*self.fake.balance(a)) for a in sorted(assets)}

    async def place_order(self, request: OrderRequest) -> Order:
        cid = request.client_order_id
        self._fault("place_order", cid)
        if request.order_type is not OrderType.LIMIT or request.qty is None or request.price is None:
            raise InvalidRequest(f"{self.name}: only limit orders with a price and a quantity", exchange=self.name)
        side = request.side.value
        try:
            if request.test:
                self.fake.check_order(request.symbol, side, request.price, request.qty)
                return Order(id=cid, ts=utcnow(), exchange=self.name, symbol=request.symbol.upper(),
                             side=request.side, order_type=OrderType.LIMIT, qty=request.qty, price=request.price,
                             status=OrderStatus.NEW, client_order_id=cid)
            placed = self.fake.place_limit(request.symbol, side, request.price, request.qty, cid,
                                           tif=request.time_in_force)
        except OrderRefused as refused:
            raise self._refusal(refused, cid) from None
        fault = placed.fault.kind if placed.fault is not None else ""
        if fault in ("accept_then_timeout", "error_after_accept"):
            raise OrderStatusUnknown(f"{self.name}: order {cid} sent; the answer was lost ({fault})",
                                     exchange=self.name, endpoint="place_order", client_order_id=cid)
        return self._order(placed)

    async def fetch_order(self, symbol: str, order_id: str) -> Order:
        self._fault("fetch_order", order_id)
        found = self.fake.get_order(client_id=order_id) or self.fake.get_order(venue_id=order_id)
        if found is None or found.symbol != symbol.upper():
            raise UnknownOrder(f"{self.name}: unknown order {order_id}", exchange=self.name, client_order_id=order_id)
        return self._order(found)

    async def cancel_order(self, symbol: str, order_id: str) -> Order:
        self._fault("cancel_order", order_id)
        try:
            found = self.fake.cancel(client_id=order_id)
        except OrderRefused as refused:
            if refused.reason == "not_open":
                held = self.fake.get_order(client_id=order_id)
                assert held is not None
                return self._order(held)
            raise UnknownOrder(f"{self.name}: unknown order {order_id}", exchange=self.name) from None
        return self._order(found)

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        self._fault("fetch_open_orders", symbol or "")
        return [self._order(o) for o in self.fake.orders.values()
                if o.is_open and (symbol is None or o.symbol == symbol.upper())]

    # --------------------------------------------------------------------------------------------- helpers
    def _fault(self, method: str, what: str) -> None:
        self.calls.append((method, what))
        fault = self.fake.take_fault(method)
        if fault is None or fault.kind == "ws_drop":
            return
        kw: dict[str, Any] = {"exchange": self.name, "endpoint": method}
        kind = fault.kind
        if kind == "rate_limited":
            raise RateLimited(f"{self.name}: 429", retry_after=fault.retry_after, status=429, **kw)
        if kind == "banned":
            raise Banned(f"{self.name}: 418", retry_after=fault.retry_after, status=418, **kw)
        if kind == "unavailable":
            raise VenueUnavailable(f"{self.name}: 503", status=503, **kw)
        if kind == "timeout":
            raise RequestTimeout(f"{self.name}: no answer", **kw)
        raise TransportError(f"{self.name}: {kind}", **kw)

    def _refusal(self, refused: OrderRefused, cid: str) -> Exception:
        kw: dict[str, Any] = {"exchange": self.name, "endpoint": "place_order", "client_order_id": cid}
        if refused.reason == "insufficient_balance":
            return InsufficientFunds(f"{self.name}: {refused}", **kw)
        if refused.reason in ("unknown_symbol", "bad_order"):
            return InvalidRequest(f"{self.name}: {refused}", **kw)
        return OrderRejected(f"{self.name}: {refused}", **kw)

    def _order(self, o: FakeOrder) -> Order:
        return Order(
            id=o.venue_id, ts=utcnow(), exchange=self.name, symbol=o.symbol, side=Side(o.side),
            order_type=OrderType.LIMIT, qty=o.qty, price=o.price, status=_STATUS[o.status],
            filled_qty=o.filled_qty, avg_price=o.avg_price, fee=o.fee,
            fee_currency=o.fee_asset if o.fee else "", client_order_id=o.client_id, exchange_order_id=o.venue_id,
            filled_quote=o.quote_qty,
        )
