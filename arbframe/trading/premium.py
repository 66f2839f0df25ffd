"""Premium math on executable prices (pure functions, no I/O).

Definitions (``R`` = USD/KRW, ``U`` = the KRW price of USDT on the domestic venue, ``q`` = the order size):

- kimchi (sell domestic, buy foreign):  ``P_k = D_bid_vwap(q) / (F_ask_vwap(q) * R) - 1``
- reverse (buy domestic, sell foreign): ``P_r = F_bid_vwap(q) * R / D_ask_vwap(q) - 1``
- net premium: ``P - 2 * (fee_domestic + fee_foreign) - safety_margin`` (taker fees of both legs at entry and at the
  expected exit, as fractions of notional).
- tether premium ``T = U / R - 1`` (the same figure on every row, whatever the direction) and USDT-implied premium
  ``P_usdt`` (the direction's formula with ``U`` for ``R``), so ``(1 + P_k) = (1 + P_usdt) * (1 + T)`` for kimchi
  rows and ``(1 + P_r) = (1 + P_usdt) / (1 + T)`` for reverse rows.
- close premium of a position: the same direction's premium evaluated at the prices a close would execute at
  (kimchi close buys domestic and sells foreign: ``D_ask_vwap / (F_bid_vwap * R) - 1``); profit is roughly
  ``q * notional * (entry premium - close premium)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from arbframe.core.models import ZERO, Direction, FxRate, OrderBook, Side, Spread

ONE = Decimal(1)
TWO = Decimal(2)
PREMIUM_QUANTUM = Decimal("1e-12")
AGE_QUANTUM = Decimal("0.001")


def side_vwap(book: OrderBook, side: Side, qty: Decimal) -> Decimal | None:
    """VWAP of ``qty`` on ``book`` for an order of ``side``; uses a lazy level sequence's own walk if it has one.

    When the best level alone holds ``qty`` the VWAP is that level's price (no arithmetic at all).
    """
    levels = book.asks if side is Side.BUY else book.bids
    if type(levels) is tuple:
        if not levels or qty <= 0:
            return None
        first = levels[0]
        if first.qty >= qty:
            return first.price
        return book.vwap(side, qty)
    fast = getattr(levels, "vwap", None)
    return fast(qty) if fast is not None else book.vwap(side, qty)


def top_price(levels: Any) -> Decimal | None:
    """Best price of a book side (None when empty)."""
    if type(levels) is tuple:
        return levels[0].price if levels else None
    fast = getattr(levels, "top_price", None)
    if fast is not None:
        return fast()
    return levels[0].price if levels else None


def penalized_vwap(book: OrderBook, side: Side, qty: Decimal, penalty: Decimal) -> Decimal:
    """Average price of ``qty`` on a book too thin for it: the levels there are, and the rest at the last price
    moved ``penalty`` (a fraction) against us; an empty side prices everything at the other side's best price so
    moved. Marks a position that cannot be closed (never used to fill)."""
    levels = book.asks if side is Side.BUY else book.bids
    worse = ONE + penalty if side is Side.BUY else ONE - penalty
    remaining = qty
    cost = ZERO
    last = None
    for level in levels:
        take = level.qty if level.qty < remaining else remaining
        cost += take * level.price
        remaining -= take
        last = level.price
        if remaining <= 0:
            return cost / qty
    if last is None:
        other = top_price(book.bids if side is Side.BUY else book.asks)
        last = other if other is not None else ZERO
    return (cost + remaining * last * worse) / qty


def kimchi_premium(domestic_bid: Decimal, foreign_ask: Decimal, rate: Decimal) -> Decimal:
    return domestic_bid / (foreign_ask * rate) - ONE


def reverse_premium(foreign_bid: Decimal, rate: Decimal, domestic_ask: Decimal) -> Decimal:
    return foreign_bid * rate / domestic_ask - ONE


def tether_premium(usdt_krw: Decimal, rate: Decimal) -> Decimal:
    """``T = KRW-USDT / USDKRW - 1``."""
    return usdt_krw / rate - ONE


def round_trip_fee(fee_domestic: Decimal, fee_foreign: Decimal) -> Decimal:
    """Fees of both legs, opening and closing, as a fraction of notional."""
    return TWO * (fee_domestic + fee_foreign)


def entry_prices(
    direction: Direction, domestic: OrderBook, foreign: OrderBook, qty: Decimal
) -> tuple[Decimal, Decimal] | None:
    """(domestic VWAP, foreign VWAP) an entry of ``qty`` in ``direction`` would get; None if a book is too thin."""
    d = side_vwap(domestic, direction.domestic_side, qty)
    if d is None:
        return None
    f = side_vwap(foreign, direction.foreign_side, qty)
    if f is None:
        return None
    return d, f


def exit_prices(
    direction: Direction, domestic: OrderBook, foreign: OrderBook, qty: Decimal
) -> tuple[Decimal, Decimal] | None:
    """(domestic VWAP, foreign VWAP) closing ``qty`` of a ``direction`` position would get."""
    return entry_prices(_opposite(direction), domestic, foreign, qty)


def _opposite(direction: Direction) -> Direction:
    return Direction.REVERSE if direction is Direction.KIMCHI else Direction.KIMCHI


def premium_at(direction: Direction, domestic_price: Decimal, foreign_price: Decimal, rate: Decimal) -> Decimal:
    """The ``direction`` premium for a domestic price (KRW) and a foreign price (USDT).

    kimchi: ``D / (F * R) - 1``; reverse: ``F * R / D - 1``. For entries pass entry prices; for a close pass the
    close prices (then it is the "close premium" of the position).
    """
    if direction is Direction.KIMCHI:
        return domestic_price / (foreign_price * rate) - ONE
    return foreign_price * rate / domestic_price - ONE


def close_premium(
    direction: Direction, domestic: OrderBook, foreign: OrderBook, qty: Decimal, rate: Decimal
) -> Decimal | None:
    prices = exit_prices(direction, domestic, foreign, qty)
    if prices is None:
        return None
    return premium_at(direction, prices[0], prices[1], rate)


def usdt_mid(book: OrderBook | None) -> Decimal | None:
    """Mid of the domestic KRW-USDT book, or None when unknown."""
    if book is None:
        return None
    bid, ask = top_price(book.bids), top_price(book.asks)
    if bid is None or ask is None:
        return None
    return (bid + ask) / TWO


class PremiumQuote(NamedTuple):
    """A spread before it becomes a record: what the decision path works with (cheap to build)."""

    symbol: str
    direction: Direction
    qty: Decimal
    domestic_price: Decimal
    foreign_price: Decimal
    premium: Decimal
    net_premium: Decimal
    tether_premium: Decimal | None
    usdt_premium: Decimal | None


class PremiumCalculator:
    """Spreads of one venue pair: both directions for a symbol and size, with fees, FX and tether premium."""

    __slots__ = ("directions", "domestic", "fee_domestic", "fee_foreign", "foreign", "ids", "round_trip", "safety")

    def __init__(
        self,
        domestic: str,
        foreign: str,
        fee_domestic: Decimal,
        fee_foreign: Decimal,
        ids: Callable[[], str],
        *,
        safety_margin: Decimal = ZERO,
        directions: Iterable[Direction] = (Direction.KIMCHI, Direction.REVERSE),
    ) -> None:
        self.domestic = domestic
        self.foreign = foreign
        self.fee_domestic = Decimal(fee_domestic)
        self.fee_foreign = Decimal(fee_foreign)
        self.safety = Decimal(safety_margin)
        self.round_trip = round_trip_fee(self.fee_domestic, self.fee_foreign) + self.safety
        self.ids = ids
        self.directions = tuple(directions)

    def quotes(
        self,
        symbol: str,
        domestic: OrderBook,
        foreign: OrderBook,
        qty: Decimal,
        rate: Decimal,
        usdt_krw: Decimal | None = None,
    ) -> list[PremiumQuote]:
        """One :class:`PremiumQuote` per direction whose books are deep enough for ``qty`` (the hot path)."""
        out = []
        round_trip = self.round_trip
        tether: Decimal | None
        usdt_prem: Decimal | None
        for direction in self.directions:
            if direction is Direction.KIMCHI:
                d = side_vwap(domestic, Side.SELL, qty)
                if d is None:
                    continue
                f = side_vwap(foreign, Side.BUY, qty)
                if f is None:
                    continue
                premium = d / (f * rate) - ONE
                if usdt_krw is not None:
                    tether = usdt_krw / rate - ONE
                    usdt_prem = d / (f * usdt_krw) - ONE
                else:
                    tether = usdt_prem = None
            else:
                d = side_vwap(domestic, Side.BUY, qty)
                if d is None:
                    continue
                f = side_vwap(foreign, Side.SELL, qty)
                if f is None:
                    continue
                premium = f * rate / d - ONE
                if usdt_krw is not None:
                    tether = usdt_krw / rate - ONE
                    usdt_prem = f * usdt_krw / d - ONE
                else:
                    tether = usdt_prem = None
            out.append(PremiumQuote(symbol, direction, qty, d, f, premium, premium - round_trip, tether, usdt_prem))
        return out

    def to_spread(
        self, quote: PremiumQuote, fx: FxRate, now: datetime, *, simulated: bool = False, age: Decimal | None = None
    ) -> Spread:
        """The :class:`Spread` record of ``quote`` (premiums rounded to 1e-12, a fresh id)."""
        q = PREMIUM_QUANTUM
        if age is None:
            age = fx_age(fx, now)
        tether, usdt_prem = quote.tether_premium, quote.usdt_premium
        return Spread(
            id=self.ids(),
            ts=now,
            symbol=quote.symbol,
            direction=quote.direction,
            domestic_exchange=self.domestic,
            foreign_exchange=self.foreign,
            qty=quote.qty,
            domestic_price=quote.domestic_price,
            foreign_price=quote.foreign_price,
            fx_rate=fx.rate,
            fx_source=fx.source,
            fx_age_seconds=age,
            premium=quote.premium.quantize(q),
            net_premium=quote.net_premium.quantize(q),
            tether_premium=None if tether is None else tether.quantize(q),
            usdt_premium=None if usdt_prem is None else usdt_prem.quantize(q),
            simulated=simulated or fx.simulated,
        )

    def spreads(
        self,
        symbol: str,
        domestic: OrderBook,
        foreign: OrderBook,
        qty: Decimal,
        fx: FxRate,
        now: datetime,
        usdt_krw: Decimal | None = None,
    ) -> list[Spread]:
        """One :class:`Spread` per direction whose books are deep enough for ``qty``."""
        simulated = domestic.simulated or foreign.simulated
        age = fx_age(fx, now)
        return [
            self.to_spread(quote, fx, now, simulated=simulated, age=age)
            for quote in self.quotes(symbol, domestic, foreign, qty, fx.rate, usdt_krw)
        ]


def fx_age(fx: FxRate, now: datetime) -> Decimal:
    """Age of ``fx`` at ``now`` in seconds, to the millisecond."""
    return Decimal(repr(fx.age_seconds(now))).quantize(AGE_QUANTUM)


def side_for(direction: Direction, domestic: bool, closing: bool = False) -> Side:
    """The side of the domestic (or foreign) leg when opening (or closing) a ``direction`` position."""
    side = direction.domestic_side if domestic else direction.foreign_side
    return side.opposite if closing else side
