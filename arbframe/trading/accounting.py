"""The accounting model: balances per venue and asset are the truth (see docs/TRADING.md "PnL").

Inventory is pre-funded on both venues and a trade converts nothing between KRW and USDT, so:

- a position's **realized PnL** is the change its legs caused in the balances (``balance_changes``: venue, asset
  -> amount, fees included in the asset each venue charged) valued at ONE FX rate and ONE set of coin marks, those
  of its close (:func:`value_of`);
- **equity** is every balance valued at the current FX rate and marks;
- over a run, exactly (:class:`Ledger`, :class:`EquityBreakdown`)::

      equity change = realized trade PnL + unrealized PnL of the open positions + their close cost
                      + FX translation of the USD-valued balances + revaluation of the coins held
                      - the open positions taken over at the start (a restart; 0 in a backtest)

  where the unrealized PnL marks each open position to a close at the current books (exit fees included) and the
  close cost is what that close would take out of equity, which values the positions' balances at the marks.

A value is KRW for KRW, ``amount x R`` for USDT, ``amount x price x R`` for a fee asset priced in USDT (BNB),
``amount x mark`` for a coin (the mark is the mid of the domestic KRW book). Assets without a value (a coin no
configured symbol marks) are left out of equity; nothing trades them, so no figure moves because of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_UP, Decimal, localcontext
from typing import Any

from arbframe.core.models import ZERO, Side

#: precision of the accounting sums: every product of a balance and a rate or mark is exact at this precision
PRECISION = 60
#: fees paid in an asset priced by config (BNB) are rounded up to this (the venue reports commissions to 8 places)
FEE_ASSET_QUANTUM = Decimal("0.00000001")
Changes = dict[tuple[str, str], Decimal]


@dataclass(frozen=True, slots=True)
class SideFee:
    """The fee of one venue and side: ``rate`` of the notional, paid in ``asset``.

    ``asset`` is ``quote`` (the venue's quote currency), ``base`` (the coin bought or sold: ``rate`` of the
    quantity) or an asset name (e.g. ``BNB``) priced at ``asset_price`` units of the quote currency.
    """

    rate: Decimal
    asset: str = "quote"
    asset_price: Decimal | None = None

    def charge(self, qty: Decimal, notional: Decimal, base: str, quote: str) -> tuple[str, Decimal]:
        """(asset, amount) of the fee of a fill of ``qty`` for ``notional``."""
        if self.asset == "quote":
            return quote, notional * self.rate
        if self.asset == "base":
            return base, qty * self.rate
        amount = (notional * self.rate / self.asset_price).quantize(FEE_ASSET_QUANTUM, rounding=ROUND_UP)  # type: ignore[operator]
        return self.asset, amount


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    """Fees of one venue per side (config ``paper.fees.<venue>``)."""

    buy: SideFee
    sell: SideFee

    @classmethod
    def flat(cls, rate: Decimal | str) -> FeeSchedule:
        """Both sides at ``rate``, paid in the quote currency."""
        fee = SideFee(Decimal(str(rate)))
        return cls(fee, fee)

    def side(self, side: Side) -> SideFee:
        return self.buy if side is Side.BUY else self.sell

    @property
    def round_trip(self) -> Decimal:
        """Fraction of notional a buy and a sell cost together."""
        return self.buy.rate + self.sell.rate


def fee_schedule(venue_fees: Mapping[str, Any] | None, default_rate: Decimal) -> FeeSchedule:
    """The :class:`FeeSchedule` of a ``paper.fees.<venue>`` section; a side without ``rate`` takes ``default_rate``
    (the exchange's ``fee_rate`` or the recording's fee), without ``asset`` the quote currency."""
    sides = []
    for name in ("buy", "sell"):
        spec = dict((venue_fees or {}).get(name) or {})
        rate = Decimal(str(spec["rate"])) if spec.get("rate") is not None else Decimal(str(default_rate))
        asset = str(spec.get("asset") or "quote")
        price = spec.get("asset_price")
        if asset not in ("quote", "base") and price is None:
            raise ValueError(f"fee asset {asset!r} needs asset_price (its price in the venue's quote currency)")
        sides.append(SideFee(rate, asset, None if price is None else Decimal(str(price))))
    return FeeSchedule(*sides)


class Valuation:
    """KRW value of balances at one FX rate (``rate``: KRW per USDT) and one set of coin ``marks`` (KRW)."""

    __slots__ = ("marks", "priced", "rate")

    def __init__(self, rate: Decimal, marks: Mapping[str, Decimal], priced: Mapping[str, Decimal] | None = None):
        self.rate = rate
        self.marks = marks
        self.priced = priced or {}  # fee assets -> price in USDT (BNB)

    def usd_units(self, asset: str) -> Decimal | None:
        """USDT per unit of ``asset`` when it is valued through the FX rate, else None."""
        if asset == "USDT" or asset == "USD":
            return Decimal(1)
        return self.priced.get(asset)

    def value(self, asset: str, amount: Decimal) -> Decimal | None:
        if asset == "KRW":
            return amount
        units = self.usd_units(asset)
        if units is not None:
            return amount * units * self.rate
        mark = self.marks.get(asset)
        return None if mark is None else amount * mark


def value_of(changes: Mapping[tuple[str, str], Decimal], valuation: Valuation) -> Decimal:
    """KRW value of balance ``changes``, exactly (assets without a value count zero)."""
    with localcontext() as ctx:
        ctx.prec = PRECISION
        total = ZERO
        for (_venue, asset), amount in changes.items():
            v = valuation.value(asset, amount)
            if v is not None:
                total += v
        return total


def merge(*parts: Mapping[tuple[str, str], Decimal]) -> Changes:
    out: Changes = {}
    with localcontext() as ctx:
        ctx.prec = PRECISION
        for part in parts:
            for key, amount in part.items():
                out[key] = out.get(key, ZERO) + amount
    return out


def encode_changes(changes: Mapping[tuple[str, str], Decimal]) -> str:
    """``venue:asset=amount`` pairs, sorted, space separated (the ``positions.balance_changes`` column)."""
    return " ".join(f"{v}:{a}={format(x, 'f')}" for (v, a), x in sorted(changes.items()) if x != 0)


def decode_changes(text: str | None) -> Changes:
    out: Changes = {}
    for item in (text or "").split():
        key, _, amount = item.partition("=")
        venue, _, asset = key.rpartition(":")
        out[(venue, asset)] = Decimal(amount)
    return out


@dataclass(frozen=True)
class EquityBreakdown:
    """Equity now and why it changed since the ledger's start (all KRW)::

        change = realized + unrealized + close_cost + fx_translation + coin_revaluation - open_at_start

    exactly, whatever is open (:meth:`terms` lists them with their signs)."""

    equity: Decimal
    start_equity: Decimal
    realized: Decimal  # trade PnL of positions closed since the start
    unrealized: Decimal  # the open positions marked to a close at the current books, exit fees included
    #: what that close would take out of equity (exit fees, the depth walked, the premium still between the venues):
    #: equity values the open positions' balances at the marks. (A position on a symbol the market-data checks block
    #: keeps its last mark as its unrealized PnL; this term then also holds the move since.)
    close_cost: Decimal
    fx_translation: Decimal  # USD-valued balances: what the move of the rate since each entered did
    coin_revaluation: Decimal  # coins held (inventory + residue): what the move of the marks did
    #: the entry legs of the positions open at the start (resumed from storage), at the start's rate and marks: part
    #: of the starting equity, they are in the other terms again (unrealized, or realized once closed). 0 in a
    #: backtest and on a fresh start
    open_at_start: Decimal
    coin_residue: Mapping[str, Decimal]  # net coin closed positions left, per coin

    @property
    def change(self) -> Decimal:
        return self.equity - self.start_equity

    @property
    def open_value(self) -> Decimal:
        """The open positions' balance changes at the current rate and marks (= unrealized + close cost)."""
        return self.unrealized + self.close_cost

    def terms(self) -> tuple[tuple[str, Decimal], ...]:
        """(name, signed amount) of each part of :attr:`change`; they add up to it exactly."""
        return (("realized", self.realized), ("unrealized", self.unrealized), ("close_cost", self.close_cost),
                ("fx_translation", self.fx_translation), ("coin_revaluation", self.coin_revaluation),
                ("open_at_start", -self.open_at_start))


