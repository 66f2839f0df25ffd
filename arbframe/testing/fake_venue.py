"""A base for local fake venues (aiohttp on 127.0.0.1, a free port): books, balances, faults, WebSocket clients.

A venue's fake subclasses :class:`FakeVenue` and adds its routes in :meth:`FakeVenue.routes`; everything else is
shared, with one vocabulary for every venue::

    async with MyFakeVenue() as fake:       # or: with MyFakeVenue().in_thread() as fake:  (sync tests)
        fake.set_mid("BTC", 135_000_000)    # books: deterministic levels around a mid, seeded quantities
        fake.inject("rate_limited", 2)      # the next 2 requests answer HTTP 429 + Retry-After
        fake.step()                         # move every mid one seeded step; WebSocket clients get new books
        fake.balances["KRW"] = Decimal(0)

Fault kinds (:data:`FAULT_KINDS`) and what a connector must raise for each (:data:`EXPECTED_ERRORS`, asserted by
:class:`arbframe.testing.exchange_kit.ExchangeContract`):

=================  ====================================================  =================================
kind               the fake answers                                      the driver raises
=================  ====================================================  =================================
``rate_limited``   HTTP 429, ``Retry-After: <retry_after>``              :class:`arbframe.RateLimited`
``banned``         HTTP 418, ``Retry-After: <retry_after>``              :class:`arbframe.Banned`
``unavailable``    HTTP 503                                              :class:`arbframe.VenueUnavailable`
``timeout``        nothing for ``delay`` seconds, then the normal answer :class:`arbframe.RequestTimeout`
``drop``           closes the connection without an answer               :class:`arbframe.TransportError`
``malformed``      HTTP 200 with a body that is not JSON                 :class:`arbframe.ProtocolError`
``auth``           HTTP 401 (the venue's error body)                     :class:`arbframe.AuthenticationError`
``venue_error``    the venue's own error (subclass: :meth:`venue_fault`) per the venue
=================  ====================================================  =================================

``inject(kind, count, path=...)`` limits a fault to one path (``skip=n``: the first ``n`` matching requests pass,
e.g. a 429 on a hedge's second order); ``clear()`` removes pending faults;
``fake.requests`` lists ``(method, path)`` of every request. WebSocket: ``drop_ws()`` closes every client now;
``fake.refuse_ws = True`` answers new WebSocket upgrades with HTTP 503 (the stream endpoint is down) until set
back (a venue's WebSocket handler checks it).

Matching engine (venue-neutral; a venue's routes call it and render the result in the venue's own format)::

    fake.balances["KRW"] = Decimal(10_000_000)          # free; fake.locked[asset] is held by open orders
    try:
        order = fake.place_limit("BTC", "buy", price, qty, client_id, tif="IOC")
    except OrderRefused as refused:                      # refused.reason: one of REFUSAL_REASONS -> venue error
        ...
    answer = await fake.after_accept(order, request)     # a fault after the order was placed, or None
    order = fake.get_order(client_id=...) / fake.get_order(venue_id=...)   # None when unknown
    order = fake.cancel(client_id=...)                   # unlocks what is left; OrderRefused when not open
    fake.check_order("BTC", "buy", price, qty)           # a test endpoint: checks only, nothing placed

``place_limit`` walks the fake's own book (:meth:`FakeVenue.book`) from the best level up to ``price``, at each
level's price, and consumes the depth it takes: :meth:`FakeVenue.book` shows what is left until the mid moves
(``set_mid``/``step`` give a fresh book). ``tif``: ``IOC`` (what is left is canceled), ``FOK`` (all or nothing)
or ``GTC`` (what is left rests, locked, until :meth:`FakeVenue.cancel`; resting orders do not match later).
Fees: ``fees={"buy": (rate, "base"|"quote"), "sell": (...)}`` (class default :attr:`FakeVenue.default_fees`: Upbit-like,
quote on both sides; Binance charges a buy in the base asset). A fee in the quote asset of a buy is paid on top of
the cost (locked with it); in the base asset of a buy it is taken from the coin received; a sell's fee in the
quote asset is taken from the proceeds. ``duplicate_client_id``: ``"any"`` (default, stricter: a client id is
never accepted twice, as Upbit's ``identifier``), ``"open"`` (refused only while an order with it is open, as
Binance), ``"allow"``. ``fake.placements`` lists every client id ``place_limit`` was called with, accepted or not
(tests assert that no client id was sent twice); ``fake.orders`` maps venue id -> :class:`FakeOrder`.

Order faults (:data:`ORDER_FAULT_KINDS`, also injected with ``inject``; taken by the next ``place_limit`` whose
``symbol``/``side`` match the optional ``symbol=``/``side=`` details, never by the request middleware):

=========================  ====================================================  ==================================
kind                       the fake does                                         the driver raises
=========================  ====================================================  ==================================
``reject``                 refuses the order (``OrderRefused("rejected")``)      :class:`arbframe.OrderRejected`
``insufficient_balance``   refuses as if the wallet were short                   :class:`arbframe.InsufficientFunds`
``partial``                fills only ``fraction`` (default 0.5) of what would   nothing: a partial fill
                           match; an IOC cancels the rest
``accept_then_timeout``    places and fills the order, then answers only after   :class:`arbframe.OrderStatusUnknown`
                           ``delay`` s (beyond the client's timeout), or never   (after its own lookups failed) or
                           (``drop=True``: the connection is closed)             the lookup settles it
``error_after_accept``     places and fills the order, then answers HTTP         :class:`arbframe.OrderStatusUnknown`
                           ``status`` (default 500)                              or the lookup settles it
``delayed_fill``           the order shows ``new`` (funds locked); the fills     nothing: the caller queries
                           appear on the lookup after ``polls`` (default 1)
                           lookups that still show it ``new``
``ws_drop``                (middleware) closes every WebSocket client, then      the stream reconnects
                           serves the request normally; ``drop_ws()`` does it
                           at once
=========================  ====================================================  ==================================
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any, ClassVar

from arbframe.core.errors import (
    AuthenticationError,
    Banned,
    InsufficientFunds,
    OrderRejected,
    OrderStatusUnknown,
    ProtocolError,
    RateLimited,
    RequestTimeout,
    TransportError,
    VenueUnavailable,
)

__all__ = ["EXPECTED_ERRORS", "FAULT_KINDS", "ORDER_FAULT_KINDS", "REFUSAL_REASONS", "FakeOrder", "FakeVenue",
           "Fault", "OrderRefused"]

#: faults taken by :meth:`FakeVenue.place_limit` (see the module table), never by the request middleware
ORDER_FAULT_KINDS = ("reject", "partial", "accept_then_timeout", "error_after_accept", "insufficient_balance",
                     "delayed_fill")

FAULT_KINDS = ("rate_limited", "banned", "unavailable", "timeout", "drop", "malformed", "auth", "venue_error",
               "ws_drop", *ORDER_FAULT_KINDS)

#: why :meth:`FakeVenue.place_limit` / :meth:`FakeVenue.cancel` refuse (``OrderRefused.reason``)
REFUSAL_REASONS = ("rejected", "insufficient_balance", "duplicate_client_id", "unknown_symbol", "bad_order",
                   "unknown_order", "not_open")

#: the states of a :class:`FakeOrder` (a venue's fake maps them to its own words)
ORDER_STATES = ("new", "partially_filled", "filled", "canceled")

EXPECTED_ERRORS: dict[str, type[Exception]] = {
    "rate_limited": RateLimited,
    "banned": Banned,
    "unavailable": VenueUnavailable,
    "timeout": RequestTimeout,
    "drop": TransportError,
    "malformed": ProtocolError,
    "auth": AuthenticationError,
    "reject": OrderRejected,
    "insufficient_balance": InsufficientFunds,
    "accept_then_timeout": OrderStatusUnknown,
    "error_after_accept": OrderStatusUnknown,
}


@dataclass
class Fault:
    kind: str
    count: int = 1
    path: str | None = None
    retry_after: float = 0.05
    delay: float = 1.0
    details: dict[str, Any] = field(default_factory=dict)


class OrderRefused(Exception):
    """:meth:`FakeVenue.place_limit` or :meth:`FakeVenue.cancel` refused; nothing changed at the venue.
    ``reason`` is one of :data:`REFUSAL_REASONS`; a venue's fake answers with its own error for each."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason


@dataclass
class FakeOrder:
    """One order in a fake venue's order store. Amounts are exact (no venue rounding)."""

    venue_id: str
    client_id: str
    symbol: str
    side: str  # "buy" | "sell"
    price: Decimal
    qty: Decimal
    tif: str
    status: str = "new"  # one of ORDER_STATES
    filled_qty: Decimal = Decimal(0)
    quote_qty: Decimal = Decimal(0)  # sum of price x qty over the fills
    fee: Decimal = Decimal(0)
    fee_asset: str = ""
    #: (price, qty, fee) per book level taken
    fills: list[tuple[Decimal, Decimal, Decimal]] = field(default_factory=list)
    locked_asset: str = ""
    locked: Decimal = Decimal(0)
    created_ms: int = 0
    updated_ms: int = 0
    #: the order fault applied at placement (``accept_then_timeout``, ``error_after_accept``, ``delayed_fill``...)
    fault: Fault | None = None
    #: fills a ``delayed_fill`` holds back until enough lookups have seen the order ``new``
    pending: list[tuple[Decimal, Decimal]] = field(default_factory=list)
    polls_left: int = 0

    @property
    def is_open(self) -> bool:
        return self.status in ("new", "partially_filled")

    @property
    def avg_price(self) -> Decimal | None:
        return self.quote_qty / self.filled_qty if self.filled_qty else None

    @property
    def remaining(self) -> Decimal:
        return self.qty - self.filled_qty


