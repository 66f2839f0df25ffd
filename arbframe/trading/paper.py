"""Paper execution: walk the order book, charge each venue's fee, keep per-venue wallets.

Pure and synchronous (no I/O), so the engine's decision path and the simulated exchange share it:

- :func:`walk_book` fills a market order of ``qty`` against a book's levels, skipping the liquidity already
  consumed in the same tick (``offset``), and returns a :class:`arbframe.core.models.Fill` (VWAP, notional, fee in the
  asset the venue charges it in — quote currency, the coin, or a priced asset such as BNB — and slippage against
  the best untouched price); :func:`fill_changes` is what a fill changes in its wallet.
- :class:`PaperWallet` is one venue's balances; :meth:`PaperWallet.apply_fill` is the only way they change
  during trading (fills and fees), which the property tests check.
- :class:`LiquidityLedger` remembers, within one tick, how much of each book side has been taken, so two orders
  in the same tick never fill against the same resting quantity.
- :class:`PaperExecutor` ties those together for the engine: it fills both legs of a hedge atomically (both or
  neither; each leg may have its own quantity, e.g. a buy grossed up for a fee taken from the coin) and makes one
  :class:`~arbframe.core.models.Order` and one :class:`~arbframe.core.models.Trade` per leg.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal

from arbframe.core.errors import InsufficientFunds  # one class for paper wallets and venues (public)
from arbframe.core.models import (
    ZERO,
    Direction,
    Fill,
    Order,
    OrderBook,
    OrderStatus,
    OrderType,
    Side,
    Trade,
)
from arbframe.execution.base import (  # the execution interface; re-exported here for existing imports
    Executor,
    InsufficientLiquidity,
    LegResult,
    LegSpec,
    Wallet,
    walk_levels,
)
from arbframe.trading.accounting import SideFee

__all__ = ["DEFAULT_BALANCES", "InsufficientLiquidity", "LegResult", "LegSpec", "LiquidityLedger", "PaperExecutor",
           "PaperWallet", "fill_changes", "walk_book", "walk_levels"]

ONE = Decimal(1)


def walk_book(
    book: OrderBook,
    side: Side,
    qty: Decimal,
    fee: SideFee | Decimal,
    quote_currency: str,
    offset: Decimal = ZERO,
) -> Fill:
    """Fill a market order of ``qty`` against ``book`` (buy lifts asks, sell hits bids).

    ``offset`` is the quantity of that side already consumed in this tick. The fee follows ``fee`` (a
    :class:`~arbframe.trading.accounting.SideFee`; a bare rate means the quote currency): ``notional x rate`` in
    the quote currency, ``qty x rate`` in the coin, or its value in a priced asset (BNB). Slippage is the VWAP's
    distance from the best untouched price, as a fraction, positive when worse for us.
    """
    if qty <= 0:
        raise ValueError(f"order quantity must be positive, got {qty}")
    levels = book.asks if side is Side.BUY else book.bids
    notional, first = walk_levels(levels, qty, offset)
    avg = notional / qty
    slippage = avg / first - ONE if side is Side.BUY else ONE - avg / first
    if not isinstance(fee, SideFee):
        fee = SideFee(Decimal(fee))
    fee_asset, fee_amount = fee.charge(qty, notional, book.symbol, quote_currency)
    return Fill(book.exchange, book.symbol, side, qty, avg, notional, fee_amount, fee_asset, slippage)


def fill_changes(fill: Fill, quote_currency: str) -> dict[tuple[str, str], Decimal]:
    """What ``fill`` changes in its venue's wallet: (venue, asset) -> amount, fee included."""
    venue = fill.exchange
    sign = ONE if fill.side is Side.BUY else -ONE
    out = {(venue, fill.symbol): sign * fill.qty, (venue, quote_currency): -sign * fill.notional}
    key = (venue, fill.fee_currency)
    out[key] = out.get(key, ZERO) - fill.fee
    return out


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


class PaperWallet(Wallet):
    """Balances of one venue (``{"KRW": ..., "BTC": ...}``); changed only by :meth:`apply_fill`."""

    __slots__ = ()

    def needs(self, fill: Fill) -> dict[str, Decimal]:
        """What the wallet must hold for ``fill``: the coin sold or the quote paid, and the fee's asset."""
        need: dict[str, Decimal] = {}
        if fill.side is Side.SELL:
            need[fill.symbol] = fill.qty
        else:
            need[self.quote_currency] = fill.notional
        if fill.fee_currency != (fill.symbol if fill.side is Side.BUY else self.quote_currency):
            need[fill.fee_currency] = need.get(fill.fee_currency, ZERO) + fill.fee  # paid from what is held
        return need

    def can_fill(self, fill: Fill) -> bool:
        return all(self.get(asset) >= amount for asset, amount in self.needs(fill).items())

    def check(self, fill: Fill) -> None:
        for asset, amount in self.needs(fill).items():
            if self.get(asset) < amount:
                what = "selling" if fill.side is Side.SELL else "buying"
                raise InsufficientFunds(
                    f"{self.exchange}: {what} {fill.qty} {fill.symbol} needs {amount} {asset} "
                    f"but wallet holds {self.get(asset)}"
                )

    def apply_fill(self, fill: Fill) -> None:
        """Move the coin and the quote currency of ``fill``, and charge its fee in the asset it is paid in."""
        self.check(fill)
        b = self.balances
        for (_venue, asset), amount in fill_changes(fill, self.quote_currency).items():
            b[asset] = b.get(asset, ZERO) + amount

    def snapshot(self) -> dict[str, Decimal]:
        return dict(self.balances)


class PaperExecutor(Executor):
    """Fills hedges against books for the engine; wallets per venue, liquidity per tick, records per leg. The
    immediate implementation of :class:`arbframe.execution.base.Executor` (paper trading and replay)."""

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
        return walk_book(book, leg.side, leg.qty or qty, leg.fee, leg.quote_currency, offset)

    def execute(
        self, legs: tuple[LegSpec, ...], qty: Decimal, ts: datetime, position_id: str | None, *,
        purpose: str = "open", direction: Direction | None = None, reason: str = "",
    ) -> tuple[LegResult, ...]:
        """Fill every leg for ``qty`` or none: all fills are priced and checked against wallets first."""
        fills = [self.quote_fill(leg, qty) for leg in legs]
        for leg, fill in zip(legs, fills, strict=True):
            self._wallet(leg.book.exchange).check(fill)
        results = []
        for leg, fill in zip(legs, fills, strict=True):
            book = leg.book
            self._wallet(book.exchange).apply_fill(fill)
            self.ledger.take(book.exchange, book.symbol, leg.side, fill.qty)
            order_id = self.ids()
            order = Order(
                id=order_id,
                ts=ts,
                exchange=book.exchange,
                symbol=book.symbol,
                side=leg.side,
                order_type=OrderType.MARKET,
                qty=fill.qty,
                price=None,
                status=OrderStatus.FILLED,
                filled_qty=fill.qty,
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
                qty=fill.qty,
                fee=fill.fee,
                fee_currency=fill.fee_currency,
                position_id=position_id,
                simulated=self.simulated,
            )
            results.append(LegResult(fill, order, trade, fill_changes(fill, leg.quote_currency)))
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