class Ledger:
    """Decomposes equity change exactly (see the module docstring).

    ``start`` takes the wallets' balances and the first rate; a coin's starting mark is its first mark. The
    translation sums follow the inventory: the balances less the open positions' entry legs (those are valued as
    they are, at the current prices, until their close). Each close adds its balance changes (entry and exit legs)
    with the rate and marks it was realized at; :meth:`breakdown` values everything at the current rate and marks.
    Kept as running sums: usd ``A = sum(amount)``, ``B = sum(amount x rate then)`` (FX translation ``= A x R -
    B``), and per coin ``C``/``D`` the same with marks.
    """

    def __init__(self, priced: Mapping[str, Decimal] | None = None) -> None:
        self.priced = dict(priced or {})
        self.started = False
        self.start_balances: Changes = {}
        self.start_rate: Decimal | None = None
        self.start_marks: dict[str, Decimal] = {}
        self.realized = ZERO
        self.usd_amount = ZERO
        self.usd_cost = ZERO
        self.coin_amount: dict[str, Decimal] = {}
        self.coin_cost: dict[str, Decimal] = {}
        self.residue: dict[str, Decimal] = {}
        self._unmarked: Changes = {}  # starting coin balances waiting for their first mark
        self._open_start: Changes = {}  # the entry legs of the positions open at the start

    def valuation(self, rate: Decimal, marks: Mapping[str, Decimal]) -> Valuation:
        return Valuation(rate, marks, self.priced)

    def start(self, balances: Mapping[tuple[str, str], Decimal], rate: Decimal, marks: Mapping[str, Decimal],
              open_changes: Iterable[Mapping[tuple[str, str], Decimal]] = ()) -> None:
        """Start from ``balances`` (the wallets), of which ``open_changes`` are the entry legs of positions already
        open (resumed after a restart)."""
        self.started = True
        self.start_balances = dict(balances)
        self.start_rate = rate
        self._open_start = merge(*open_changes)
        inventory = merge(balances, {key: -amount for key, amount in self._open_start.items()})
        val = self.valuation(rate, marks)
        with localcontext() as ctx:
            ctx.prec = PRECISION
            for key, amount in inventory.items():
                units = val.usd_units(key[1])
                if units is not None:
                    self._add_usd(amount * units, rate)
                elif key[1] != "KRW":
                    self._unmarked[key] = amount
        self.see_marks(marks)

    def _add_usd(self, amount: Decimal, rate: Decimal) -> None:
        """``amount`` USDT entered the wallets at ``rate`` (call within the accounting precision)."""
        self.usd_amount += amount
        self.usd_cost += amount * rate

    def _add_coin(self, asset: str, amount: Decimal, mark: Decimal) -> None:
        """``amount`` of the coin ``asset`` entered the wallets at ``mark`` (call within the accounting precision)."""
        self.coin_amount[asset] = self.coin_amount.get(asset, ZERO) + amount
        self.coin_cost[asset] = self.coin_cost.get(asset, ZERO) + amount * mark

    def see_marks(self, marks: Mapping[str, Decimal]) -> None:
        """Give coins their starting mark the first time they have one."""
        if not self._unmarked or not any(key[1] in marks for key in self._unmarked):
            return
        with localcontext() as ctx:
            ctx.prec = PRECISION
            for key in [k for k in self._unmarked if k[1] in marks]:
                asset = key[1]
                self.start_marks.setdefault(asset, marks[asset])
                self._add_coin(asset, self._unmarked.pop(key), self.start_marks[asset])

    def close(self, changes: Mapping[tuple[str, str], Decimal], rate: Decimal, marks: Mapping[str, Decimal],
              realized: Decimal) -> None:
        """A position closed with ``changes`` realized at ``rate`` and ``marks`` (its ``realized`` PnL)."""
        self.see_marks(marks)
        val = self.valuation(rate, marks)
        with localcontext() as ctx:
            ctx.prec = PRECISION
            self.realized += realized
            for (_venue, asset), amount in changes.items():
                units = val.usd_units(asset)
                if units is not None:
                    self._add_usd(amount * units, rate)
                elif asset in marks:
                    self._add_coin(asset, amount, marks[asset])
                    self.residue[asset] = self.residue.get(asset, ZERO) + amount

    def breakdown(self, balances: Mapping[tuple[str, str], Decimal], rate: Decimal, marks: Mapping[str, Decimal],
                  open_changes: Iterable[Mapping[tuple[str, str], Decimal]], unrealized: Decimal = ZERO
                  ) -> EquityBreakdown:
        """Equity of ``balances`` now and its decomposition (``open_changes``: each open position's entry legs;
        ``unrealized``: the open positions' unrealized PnL as reported)."""
        self.see_marks(marks)
        val = self.valuation(rate, marks)
        with localcontext() as ctx:
            ctx.prec = PRECISION
            equity = value_of(balances, val)
            start_val = self.valuation(self.start_rate or rate, self.start_marks)

            def valued_at_start(changes: Mapping[tuple[str, str], Decimal]) -> Decimal:
                return value_of({k: v for k, v in changes.items()
                                 if k[1] == "KRW" or start_val.usd_units(k[1]) is not None
                                 or k[1] in self.start_marks}, start_val)

            start = valued_at_start(self.start_balances)
            open_at_start = valued_at_start(self._open_start)
            open_value = sum((value_of(c, val) for c in open_changes), ZERO)
            fx = self.usd_amount * rate - self.usd_cost
            coin = sum((self.coin_amount[a] * marks[a] - self.coin_cost[a] for a in self.coin_amount if a in marks),
                       ZERO)
            close_cost = open_value - unrealized
        return EquityBreakdown(equity, start, self.realized, unrealized, close_cost, fx, coin, open_at_start,
                               dict(self.residue))


def wallet_balances(wallets: Mapping[str, Any]) -> Changes:
    """(venue, asset) -> amount of every paper wallet."""
    return {(venue, asset): amount for venue, w in wallets.items() for asset, amount in w.balances.items()}


def fee_schedules(config: Mapping[str, Any], rates: Mapping[str, Decimal]) -> dict[str, FeeSchedule]:
    """Each venue's :class:`FeeSchedule` from ``paper.fees`` (config), a side without a rate at ``rates[venue]``."""
    fees = (config.get("paper") or {}).get("fees") or {}
    return {venue: fee_schedule(fees.get(venue), Decimal(str(rate))) for venue, rate in rates.items()}
