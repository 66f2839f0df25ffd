"""Orders the execution layer owns: the state machine, client order ids, and what a fill changes.

States (:class:`arbframe.OrderStatus`)::

    new ──> sent ──> open / partially_filled ──> filled | canceled
     │        ├────> filled | canceled | rejected                      (final)
     │        └────> unknown ──> (a lookup by client id) ──> any state above
     └────> rejected  (refused before sending: a limit, the kill switch)

``sent`` is written to storage *before* the request leaves, so a crash while sending leaves an order the
reconciliation looks up by client id. ``unknown``: the request was sent and its answer was lost (timeout, dropped
connection, 5xx): nothing else is sent for that leg until a lookup says what happened. An IOC order whose rest
the venue canceled is ``canceled`` with ``filled_qty > 0``.

Client order ids are derived, never random: ``af`` + 16 hex digits of a hash of the position id + ``-`` +
purpose (``o`` entry, ``c`` close) + leg (``d`` domestic, ``f`` foreign) + kind (``n`` first order, ``h`` hedge
retry, ``u`` unwind) + attempt (a counter that only grows per position, purpose and leg). They fit Binance's
``newClientOrderId`` (36 characters, ``[A-Za-z0-9_-]``) and Upbit's ``identifier``; a given (position, purpose,
leg, attempt) always gives the same id, and no two attempts share one.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from arbframe.core.models import ZERO, Order, OrderStatus, OrderType, Side, Trade

S = OrderStatus

#: states an order never leaves
FINAL = frozenset({S.FILLED, S.CANCELED, S.REJECTED})

#: state -> the states it may move to
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.NEW: frozenset({S.SENT, S.REJECTED}),
    S.SENT: frozenset({S.SENT, S.OPEN, S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.REJECTED, S.UNKNOWN}),
    S.OPEN: frozenset({S.OPEN, S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.UNKNOWN}),
    S.PARTIALLY_FILLED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.UNKNOWN}),
    S.UNKNOWN: frozenset({S.UNKNOWN, S.OPEN, S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.REJECTED}),
    S.FILLED: frozenset(),
    S.CANCELED: frozenset(),
    S.REJECTED: frozenset(),
}

PURPOSES = {"open": "o", "close": "c"}
LEGS = {"domestic": "d", "foreign": "f"}
KINDS = {"first": "n", "hedge": "h", "unwind": "u"}
_CID = re.compile(r"^af([0-9a-f]{16})-([oc])([df])([nhu])(\d+)$")


class IllegalTransition(RuntimeError):
    """A state change the state machine does not allow (a bug, never a venue's doing)."""


@functools.lru_cache(maxsize=256)  # both legs of a hedge (and its retries) share one position id
def position_digest(position_id: str) -> str:
    return hashlib.blake2b(position_id.encode(), digest_size=8).hexdigest()


def client_order_id(position_id: str, purpose: str, leg: str, kind: str, attempt: int) -> str:
    """The client order id of one order (see the module docstring)."""
    return f"af{position_digest(position_id)}-{PURPOSES[purpose]}{LEGS[leg]}{KINDS[kind]}{attempt}"


@dataclass(frozen=True, slots=True)
class ClientId:
    digest: str
    purpose: str
    leg: str
    kind: str
    attempt: int


def parse_client_order_id(cid: str | None) -> ClientId | None:
    """The parts of one of our client order ids; None for anything else (an order placed by hand)."""
    match = _CID.match(cid or "")
    if match is None:
        return None
    digest, purpose, leg, kind, attempt = match.groups()
    inv = {v: k for k, v in PURPOSES.items()}, {v: k for k, v in LEGS.items()}, {v: k for k, v in KINDS.items()}
    return ClientId(digest, inv[0][purpose], inv[1][leg], inv[2][kind], int(attempt))


def check_transition(old: OrderStatus, new: OrderStatus) -> None:
    if new not in TRANSITIONS[old]:
        raise IllegalTransition(f"order state {old.value} -> {new.value} is not allowed")


def filled_quote(order: Order) -> Decimal:
    """The quote amount of ``order``'s fills: the venue's figure, else filled quantity x average price."""
    if order.filled_quote is not None:
        return order.filled_quote
    if order.filled_qty and order.avg_price is not None:
        return order.filled_qty * order.avg_price
    return ZERO


def order_fees(order: Order) -> tuple[tuple[str, Decimal], ...]:
    if order.fees:
        return order.fees
    return ((order.fee_currency, order.fee),) if order.fee else ()


def order_changes(order: Order, quote_currency: str) -> dict[tuple[str, str], Decimal]:
    """What ``order``'s fills changed in its venue's balances: (venue, asset) -> amount, fees included."""
    if not order.filled_qty:
        return {}
    venue = order.exchange
    sign = Decimal(1) if order.side is Side.BUY else Decimal(-1)
    out = {(venue, order.symbol): sign * order.filled_qty, (venue, quote_currency): -sign * filled_quote(order)}
    for asset, amount in order_fees(order):
        key = (venue, asset or quote_currency)
        out[key] = out.get(key, ZERO) - amount
    return out


def coin_delta(order: Order) -> Decimal:
    """The coin ``order`` moved into (+) or out of (-) its venue's wallet, a fee paid in the coin included."""
    sign = Decimal(1) if order.side is Side.BUY else Decimal(-1)
    fee = sum((amount for asset, amount in order_fees(order) if asset == order.symbol), ZERO)
    return sign * order.filled_qty - fee


class ManagedOrder:
    """One order from ``new`` to a final state. :meth:`record` is the row written at each state change (a new
    ``orders`` row each time: ``<client id>.<n>``; the latest row of a client id is its state)."""

    __slots__ = ("client_order_id", "exchange", "exchange_order_id", "kind", "leg", "note", "order_type",
                 "position_id", "price", "purpose", "qty", "quote_currency", "sent_at", "seq", "side", "state",
                 "symbol", "venue_order")

    def __init__(self, *, exchange: str, symbol: str, side: Side, qty: Decimal, price: Decimal | None,
                 position_id: str, purpose: str, leg: str, kind: str, attempt: int, quote_currency: str,
                 order_type: OrderType = OrderType.LIMIT) -> None:
        self.exchange = exchange
        self.symbol = symbol
        self.side = side
        self.qty = qty
        self.price = price
        self.order_type = order_type
        self.position_id = position_id
        self.purpose = purpose
        self.leg = leg
        self.kind = kind
        self.quote_currency = quote_currency
        self.client_order_id = client_order_id(position_id, purpose, leg, kind, attempt)
        self.state = S.NEW
        self.seq = 0
        self.venue_order: Order | None = None  # the venue's latest answer
        self.exchange_order_id: str | None = None
        self.note = ""
        self.sent_at = 0.0  # monotonic clock of the last send

    @classmethod
    def adopt(cls, stored: Order, quote_currency: str) -> ManagedOrder:
        """A stored order taken over by the reconciliation (its state and fills as last written)."""
        parsed = parse_client_order_id(stored.client_order_id)
        self = cls.__new__(cls)
        self.exchange, self.symbol, self.side, self.qty = stored.exchange, stored.symbol, stored.side, stored.qty
        self.price, self.order_type, self.position_id = stored.price, stored.order_type, stored.position_id or ""
        self.purpose = parsed.purpose if parsed else "open"
        self.leg = parsed.leg if parsed else "domestic"
        self.kind = parsed.kind if parsed else "first"
        self.quote_currency = quote_currency
        self.client_order_id = stored.client_order_id or stored.id
        self.state = stored.status
        self.seq = _seq_of(stored.id)
        self.venue_order = stored if stored.filled_qty else None
        self.exchange_order_id = stored.exchange_order_id
        self.note = ""
        self.sent_at = 0.0
        return self

    # -------------------------------------------------------------------------------------------- state
    @property
    def final(self) -> bool:
        return self.state in FINAL

    @property
    def filled_qty(self) -> Decimal:
        return self.venue_order.filled_qty if self.venue_order is not None else ZERO

    def move(self, state: OrderStatus, venue_order: Order | None = None, note: str = "") -> None:
        """Change state (checked against :data:`TRANSITIONS`) and take the venue's answer, if any."""
        check_transition(self.state, state)
        self.state = state
        if venue_order is not None:
            if venue_order.filled_qty < self.filled_qty:  # a lagging read never takes fills back
                venue_order = self.venue_order
            self.venue_order = venue_order
            if venue_order is not None and venue_order.exchange_order_id:
                self.exchange_order_id = venue_order.exchange_order_id
        if note:
            self.note = note
        self.seq += 1

    def record(self, ts: datetime, simulated: bool = False, instance_id: str = "") -> Order:
        """The ``orders`` row of the current state (``instance_id``: the runner's, stamped here rather than copied
        in by the storage writer)."""
        v = self.venue_order
        return Order(
            id=f"{self.client_order_id}.{self.seq}", ts=ts, exchange=self.exchange, symbol=self.symbol,
            side=self.side, order_type=self.order_type, qty=self.qty, price=self.price, status=self.state,
            filled_qty=v.filled_qty if v else ZERO, avg_price=v.avg_price if v else None,
            fee=v.fee if v else ZERO, fee_currency=v.fee_currency if v else "", position_id=self.position_id,
            client_order_id=self.client_order_id, exchange_order_id=self.exchange_order_id, simulated=simulated,
            fees=v.fees if v else (), filled_quote=v.filled_quote if v else None, instance_id=instance_id,
        )

    def changes(self) -> dict[tuple[str, str], Decimal]:
        return order_changes(self.record(datetime.min), self.quote_currency) if self.venue_order else {}

    def coin_delta(self) -> Decimal:
        return coin_delta(self.venue_order) if self.venue_order is not None else ZERO

    def trade(self, trade_id: str, ts: datetime) -> Trade | None:
        """One trade row for the order's fills (average price, total fee), None when nothing filled."""
        v = self.venue_order
        if v is None or not v.filled_qty:
            return None
        quote = filled_quote(v)
        fees = order_fees(v)
        return Trade(id=trade_id, ts=ts, order_id=self.client_order_id, exchange=self.exchange, symbol=self.symbol,
                     side=self.side, price=quote / v.filled_qty, qty=v.filled_qty,
                     fee=fees[0][1] if fees else ZERO, fee_currency=fees[0][0] if fees else "",
                     position_id=self.position_id)

    def describe(self) -> str:
        price = f" @ {self.price}" if self.price is not None else ""
        return (f"{self.exchange} {self.side.value} {self.qty} {self.symbol}{price} "
                f"[{self.client_order_id}]")


def status_of(venue_order: Order) -> OrderStatus:
    """Our state for a venue's answer (``new``/``open`` at the venue is ``open`` here)."""
    status = venue_order.status
    if status in (S.NEW, S.OPEN):
        return S.PARTIALLY_FILLED if venue_order.filled_qty else S.OPEN
    if status is S.SENT:
        return S.OPEN
    return status


def _seq_of(record_id: str) -> int:
    head, _, tail = record_id.rpartition(".")
    return int(tail) if head and tail.isdigit() else 0


def latest_states(rows: list[Order]) -> dict[str, Order]:
    """Client order id -> its latest stored row (the highest ``.<n>``; then the latest ``ts``)."""
    out: dict[str, Order] = {}
    for row in rows:
        cid = row.client_order_id
        if not cid:
            continue
        held = out.get(cid)
        if held is None or (_seq_of(row.id), row.ts) >= (_seq_of(held.id), held.ts):
            out[cid] = row
    return out


def with_status(order: Order, status: OrderStatus) -> Order:
    return replace(order, status=status)