class FakeVenue:
    """Shared state and serving of a fake venue. Subclasses implement :meth:`routes` (and :meth:`venue_fault`)."""

    name = "venue"
    #: the quote currency of :meth:`book` levels' prices
    quote = "KRW"
    #: fee per side: (rate, "base" | "quote") -- the asset the venue charges it in
    default_fees: ClassVar[dict[str, tuple[Decimal, str]]] = {"buy": (Decimal("0.0005"), "quote"),
                                                              "sell": (Decimal("0.0005"), "quote")}
    #: "any": a client id is accepted once ever; "open": refused only while an order with it is open; "allow"
    duplicate_client_id = "any"
    #: the quantity grid of ``partial`` fills
    qty_step = Decimal("0.00000001")
    #: decimal places of a fill's fee (a venue charges what it reports: Binance 8, rounded down); None: exact
    fee_places: int | None = None

    def __init__(self, *, mids: dict[str, Decimal | int | str] | None = None, tick: Decimal | str = "1",
                 levels: int = 20, seed: int = 7, balances: dict[str, Decimal | int | str] | None = None,
                 fees: dict[str, tuple[Decimal | str, str]] | None = None,
                 duplicate_client_id: str | None = None) -> None:
        self.mids: dict[str, Decimal] = {k.upper(): Decimal(str(v)) for k, v in (mids or {}).items()}
        self.tick = Decimal(str(tick))
        self.levels = levels
        self.seed = seed
        self._rng = random.Random(seed)
        #: free amount per asset; :attr:`locked` holds what open orders hold
        self.balances: dict[str, Decimal] = {k.upper(): Decimal(str(v)) for k, v in (balances or {}).items()}
        self.locked: dict[str, Decimal] = {}
        #: fee per side: (rate, "base" | "quote"), ``fees=`` or the class's :attr:`default_fees`
        self.fees: dict[str, tuple[Decimal, str]] = dict(self.default_fees)
        if fees is not None:
            self.fees.update({side: (Decimal(str(rate)), asset) for side, (rate, asset) in fees.items()})
        if duplicate_client_id is not None:
            if duplicate_client_id not in ("any", "open", "allow"):
                raise ValueError("duplicate_client_id: one of any, open, allow")
            self.duplicate_client_id = duplicate_client_id
        self.orders: dict[str, FakeOrder] = {}
        self._by_client: dict[str, list[FakeOrder]] = {}
        self.placements: list[str] = []
        self._next_order_id = 1
        #: depth taken from the current book: symbol -> (rounded mid, {(side, price): qty taken})
        self._taken: dict[str, tuple[Decimal, dict[tuple[str, Decimal], Decimal]]] = {}
        self._closing: asyncio.Event | None = None
        self.requests: list[tuple[str, str]] = []
        self.faults: list[Fault] = []
        self.ws_clients: list[Any] = []
        self.refuse_ws = False  # answer WebSocket upgrades with 503 (the stream endpoint is down)
        self.steps = 0
        self._runner: Any = None
        self._site: Any = None
        self.port = 0
        self.host = "127.0.0.1"
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---------------------------------------------------------------------------------------------- books
    def price_step(self, symbol: str, price: Decimal) -> Decimal:
        """The price grid at ``price`` (override for venues with price bands)."""
        return self.tick

    def set_mid(self, symbol: str, price: Decimal | int | str) -> None:
        """Move ``symbol``'s mid; a new mid is a fresh book (the depth orders took is back)."""
        symbol, price = symbol.upper(), Decimal(str(price))
        if self.mids.get(symbol) != price:
            self._taken.pop(symbol, None)
        self.mids[symbol] = price

    def book(self, symbol: str, depth: int | None = None) -> tuple[list[tuple[Decimal, Decimal]],
                                                                  list[tuple[Decimal, Decimal]]]:
        """(bids best first, asks best first), at most ``depth`` levels: :meth:`base_book` less the depth orders
        took since the mid last moved. ``KeyError`` for an unknown symbol."""
        symbol = symbol.upper()
        bids, asks = self.base_book(symbol)
        taken = self._taken.get(symbol)
        if taken is not None and taken[0] == self._rounded_mid(symbol):

            def left(name: str, levels: list[tuple[Decimal, Decimal]]) -> list[tuple[Decimal, Decimal]]:
                out = [(p, q - taken[1].get((name, p), Decimal(0))) for p, q in levels]
                return [(p, q) for p, q in out if q > 0]

            bids, asks = left("bids", bids), left("asks", asks)
        count = max(1, depth or self.levels)
        return bids[:count], asks[:count]

    def base_book(self, symbol: str) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """The full book at the current mid: ``levels`` prices one grid step apart around it, seeded quantities
        (the same mid and seed always give the same book). Override for hand-written books."""
        step = self.price_step(symbol, self.mids[symbol])
        mid = self._rounded_mid(symbol)
        rng = random.Random(f"{self.seed}:{symbol}:{mid}")

        def side(sign: int) -> list[tuple[Decimal, Decimal]]:
            return [(mid + sign * step * (i + 1),
                     Decimal(rng.randint(1_000_000, 90_000_000)) / Decimal(100_000_000) * (i + 1))
                    for i in range(self.levels)]

        return side(-1), side(+1)

    def _rounded_mid(self, symbol: str) -> Decimal:
        mid = self.mids[symbol.upper()]
        step = self.price_step(symbol, mid)
        return (mid / step).to_integral_value() * step

    def step(self) -> None:
        """Move every mid by a seeded step of at most 0.1 % and tell WebSocket clients (:meth:`on_step`)."""
        for symbol, mid in list(self.mids.items()):
            move = Decimal(self._rng.randint(-10, 10)) / Decimal(10_000)
            grid = self.price_step(symbol, mid)
            moved = max(grid, ((mid * (1 + move)) / grid).to_integral_value() * grid)
            if moved != mid:
                self._taken.pop(symbol, None)
            self.mids[symbol] = moved
        self.steps += 1
        self.on_step()

    def on_step(self) -> None:
        """Called after :meth:`step`; a fake with WebSocket streams pushes new books here."""

    # -------------------------------------------------------------------------------------- matching engine
    def balance(self, asset: str) -> tuple[Decimal, Decimal]:
        """(free, locked) of ``asset``."""
        asset = asset.upper()
        return self.balances.get(asset, Decimal(0)), self.locked.get(asset, Decimal(0))

    def _now_ms(self) -> int:
        return int(time.time() * 1000)

    def _lock(self, asset: str, amount: Decimal) -> None:
        self.balances[asset] = self.balances.get(asset, Decimal(0)) - amount
        self.locked[asset] = self.locked.get(asset, Decimal(0)) + amount

    def _credit(self, asset: str, amount: Decimal) -> None:
        self.balances[asset] = self.balances.get(asset, Decimal(0)) + amount

    def _needs(self, symbol: str, side: str, price: Decimal, qty: Decimal) -> tuple[str, Decimal]:
        """What an order locks at placement: (asset, amount), its fee included when paid from that asset."""
        rate, fee_in = self.fees[side]
        if side == "buy":
            cost = price * qty
            return self.quote, cost + (cost * rate if fee_in == "quote" else Decimal(0))
        return symbol, qty + (qty * rate if fee_in == "base" else Decimal(0))

    def check_order(self, symbol: str, side: str, price: Decimal | int | str, qty: Decimal | int | str) -> None:
        """What a venue's test endpoint does (Binance ``/api/v3/order/test``, Upbit ``/v1/orders/test``): the
        checks of :meth:`place_limit` (symbol, order, balance), nothing placed, no fault taken; raises
        :class:`OrderRefused` like it."""
        symbol, side = symbol.upper(), side.lower()
        price, qty = Decimal(str(price)), Decimal(str(qty))
        if symbol not in self.mids:
            raise OrderRefused("unknown_symbol", f"unknown symbol {symbol}")
        if side not in ("buy", "sell") or price <= 0 or qty <= 0:
            raise OrderRefused("bad_order", f"bad order {side} {qty} @ {price}")
        asset, amount = self._needs(symbol, side, price, qty)
        if self.balances.get(asset, Decimal(0)) < amount:
            raise OrderRefused("insufficient_balance", f"insufficient {asset} for {side} {qty} @ {price}")

    def place_limit(self, symbol: str, side: str, price: Decimal | int | str, qty: Decimal | int | str,
                    client_id: str, tif: str = "IOC") -> FakeOrder:
        """Place a limit order and match it against the book at once (see the module docstring). Returns the
        stored :class:`FakeOrder`; raises :class:`OrderRefused` (nothing changed) for a refusal or a
        ``reject``/``insufficient_balance`` fault."""
        symbol, side, tif = symbol.upper(), side.lower(), tif.upper()
        price, qty = Decimal(str(price)), Decimal(str(qty))
        self.placements.append(client_id)
        if symbol not in self.mids:
            raise OrderRefused("unknown_symbol", f"unknown symbol {symbol}")
        if side not in ("buy", "sell") or tif not in ("IOC", "FOK", "GTC") or price <= 0 or qty <= 0:
            raise OrderRefused("bad_order", f"bad order {side} {qty} @ {price} {tif}")
        if self.duplicate_client_id != "allow":
            same = self._by_client.get(client_id, [])
            if (self.duplicate_client_id == "any" and same) or any(o.is_open for o in same):
                raise OrderRefused("duplicate_client_id", f"duplicate client order id {client_id}")
        fault = self.take_order_fault(symbol, side)
        if fault is not None and fault.kind == "reject":
            raise OrderRefused("rejected", str(fault.details.get("message", "order rejected")))
        lock_asset, lock_amount = self._needs(symbol, side, price, qty)
        if (fault is not None and fault.kind == "insufficient_balance") or \
                self.balances.get(lock_asset, Decimal(0)) < lock_amount:
            raise OrderRefused("insufficient_balance", f"insufficient {lock_asset} for {side} {qty} @ {price}")
        now = self._now_ms()
        order = FakeOrder(venue_id=str(self._next_order_id), client_id=client_id, symbol=symbol, side=side,
                          price=price, qty=qty, tif=tif, locked_asset=lock_asset, locked=lock_amount,
                          created_ms=now, updated_ms=now, fault=fault,
                          fee_asset=self.quote if self.fees[side][1] == "quote" else symbol)
        self._next_order_id += 1
        self._lock(lock_asset, lock_amount)
        self.orders[order.venue_id] = order
        self._by_client.setdefault(client_id, []).append(order)
        takes = self._walk(symbol, side, price, qty)
        if tif == "FOK" and sum((q for _, q in takes), Decimal(0)) < qty:
            takes = []
        if fault is not None and fault.kind == "partial":
            want = sum((q for _, q in takes), Decimal(0)) * Decimal(str(fault.details.get("fraction", "0.5")))
            want = (want / self.qty_step).to_integral_value(rounding=ROUND_DOWN) * self.qty_step
            takes = self._cap(takes, want)
        if fault is not None and fault.kind == "delayed_fill":
            order.pending = takes
            order.polls_left = int(fault.details.get("polls", 1))
        else:
            self._fill(order, takes)
            self._finish_placement(order)
        self.on_order(order)
        return order

    def _walk(self, symbol: str, side: str, price: Decimal, qty: Decimal) -> list[tuple[Decimal, Decimal]]:
        """(price, qty) per level an order of ``qty`` up to ``price`` would take (depth not yet consumed)."""
        bids, asks = self.book(symbol)
        levels = asks if side == "buy" else bids
        takes: list[tuple[Decimal, Decimal]] = []
        left = qty
        for level_price, level_qty in levels:
            if left <= 0 or (level_price > price if side == "buy" else level_price < price):
                break
            take = min(left, level_qty)
            takes.append((level_price, take))
            left -= take
        return takes

    @staticmethod
    def _cap(takes: list[tuple[Decimal, Decimal]], want: Decimal) -> list[tuple[Decimal, Decimal]]:
        out = []
        for level_price, take in takes:
            if want <= 0:
                break
            out.append((level_price, min(take, want)))
            want -= min(take, want)
        return out

    def _fill(self, order: FakeOrder, takes: list[tuple[Decimal, Decimal]]) -> None:
        """Execute ``takes`` for ``order``: consume depth, settle balances and fees, update the order."""
        if not takes:
            return
        symbol, side = order.symbol, order.side
        mid = self._rounded_mid(symbol)
        taken_mid, taken = self._taken.get(symbol, (mid, {}))
        if taken_mid != mid:
            taken = {}
        book_side = "asks" if side == "buy" else "bids"
        rate, fee_in = self.fees[side]
        for level_price, take in takes:
            taken[(book_side, level_price)] = taken.get((book_side, level_price), Decimal(0)) + take
            notional = level_price * take
            fee = (notional if fee_in == "quote" else take) * rate
            if self.fee_places is not None:
                fee = fee.quantize(Decimal(1).scaleb(-self.fee_places), ROUND_DOWN)
            if side == "buy":  # locked quote pays the cost (and a quote fee); the coin arrives (less a base fee)
                spent = notional + (fee if fee_in == "quote" else Decimal(0))
                self.locked[order.locked_asset] -= spent
                order.locked -= spent
                self._credit(symbol, take - (fee if fee_in == "base" else Decimal(0)))
            else:  # locked coin is delivered (with a base fee); the quote arrives (less a quote fee)
                spent = take + (fee if fee_in == "base" else Decimal(0))
                self.locked[order.locked_asset] -= spent
                order.locked -= spent
                self._credit(self.quote, notional - (fee if fee_in == "quote" else Decimal(0)))
            order.fills.append((level_price, take, fee))
            order.filled_qty += take
            order.quote_qty += notional
            order.fee += fee
        self._taken[symbol] = (mid, taken)
        order.status = "filled" if order.filled_qty >= order.qty else "partially_filled"
        order.updated_ms = self._now_ms()

    def _finish_placement(self, order: FakeOrder) -> None:
        """IOC/FOK: cancel what is left (unlocking it); GTC rests. A filled order gives back what it locked
        beyond what it paid (it filled at better prices than its limit)."""
        if order.status == "filled":
            self._release(order)
        elif order.is_open and order.tif in ("IOC", "FOK"):
            self._release(order)
            order.status = "canceled"

    def _release(self, order: FakeOrder) -> None:
        if order.locked:
            self.locked[order.locked_asset] -= order.locked
            self._credit(order.locked_asset, order.locked)
            order.locked = Decimal(0)
        order.updated_ms = self._now_ms()

    def _lookup(self, client_id: str | None, venue_id: str | None) -> FakeOrder | None:
        if venue_id is not None:
            return self.orders.get(str(venue_id))
        same = self._by_client.get(client_id or "", [])
        return same[-1] if same else None

    def get_order(self, client_id: str | None = None, venue_id: str | None = None) -> FakeOrder | None:
        """The order by venue id or client id (the latest with that client id), None when unknown. A
        ``delayed_fill`` order's fills appear on the lookup after ``polls`` lookups have seen it ``new``."""
        order = self._lookup(client_id, venue_id)
        if order is not None and order.pending and order.is_open:
            if order.polls_left > 0:
                order.polls_left -= 1
            else:
                self.settle(order)
        return order

    def settle(self, order: FakeOrder) -> None:
        """Apply a ``delayed_fill`` order's held-back fills now (and cancel an IOC's rest)."""
        takes, order.pending = order.pending, []
        # the book may have moved meanwhile: take what is still there at the held-back levels' limit
        self._fill(order, self._walk(order.symbol, order.side, order.price, sum((q for _, q in takes), Decimal(0)))
                   if takes else [])
        self._finish_placement(order)
        self.on_order(order)

    def cancel(self, client_id: str | None = None, venue_id: str | None = None) -> FakeOrder:
        """Cancel an open order (unlocking what it holds); :class:`OrderRefused` (``unknown_order`` /
        ``not_open``) otherwise. A ``delayed_fill`` order canceled before its fills showed never fills."""
        order = self._lookup(client_id, venue_id)
        if order is None:
            raise OrderRefused("unknown_order", f"unknown order {client_id or venue_id}")
        if not order.is_open:
            raise OrderRefused("not_open", f"order {order.venue_id} is {order.status}")
        order.pending = []
        self._release(order)
        order.status = "canceled"
        self.on_order(order)
        return order

    def on_order(self, order: FakeOrder) -> None:
        """Called after an order was placed or changed (a fake with a user-data stream pushes it here)."""

    async def after_accept(self, order: FakeOrder, request: Any = None) -> Any:
        """The route's answer when an order fault strikes after the order was placed, else None (answer
        normally): ``accept_then_timeout`` waits ``delay`` seconds (then None: the late normal answer) or closes
        the connection (``drop=True``); ``error_after_accept`` answers HTTP ``status`` (default 500)."""
        fault = order.fault
        if fault is None:
            return None
        if fault.kind == "accept_then_timeout":
            if fault.details.get("drop"):
                transport = getattr(request, "transport", None)
                if transport is not None:
                    transport.abort()
                raise asyncio.CancelledError
            if self._closing is None:
                self._closing = asyncio.Event()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._closing.wait(), fault.delay)
            return None
        if fault.kind == "error_after_accept":
            from aiohttp import web

            return web.json_response({"error": "internal error"}, status=int(fault.details.get("status", 500)))
        return None

    # --------------------------------------------------------------------------------------------- faults
    def inject(self, kind: str, count: int = 1, *, path: str | None = None, **details: Any) -> Fault:
        """The next ``count`` requests (to ``path`` if given) fail as ``kind`` (see the module table)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {', '.join(FAULT_KINDS)}")
        known = {k: details.pop(k) for k in ("retry_after", "delay") if k in details}
        fault = Fault(kind, count, path, details=details, **known)
        self.faults.append(fault)
        return fault

    def clear(self) -> None:
        self.faults.clear()

    def take_fault(self, path: str) -> Fault | None:
        """The next request fault for ``path`` (order faults are left to :meth:`take_order_fault`)."""
        for fault in self.faults:
            if fault.kind in ORDER_FAULT_KINDS:
                continue
            if fault.path is None or fault.path == path:
                skip = int(fault.details.get("skip", 0))
                if skip > 0:
                    fault.details["skip"] = skip - 1
                    return None
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def take_order_fault(self, symbol: str, side: str) -> Fault | None:
        """The next order fault whose ``symbol``/``side`` details (when given) match."""
        for fault in self.faults:
            if fault.kind not in ORDER_FAULT_KINDS:
                continue
            want_symbol, want_side = fault.details.get("symbol"), fault.details.get("side")
            if want_symbol is not None and str(want_symbol).upper() != symbol:
                continue
            if want_side is not None and str(want_side).lower() != side:
                continue
            fault.count -= 1
            if fault.count <= 0:
                self.faults.remove(fault)
            return fault
        return None

    async def venue_fault(self, fault: Fault, request: Any) -> Any:
        """The answer for a venue-specific fault (``venue_error``, ``auth``); override per venue."""
        from aiohttp import web

        status = 401 if fault.kind == "auth" else 400
        return web.json_response({"error": fault.kind, **fault.details}, status=status)

    async def _apply_fault(self, fault: Fault, request: Any) -> Any:
        from aiohttp import web

        kind = fault.kind
        if kind == "rate_limited":
            return web.json_response({"error": "too many requests"}, status=429,
                                     headers={"Retry-After": f"{fault.retry_after:g}"})
        if kind == "banned":
            return web.json_response({"error": "banned"}, status=418,
                                     headers={"Retry-After": f"{fault.retry_after:g}"})
        if kind == "unavailable":
            return web.json_response({"error": "unavailable"}, status=503)
        if kind == "malformed":
            return web.Response(status=200, text="<html>not json", content_type="text/html")
        if kind == "drop":
            transport = request.transport
            if transport is not None:
                transport.abort()
            raise asyncio.CancelledError
        return await self.venue_fault(fault, request)

    # --------------------------------------------------------------------------------------------- serving
    def routes(self, app: Any) -> None:
        """Add the venue's routes to the aiohttp ``app`` (override)."""
        raise NotImplementedError

    def _app(self) -> Any:
        from aiohttp import web

        @web.middleware
        async def faults(request: Any, handler: Any) -> Any:
            self.requests.append((request.method, request.path))
            fault = self.take_fault(request.path)
            if fault is not None:
                if fault.kind == "timeout":
                    await asyncio.sleep(fault.delay)
                elif fault.kind == "ws_drop":
                    await self.drop_ws()
                else:
                    return await self._apply_fault(fault, request)
            return await handler(request)

        app = web.Application(middlewares=[faults])
        self.routes(app)
        return app

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def start(self) -> FakeVenue:
        from aiohttp import web

        # no access log: a request still in flight when a test ends would log to pytest's closed capture stream
        self._runner = web.AppRunner(self._app(), handle_signals=False, access_log=None)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.host, 0)
        await self._site.start()
        self.port = self._site._server.sockets[0].getsockname()[1]
        return self

    async def drop_ws(self) -> int:
        """Close every WebSocket client now (the ``ws_drop`` fault); returns how many were closed."""
        clients, self.ws_clients = list(self.ws_clients), []
        for ws in clients:
            with contextlib.suppress(Exception):
                await ws.close()
        return len(clients)

    async def close(self) -> None:
        """Close WebSocket clients and stop serving; safe to call twice. Answers held back by
        ``accept_then_timeout`` are released."""
        if self._closing is not None:
            self._closing.set()
        await self.drop_ws()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> FakeVenue:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @contextlib.contextmanager
    def in_thread(self) -> Iterator[FakeVenue]:
        """Serve from a private event loop in a thread (for synchronous tests and subprocess runs)."""
        loop = asyncio.new_event_loop()
        self._loop = loop  # tests reach the serving loop: asyncio.run_coroutine_threadsafe(fake.drop_ws(), fake._loop)
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self.start())
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=serve, name=f"fake-{self.name}", daemon=True)
        self._thread.start()
        ready.wait(10)
        try:
            yield self
        finally:
            asyncio.run_coroutine_threadsafe(self.close(), loop).result(10)
            # a handler still holding an answer (a ``timeout`` fault's delay, a client killed mid-request) would
            # be destroyed pending when the loop is gone, and its finalizer could then run anywhere in a later test
            asyncio.run_coroutine_threadsafe(_cancel_others(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(10)
            loop.close()
            self._thread = None


async def _cancel_others() -> None:
    """Cancel every other task of the running loop and wait for them to end."""
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
