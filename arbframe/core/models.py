"""The data model: frozen dataclasses with exact decimals and aware UTC timestamps.

Every persisted record (`Spread`, `Position`, `Order`, `Trade`, `FxRate`, `ErrorRecord`) carries a stable ``id``
made when the event happens, so writing it twice (a replay, a CSV -> PostgreSQL migration) is harmless.
Column order of each table is the field order of its dataclass (see :mod:`arbframe.core.records`).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from enum import Enum

ZERO = Decimal(0)


def utcnow() -> datetime:
    """Aware UTC now; the only clock the kernel reads directly."""
    return datetime.now(timezone.utc)


def new_id() -> str:
    """A random 32-hex-digit id for live events."""
    return uuid.uuid4().hex


class IdGenerator:
    """Ids from a seeded RNG, so a backtest replayed twice writes byte-identical files."""

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed) if seed is not None else None

    def __call__(self) -> str:
        if self._rng is None:
            return new_id()
        return f"{self._rng.getrandbits(128):032x}"


class Side(str, Enum):
    BUY = "buy"
    SELL = "sell"

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class Direction(str, Enum):
    """Which way a hedged position leans.

    ``kimchi``: the domestic (KRW) venue is dear -> sell there, buy on the foreign (USDT) venue.
    ``reverse``: the domestic venue is cheap -> buy there, sell on the foreign venue.
    """

    KIMCHI = "kimchi"
    REVERSE = "reverse"

    @property
    def domestic_side(self) -> Side:
        return Side.SELL if self is Direction.KIMCHI else Side.BUY

    @property
    def foreign_side(self) -> Side:
        return self.domestic_side.opposite


class OrderType(str, Enum):
    LIMIT = "limit"
    MARKET = "market"


class OrderStatus(str, Enum):
    """An order's state. ``sent``: handed to the venue, no answer yet; ``unknown``: sent and the answer was lost
    (a timeout or 5xx after sending): whether the venue placed it is found out by looking it up by client id
    (the execution layer's state machine, :mod:`arbframe.execution.orders`)."""

    NEW = "new"
    OPEN = "open"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    SENT = "sent"
    UNKNOWN = "unknown"


class PositionStatus(str, Enum):
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class BookLevel:
    price: Decimal
    qty: Decimal


@dataclass(frozen=True, slots=True)
class Quote:
    """Top of book on one venue, in that venue's quote currency."""

    exchange: str
    symbol: str
    bid: Decimal
    ask: Decimal
    ts: datetime
    simulated: bool = False


@dataclass(frozen=True, slots=True)
class OrderBook:
    """Depth on one venue: bids best (highest) first, asks best (lowest) first."""

    exchange: str
    symbol: str
    bids: tuple[BookLevel, ...]
    asks: tuple[BookLevel, ...]
    ts: datetime
    simulated: bool = False

    @property
    def best_bid(self) -> Decimal | None:
        return self.bids[0].price if self.bids else None

    @property
    def best_ask(self) -> Decimal | None:
        return self.asks[0].price if self.asks else None

    def quote(self) -> Quote | None:
        if not self.bids or not self.asks:
            return None
        return Quote(self.exchange, self.symbol, self.bids[0].price, self.asks[0].price, self.ts, self.simulated)

    def levels(self, side: Side) -> tuple[BookLevel, ...]:
        """The levels an order of ``side`` consumes: a buy lifts asks, a sell hits bids."""
        return self.asks if side is Side.BUY else self.bids

    def vwap(self, side: Side, qty: Decimal) -> Decimal | None:
        """Average price for ``qty`` walked through the book; None when the book is too thin."""
        if qty <= 0:
            return None
        remaining = qty
        cost = ZERO
        for level in self.levels(side):
            take = level.qty if level.qty < remaining else remaining
            cost += take * level.price
            remaining -= take
            if remaining <= 0:
                return cost / qty
        return None

    def depth_qty(self, side: Side) -> Decimal:
        return sum((lvl.qty for lvl in self.levels(side)), ZERO)


@dataclass(frozen=True, slots=True)
class FxRate:
    """A conversion rate: 1 ``base`` = ``rate`` ``quote`` (USD/KRW by default)."""

    id: str
    ts: datetime
    rate: Decimal
    source: str
    base: str = "USD"
    quote: str = "KRW"
    simulated: bool = False
    #: the runner that wrote the record (``service.instance_id``); "" for records written before it existed
    instance_id: str = ""

    def age_seconds(self, now: datetime) -> float:
        return max(0.0, (now - self.ts).total_seconds())


@dataclass(frozen=True, slots=True)
class Spread:
    """One observed executable premium for one symbol and direction.

    Prices are book VWAPs for ``qty`` in each venue's own currency. ``premium`` is gross; ``net_premium`` is after
    both venues' fees for the round trip. ``tether_premium`` and ``usdt_premium`` are set when a KRW-USDT quote
    is known: ``(1 + premium) = (1 + usdt_premium) * (1 + tether_premium)``.
    """

    id: str
    ts: datetime
    symbol: str
    direction: Direction
    domestic_exchange: str
    foreign_exchange: str
    qty: Decimal
    domestic_price: Decimal
    foreign_price: Decimal
    fx_rate: Decimal
    fx_source: str
    fx_age_seconds: Decimal
    premium: Decimal
    net_premium: Decimal
    tether_premium: Decimal | None = None
    usdt_premium: Decimal | None = None
    simulated: bool = False
    #: the runner that wrote the record (``service.instance_id``); "" for records written before it existed
    instance_id: str = ""


@dataclass(frozen=True, slots=True)
class Order:
    """One leg sent to (or simulated on) a venue."""

    id: str
    ts: datetime
    exchange: str
    symbol: str
    side: Side
    order_type: OrderType
    qty: Decimal
    price: Decimal | None = None
    status: OrderStatus = OrderStatus.NEW
    filled_qty: Decimal = ZERO
    avg_price: Decimal | None = None
    fee: Decimal = ZERO
    fee_currency: str = ""
    position_id: str | None = None
    client_order_id: str | None = None
    exchange_order_id: str | None = None
    simulated: bool = False
    #: the runner that wrote the record (``service.instance_id``); "" for records written before it existed
    instance_id: str = ""
    #: Every fee asset and amount when a venue charged in more than one (Binance: BNB until it runs out, then
    #: the received asset); ``fee``/``fee_currency`` are the first of them. Not a table column (metadata), so
    #: stored tables and their readers are unchanged; empty when the fee is in one asset.
    fees: tuple[tuple[str, Decimal], ...] = field(default=(), compare=False, metadata={"column": False})
    #: The quote-currency amount of the fills (sum of price x quantity) as the venue reports it, exact; None when
    #: not known (then ``filled_qty x avg_price``). Not a table column (metadata), like ``fees``.
    filled_quote: Decimal | None = field(default=None, compare=False, metadata={"column": False})


@dataclass(frozen=True, slots=True)
class Balance:
    """One asset on one venue: ``free`` can be spent now, ``locked`` is held by open orders (or withdrawals)."""

    free: Decimal
    locked: Decimal = ZERO

    @property
    def total(self) -> Decimal:
        return self.free + self.locked


@dataclass(frozen=True, slots=True)
class Trade:
    """One execution (fill) of an order, as recorded."""

    id: str
    ts: datetime
    order_id: str
    exchange: str
    symbol: str
    side: Side
    price: Decimal
    qty: Decimal
    fee: Decimal
    fee_currency: str
    position_id: str | None = None
    simulated: bool = False
    #: the runner that wrote the record (``service.instance_id``); "" for records written before it existed
    instance_id: str = ""


@dataclass(frozen=True, slots=True)
class Fill:
    """What walking a book for an order gave (not persisted; becomes a `Trade`)."""

    exchange: str
    symbol: str
    side: Side
    qty: Decimal
    avg_price: Decimal
    notional: Decimal
    fee: Decimal
    fee_currency: str
    slippage: Decimal  # avg_price vs best price, as a fraction (>= 0 is worse for us)


@dataclass(frozen=True, slots=True)
class Position:
    """A hedged pair of legs. The same id is written when it opens and again, with exit fields, when it closes."""

    id: str
    symbol: str
    direction: Direction
    status: PositionStatus
    opened_at: datetime
    qty: Decimal
    domestic_exchange: str
    foreign_exchange: str
    entry_domestic_price: Decimal
    entry_foreign_price: Decimal
    entry_fx_rate: Decimal
    entry_premium: Decimal
    entry_fees_krw: Decimal = ZERO
    closed_at: datetime | None = None
    exit_domestic_price: Decimal | None = None
    exit_foreign_price: Decimal | None = None
    exit_fx_rate: Decimal | None = None
    exit_premium: Decimal | None = None
    exit_fees_krw: Decimal | None = None
    realized_pnl_krw: Decimal | None = None
    close_reason: str | None = None
    simulated: bool = False
    #: the runner that wrote the record (``service.instance_id``); "" for records written before it existed
    instance_id: str = ""
    balance_changes: str | None = None  # what its legs changed in the wallets: "venue:asset=amount ..." (fees in)
    coin_residue: Decimal | None = None  # net coin its legs left across both venues (lot rounding, coin fees)
    exit_coin_mark_krw: Decimal | None = None  # the coin mark (domestic mid) its realized PnL was valued at

    @property
    def is_open(self) -> bool:
        return self.status is PositionStatus.OPEN


@dataclass(frozen=True, slots=True)
class ErrorRecord:
    id: str
    ts: datetime
    component: str
    message: str
    kind: str = "error"
    detail: str | None = None
    #: the runner that wrote the record (``service.instance_id``); "" for records written before it existed
    instance_id: str = ""


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """What the engine asks an exchange to do; ``quote_amount`` is for market buys sized in quote currency.

    ``time_in_force`` (limit orders): ``GTC`` rests what does not fill, ``IOC`` cancels it at once (Binance
    ``timeInForce=IOC``, Upbit ``time_in_force=ioc``), ``FOK`` fills all or nothing. ``test``: send it to the
    venue's test endpoint (Binance ``POST /api/v3/order/test``, Upbit ``POST /v1/orders/test``): signed and
    checked by the venue, never placed; the driver returns it with status ``new`` and nothing filled."""

    symbol: str
    side: Side
    order_type: OrderType
    client_order_id: str
    qty: Decimal | None = None
    price: Decimal | None = None
    quote_amount: Decimal | None = None
    time_in_force: str = "GTC"
    test: bool = False


@dataclass(frozen=True, slots=True)
class MarketRules:
    """A venue's order rules for one symbol; ``tick_size`` None means the venue prices by band (see Exchange)."""

    symbol: str
    tick_size: Decimal | None
    step_size: Decimal
    min_qty: Decimal = ZERO
    min_notional: Decimal = ZERO


def _whole_krw(value: Decimal) -> str:
    return f"{value.quantize(Decimal(1)):,}" if value else "0"


@dataclass(frozen=True)
class DailySummary:
    """One finished trading day (``arbframe_on_daily_summary``)."""

    day: date
    realized_pnl_krw: Decimal
    trades: int
    total_pnl_krw: Decimal
    win_rate: float
    open_positions: int
    unrealized_pnl_krw: Decimal

    def text(self) -> str:
        return (
            f"{self.day.isoformat()}: realized {_whole_krw(self.realized_pnl_krw)}₩ in {self.trades} trades; "
            f"total {_whole_krw(self.total_pnl_krw)}₩, win rate {self.win_rate * 100:.1f}%, "
            f"{self.open_positions} open (unrealized {_whole_krw(self.unrealized_pnl_krw)}₩)"
        )
