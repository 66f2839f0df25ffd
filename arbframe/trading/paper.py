"""Paper execution: walk the order book, charge each venue's fee, keep per-venue wallets.

Pure and synchronous (no I/O), so the engine's decision path and the simulated exchange share it:

- :func:`walk_book` fills a market order of ``qty`` against a book's levels, skipping the liquidity already
  consumed in the same tick (``offset``), and returns a :class:`arbframe.core.models.Fill` (VWAP, notional, fee in the
  venue's quote currency, slippage against the best untouched price).
- :class:`PaperWallet` is one venue's balances; :meth:`PaperWallet.apply_fill` is the only way they change
  during trading (fills and fees), which the property tests check.
- :class:`LiquidityLedger` remembers, within one tick, how much of each book side has been taken, so two orders
  in the same tick never fill against the same resting quantity.
- :class:`PaperExecutor` ties those together for the engine: it fills both legs of a hedge atomically (both or
  neither) and makes one :class:`~arbframe.core.models.Order` and one :class:`~arbframe.core.models.Trade` per leg.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from arbframe.core.errors import InsufficientFunds  # one class for paper wallets and venues (public)
from arbframe.core.models import (
    ZERO,
    BookLevel,
    Fill,
    Order,
    OrderBook,
    OrderStatus,
    OrderType,
    Side,
    Trade,
)

ONE = Decimal(1)


class InsufficientLiquidity(ValueError):
    """The book (after what this tick already consumed) cannot fill the whole quantity."""


def walk_levels(levels: Iterable[BookLevel], qty: Decimal, offset: Decimal = ZERO) -> tuple[Decimal, Decimal]:
    """(notional, first price touched) for ``qty`` taken from ``levels`` after skipping ``offset`` quantity.

    Raises :class:`InsufficientLiquidity` when the levels run out.
    """
    remaining = qty
    skip = offset
    notional = ZERO
    first: Decimal | None = None
    for level in levels:
        available = level.qty
        if skip > 0:
            if skip >= available:
                skip -= available
                continue
            available -= skip
            skip = ZERO
        if first is None:
            first = level.price
        if available >= remaining:
            notional += remaining * level.price
            return notional, first
        notional += available * level.price
        remaining -= available
    raise InsufficientLiquidity(f"book too thin for {qty} (after {offset} consumed)")


def walk_book(
    book: OrderBook,
    side: Side,
    qty: Decimal,
    fee_rate: Decimal,
    fee_currency: str,
    offset: Decimal = ZERO,
) -> Fill:
    """Fill a market order of ``qty`` against ``book`` (buy lifts asks, sell hits bids).

    ``offset`` is the quantity of that side already consumed in this tick. The fee is ``notional * fee_rate`` in
    ``fee_currency`` (the venue's quote currency). Slippage is the VWAP's distance from the best untouched price,
    as a fraction, positive when worse for us.
    """
    if qty <= 0:
        raise ValueError(f"order quantity must be positive, got {qty}")
    levels = book.asks if side is Side.BUY else book.bids
    notional, first = walk_levels(levels, qty, offset)
    avg = notional / qty
    slippage = avg / first - ONE if side is Side.BUY else ONE - avg / first
    return Fill(book.exchange, book.symbol, side, qty, avg, notional, notional * fee_rate, fee_currency, slippage)


class LiquidityLedger:
    """Quantity consumed per (exchange, symbol, side) during the current tick."""

    __slots__ = ("_taken",)

    def __init__(self) -> None:
        self._taken: dict[tuple[str, str, Side], Decimal] = {}

    def reset(self) -> None:
        self._taken.clear()

    def consumed(self, exchange: str, symbol: str, side: Side) -> Decimal:
        return self._taken.get((exchange, symbol, side), ZERO)

    def take(self, exchange: str, symbol: str, side: Side, qty: Decimal) -> None:
        key = (exchange, symbol, side)
        self._taken[key] = self._taken.get(key, ZERO) + qty


class PaperWallet:
    """Balances of one venue (``{"KRW": ..., "BTC": ...}``); changed only by :meth:`apply_fill`."""

    __slots__ = ("balances", "exchange", "quote_currency")

    def __init__(self, exchange: str, quote_currency: str, balances: Mapping[str, Decimal | str | int] | None = None):
        self.exchange = exchange
        self.quote_currency = quote_currency
        self.balances: dict[str, Decimal] = {k: Decimal(str(v)) for k, v in (balances or {}).items()}

    def get(self, asset: str) -> Decimal:
        return self.balances.get(asset, ZERO)

    def can_fill(self, symbol: str, side: Side, qty: Decimal, notional: Decimal, fee: Decimal) -> bool:
        if side is Side.SELL:
            return self.get(symbol) >= qty
        return self.get(self.quote_currency) >= notional + fee

    def check(self, fill: Fill) -> None:
        if not self.can_fill(fill.symbol, fill.side, fill.qty, fill.notional, fill.fee):
            if fill.side is Side.SELL:
                raise InsufficientFunds(
                    f"{self.exchange}: selling {fill.qty} {fill.symbol} but wallet holds {self.get(fill.symbol)}"
                )
            raise InsufficientFunds(
                f"{self.exchange}: buying costs {fill.notional + fill.fee} {self.quote_currency} "
                f"but wallet holds {self.get(self.quote_currency)}"
            )

    def apply_fill(self, fill: Fill) -> None:
        """Move the coin and the quote currency of ``fill``, and charge its fee (in the quote currency)."""
        self.check(fill)
        b = self.balances
        q = self.quote_currency
        if fill.side is Side.BUY:
            b[fill.symbol] = b.get(fill.symbol, ZERO) + fill.qty
            b[q] = b.get(q, ZERO) - fill.notional
        else:
            b[fill.symbol] = b.get(fill.symbol, ZERO) - fill.qty
            b[q] = b.get(q, ZERO) + fill.notional
        b[fill.fee_currency] = b.get(fill.fee_currency, ZERO) - fill.fee

    def snapshot(self) -> dict[str, Decimal]:
        return dict(self.balances)


@dataclass(frozen=True, slots=True)
class LegResult:
    """One executed leg: the fill, its Order and Trade records, and its signed cash flow in KRW."""

    fill: Fill
    order: Order
    trade: Trade
    cash_flow_quote: Decimal  # + received / - paid, fee included, in the venue's quote currency
    cash_flow_krw: Decimal  # cash_flow_quote converted with the FX rate of the moment (1 for KRW venues)


@dataclass(frozen=True, slots=True)
class LegSpec:
    """One leg to execute: a book, a side, the fee rate and the KRW value of one unit of the quote currency."""

    book: OrderBook
    side: Side
    fee_rate: Decimal
    quote_currency: str
    krw_per_quote: Decimal


class PaperExecutor:
    """Fills hedges against books for the engine; wallets per venue, liquidity per tick, records per leg."""

    def __init__(self, wallets: Mapping[str, PaperWallet], id_factory: Callable[[], str], *, simulated: bool = False):
        self.wallets = dict(wallets)
        self.ids = id_factory
        self.ledger = LiquidityLedger()
        self.simulated = simulated

    def begin_tick(self) -> None:
        self.ledger.reset()

    def quote_fill(self, leg: LegSpec, qty: Decimal) -> Fill:
        """What filling ``qty`` on ``leg`` would give now (no state change)."""
        book = leg.book
        offset = self.ledger.consumed(book.exchange, book.symbol, leg.side)
        return walk_book(book, leg.side, qty, leg.fee_rate, leg.quote_currency, offset)

    def execute(
        self, legs: tuple[LegSpec, ...], qty: Decimal, ts: datetime, position_id: str | None
    ) -> tuple[LegResult, ...]:
        """Fill every leg for ``qty`` or none: all fills are priced and checked against wallets first."""
        fills = [self.quote_fill(leg, qty) for leg in legs]
        for leg, fill in zip(legs, fills, strict=True):
            self._wallet(leg.book.exchange).check(fill)
        results = []
        for leg, fill in zip(legs, fills, strict=True):
            book = leg.book
            self._wallet(book.exchange).apply_fill(fill)
            self.ledger.take(book.exchange, book.symbol, leg.side, qty)
            order_id = self.ids()
            order = Order(
                id=order_id,
                ts=ts,
                exchange=book.exchange,
                symbol=book.symbol,
                side=leg.side,
                order_type=OrderType.MARKET,
                qty=qty,
                price=None,
                status=OrderStatus.FILLED,
                filled_qty=qty,
                avg_price=fill.avg_price,
                fee=fill.fee,
                fee_currency=fill.fee_currency,
                position_id=position_id,
                client_order_id=order_id,
                exchange_order_id=None,
                simulated=self.simulated,
            )
            trade = Trade(
                id=self.ids(),
                ts=ts,
                order_id=order_id,
                exchange=book.exchange,
                symbol=book.symbol,
                side=leg.side,
                price=fill.avg_price,
                qty=qty,
                fee=fill.fee,
                fee_currency=fill.fee_currency,
                position_id=position_id,
                simulated=self.simulated,
            )
            flow = (fill.notional if leg.side is Side.SELL else -fill.notional) - fill.fee
            results.append(LegResult(fill, order, trade, flow, flow * leg.krw_per_quote))
        return tuple(results)

    def _wallet(self, exchange: str) -> PaperWallet:
        wallet = self.wallets.get(exchange)
        if wallet is None:
            raise InsufficientFunds(f"no paper wallet configured for {exchange}")
        return wallet


#: Paper balances per quote currency when the config names none for a venue (``paper.balances``).
DEFAULT_BALANCES = {
    "KRW": {"KRW": "50000000", "BTC": "0.5", "ETH": "10"},
    "USDT": {"USDT": "40000", "BTC": "0.5", "ETH": "10"},
}
