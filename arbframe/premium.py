"""Premium math on executable prices (pure functions, no I/O).

Definitions (``R`` = USD/KRW, ``U`` = the KRW price of USDT on the domestic venue, ``q`` = the order size):

- kimchi (sell domestic, buy foreign):  ``P_k = D_bid_vwap(q) / (F_ask_vwap(q) * R) - 1``
- reverse (buy domestic, sell foreign): ``P_r = F_bid_vwap(q) * R / D_ask_vwap(q) - 1``
- net premium: ``P - 2 * (fee_domestic + fee_foreign) - safety_margin`` (taker fees of both legs at entry and at the
  expected exit, as fractions of notional).
- tether premium ``T = U / R - 1`` and USDT-implied premium ``P_usdt`` (the same formula with ``U`` for ``R``), so
  ``(1 + P_k) = (1 + P_usdt) * (1 + T)``. For the reverse direction the tether term is oriented the same way as
  the premium (``T_r = R / U - 1``), so the identity ``(1 + P) = (1 + P_usdt) * (1 + T)`` holds for both rows.
- close premium of a position: the same direction's premium evaluated at the prices a close would execute at
  (kimchi close buys domestic and sells foreign: ``D_ask_vwap / (F_bid_vwap * R) - 1``); profit is roughly
  ``q * notional * (entry premium - close premium)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal

from arbframe.models import ZERO, Direction, FxRate, OrderBook, Side, Spread

ONE = Decimal(1)
TWO = Decimal(2)
PREMIUM_QUANTUM = Decimal("1e-12")
AGE_QUANTUM = Decimal("0.001")


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
    d = domestic.vwap(direction.domestic_side, qty)
    if d is None:
        return None
    f = foreign.vwap(direction.foreign_side, qty)
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
    if book is None or not book.bids or not book.asks:
        return None
    return (book.bids[0].price + book.asks[0].price) / TWO


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
        rate = fx.rate
        age = Decimal(repr(fx.age_seconds(now))).quantize(AGE_QUANTUM)
        simulated = domestic.simulated or foreign.simulated or fx.simulated
        out = []
        q = PREMIUM_QUANTUM
        for direction in self.directions:
            prices = entry_prices(direction, domestic, foreign, qty)
            if prices is None:
                continue
            d, f = prices
            premium = premium_at(direction, d, f, rate)
            tether = usdt_prem = None
            if usdt_krw is not None:
                if direction is Direction.KIMCHI:
                    tether = usdt_krw / rate - ONE
                    usdt_prem = d / (f * usdt_krw) - ONE
                else:
                    tether = rate / usdt_krw - ONE
                    usdt_prem = f * usdt_krw / d - ONE
                tether = tether.quantize(q)
                usdt_prem = usdt_prem.quantize(q)
            out.append(
                Spread(
                    id=self.ids(),
                    ts=now,
                    symbol=symbol,
                    direction=direction,
                    domestic_exchange=self.domestic,
                    foreign_exchange=self.foreign,
                    qty=qty,
                    domestic_price=d,
                    foreign_price=f,
                    fx_rate=rate,
                    fx_source=fx.source,
                    fx_age_seconds=age,
                    premium=premium.quantize(q),
                    net_premium=(premium - self.round_trip).quantize(q),
                    tether_premium=tether,
                    usdt_premium=usdt_prem,
                    simulated=simulated,
                )
            )
        return out


def side_for(direction: Direction, domestic: bool, closing: bool = False) -> Side:
    """The side of the domestic (or foreign) leg when opening (or closing) a ``direction`` position."""
    side = direction.domestic_side if domestic else direction.foreign_side
    return side.opposite if closing else side
