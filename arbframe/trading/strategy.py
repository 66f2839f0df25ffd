"""Entry and exit rules (pure: plain objects in, decisions out, no I/O).

Entry: a direction's net premium (after both venues' round-trip fees and the safety margin) at or above
``entry_threshold`` opens a hedged position, provided every limit allows it: FX fresh, per-symbol and total open
position counts, per-position and total notional, cooldown after the last entry on the symbol, daily loss limit,
each venue's minimum order size and what each paper wallet holds. The cooldown counts from the last entry on the
symbol, or from the close of a stop-loss when that is later.

Exit (first match wins): ``exit`` when the position's close premium (the same direction's premium at the prices
a close executes at) has fallen to ``exit_threshold``; ``stop`` when it has risen ``stop_loss_premium`` above the
entry premium; ``timeout`` after ``max_holding_seconds``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

from arbframe.core.models import ZERO, Direction, MarketRules, Position, Side, Spread
from arbframe.trading.premium import PremiumQuote

Signal = Spread | PremiumQuote
_QTY_CACHE_SIZE = 4096


def _dec(value: Any, default: str | None = None) -> Decimal | None:
    if value is None:
        return Decimal(default) if default is not None else None
    return Decimal(str(value))


@dataclass(frozen=True)
class StrategyConfig:
    """The ``arbitrage`` config section, typed. See :func:`StrategyConfig.from_section` for defaults."""

    domestic: str = "upbit"
    foreign: str = "binance"
    symbols: tuple[str, ...] = ("BTC", "ETH")
    directions: tuple[Direction, ...] = (Direction.KIMCHI, Direction.REVERSE)
    order_notional_krw: Decimal = Decimal("1000000")
    entry_threshold: Decimal = Decimal("0.03")
    exit_threshold: Decimal = Decimal("0.01")
    safety_margin: Decimal = ZERO
    max_position_notional_krw: Decimal = Decimal("5000000")
    max_total_notional_krw: Decimal = Decimal("20000000")
    max_open_positions: int = 4
    max_positions_per_symbol: int = 1
    cooldown_seconds: float = 60.0
    stop_loss_premium: Decimal | None = Decimal("0.03")
    max_holding_seconds: float | None = 86400.0
    max_daily_loss_krw: Decimal | None = Decimal("500000")
    max_fx_age_seconds: float = 300.0
    max_book_age_seconds: float | None = 30.0
    thin_book_penalty: Decimal = Decimal("0.05")
    book_depth: int = 15
    use_tether: bool = True
    timezone: str = "Asia/Seoul"
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> StrategyConfig:
        arb = dict(config.get("arbitrage") or {})
        fx = config.get("fx") or {}
        if "max_age_seconds" in fx and "max_fx_age_seconds" not in arb:
            arb["max_fx_age_seconds"] = fx["max_age_seconds"]
        return cls.from_section(arb)

    @classmethod
    def from_section(cls, s: Mapping[str, Any]) -> StrategyConfig:
        d = cls()

        def opt_dec(key: str, current: Decimal | None) -> Decimal | None:
            if key not in s:
                return current
            return _dec(s[key])

        def opt_float(key: str, current: float | None) -> float | None:
            if key not in s:
                return current
            return None if s[key] is None else float(s[key])

        return cls(
            domestic=str(s.get("domestic", d.domestic)),
            foreign=str(s.get("foreign", d.foreign)),
            symbols=tuple(str(x).upper() for x in s.get("symbols", d.symbols)),
            directions=tuple(Direction(str(x)) for x in s.get("directions", [x.value for x in d.directions])),
            order_notional_krw=_dec(s.get("order_notional_krw"), str(d.order_notional_krw)),  # type: ignore[arg-type]
            entry_threshold=_dec(s.get("entry_threshold"), str(d.entry_threshold)),  # type: ignore[arg-type]
            exit_threshold=_dec(s.get("exit_threshold"), str(d.exit_threshold)),  # type: ignore[arg-type]
            safety_margin=_dec(s.get("safety_margin"), "0"),  # type: ignore[arg-type]
            max_position_notional_krw=_dec(  # type: ignore[arg-type]
                s.get("max_position_notional_krw"), str(d.max_position_notional_krw)
            ),
            max_total_notional_krw=_dec(  # type: ignore[arg-type]
                s.get("max_total_notional_krw"), str(d.max_total_notional_krw)
            ),
            max_open_positions=int(s.get("max_open_positions", d.max_open_positions)),
            max_positions_per_symbol=int(s.get("max_positions_per_symbol", d.max_positions_per_symbol)),
            cooldown_seconds=float(s.get("cooldown_seconds", d.cooldown_seconds)),
            stop_loss_premium=opt_dec("stop_loss_premium", d.stop_loss_premium),
            max_holding_seconds=opt_float("max_holding_seconds", d.max_holding_seconds),
            max_daily_loss_krw=opt_dec("max_daily_loss_krw", d.max_daily_loss_krw),
            max_fx_age_seconds=float(s.get("max_fx_age_seconds", d.max_fx_age_seconds)),
            max_book_age_seconds=opt_float("max_book_age_seconds", d.max_book_age_seconds),
            thin_book_penalty=_dec(s.get("thin_book_penalty"), str(d.thin_book_penalty)),  # type: ignore[arg-type]
            book_depth=int(s.get("book_depth", d.book_depth)),
            use_tether=bool(s.get("use_tether", d.use_tether)),
            timezone=str(s.get("timezone", d.timezone)),
        )


@dataclass(frozen=True, slots=True)
class OpenDecision:
    symbol: str
    direction: Direction
    qty: Decimal
    spread: Signal


@dataclass(frozen=True, slots=True)
class CloseDecision:
    position: Position
    reason: str  # exit | stop | timeout
    close_premium: Decimal | None


@dataclass(frozen=True, slots=True)
class Blocked:
    """Why an entry signal was not taken (logged once per change by the engine)."""

    symbol: str
    direction: Direction
    reason: str


class PortfolioView:
    """What the strategy needs to know about the book of positions (the engine keeps it up to date).

    ``open_notional_krw`` (KRW value of the open positions' domestic legs at entry) is computed on first use.
    """

    __slots__ = ("_notional", "daily_realized_krw", "last_entry", "open_positions")

    def __init__(
        self,
        open_positions: Mapping[str, Position],
        open_notional_krw: Decimal | None,
        last_entry: Mapping[str, datetime],
        daily_realized_krw: Decimal,
    ) -> None:
        self.open_positions = open_positions
        self._notional = open_notional_krw
        self.last_entry = last_entry
        self.daily_realized_krw = daily_realized_krw

    @property
    def open_notional_krw(self) -> Decimal:
        if self._notional is None:
            self._notional = sum((p.qty * p.entry_domestic_price for p in self.open_positions.values()), ZERO)
        return self._notional


class Strategy:
    """Decides opens and closes for one symbol at a time; holds no state of its own."""

    def __init__(self, cfg: StrategyConfig) -> None:
        self.cfg = cfg
        self._notional = min(cfg.order_notional_krw, cfg.max_position_notional_krw)
        # (price text, step text) -> quantity: best bids sit on a price grid and repeat from tick to tick
        self._qty_cache: dict[tuple[str, str], Decimal] = {}

    # ------------------------------------------------------------------------------------------------ sizing
    def order_qty(self, reference_price_krw: Decimal, step: Decimal) -> Decimal:
        """Coin quantity worth ``order_notional_krw`` (capped by the per-position limit), on the ``step`` grid."""
        if reference_price_krw is None or reference_price_krw <= 0:
            return ZERO
        cache = self._qty_cache
        # keyed on the exact text: equal decimals with other exponents may give another spelling of the result
        key = (str(reference_price_krw), str(step))
        qty = cache.get(key)
        if qty is not None:
            return qty
        qty = (self._notional / reference_price_krw / step).to_integral_value(rounding=ROUND_DOWN) * step
        if len(cache) >= _QTY_CACHE_SIZE:
            cache.clear()
        cache[key] = qty
        return qty

    # ----------------------------------------------------------------------------------------------- closing
    def close_reason(
        self, position: Position, close_premium: Decimal | None, now: datetime
    ) -> str | None:
        cfg = self.cfg
        if close_premium is not None:
            if close_premium <= cfg.exit_threshold:
                return "exit"
            if cfg.stop_loss_premium is not None and close_premium >= position.entry_premium + cfg.stop_loss_premium:
                return "stop"
        held = (now - position.opened_at).total_seconds()
        if cfg.max_holding_seconds is not None and held >= cfg.max_holding_seconds:
            return "timeout"
        return None

    # ----------------------------------------------------------------------------------------------- opening
    def best_entry(self, spreads: Sequence[Signal]) -> Signal | None:
        """The direction with the highest net premium at or above the entry threshold."""
        best = None
        for spread in spreads:
            if (
                spread.direction in self.cfg.directions
                and spread.net_premium >= self.cfg.entry_threshold
                and (best is None or spread.net_premium > best.net_premium)
            ):
                best = spread
        return best

    def entry_block(
        self,
        spread: Signal,
        view: PortfolioView,
        now: datetime,
        *,
        fx_fresh: bool,
        books_fresh: bool = True,
    ) -> str | None:
        """Why no position may open now for ``spread`` (None when nothing blocks it)."""
        cfg = self.cfg
        if not fx_fresh:
            return f"FX rate is stale (older than {cfg.max_fx_age_seconds:g}s): no new entries"
        if not books_fresh:
            return "order books are stale: no new entries"
        if len(view.open_positions) >= cfg.max_open_positions:
            return f"max_open_positions={cfg.max_open_positions} reached"
        on_symbol = sum(1 for p in view.open_positions.values() if p.symbol == spread.symbol)
        if on_symbol >= cfg.max_positions_per_symbol:
            return f"max_positions_per_symbol={cfg.max_positions_per_symbol} reached for {spread.symbol}"
        last = view.last_entry.get(spread.symbol)
        if last is not None and (now - last).total_seconds() < cfg.cooldown_seconds:
            return f"cooldown: last entry or stop-loss on {spread.symbol} less than {cfg.cooldown_seconds:g}s ago"
        if cfg.max_daily_loss_krw is not None and view.daily_realized_krw <= -cfg.max_daily_loss_krw:
            return f"daily loss limit {cfg.max_daily_loss_krw} KRW reached"
        return None

    def size_entry(
        self,
        spread: Signal,
        view: PortfolioView,
        *,
        domestic_rules: MarketRules,
        foreign_rules: MarketRules,
        domestic_free: Mapping[str, Decimal],
        foreign_free: Mapping[str, Decimal],
        domestic_quote: str,
        foreign_quote: str,
        fee_domestic: Decimal,
        fee_foreign: Decimal,
    ) -> tuple[Decimal, str | None]:
        """(quantity, None) to open, or (0, reason) when limits, wallets or minimum sizes forbid it."""
        cfg = self.cfg
        qty = spread.qty
        step = max(domestic_rules.step_size, foreign_rules.step_size)
        d_price = spread.domestic_price
        f_price = spread.foreign_price
        # notional limits (KRW value of the domestic leg)
        room = min(cfg.max_position_notional_krw, cfg.max_total_notional_krw - view.open_notional_krw)
        if room <= 0:
            return ZERO, f"max_total_notional_krw={cfg.max_total_notional_krw} reached"
        qty = min(qty, room / d_price)
        # wallets: the leg that sells needs the coin, the leg that buys needs quote currency (fee included)
        sym = spread.symbol
        if spread.direction.domestic_side is Side.SELL:
            qty = min(qty, domestic_free.get(sym, ZERO))
            qty = min(qty, foreign_free.get(foreign_quote, ZERO) / (f_price * (1 + fee_foreign)))
        else:
            qty = min(qty, domestic_free.get(domestic_quote, ZERO) / (d_price * (1 + fee_domestic)))
            qty = min(qty, foreign_free.get(sym, ZERO))
        qty = (qty / step).to_integral_value(rounding=ROUND_DOWN) * step
        if qty <= 0:
            return ZERO, "paper wallets cannot carry the position"
        for rules, price, venue in (
            (domestic_rules, d_price, cfg.domestic),
            (foreign_rules, f_price, cfg.foreign),
        ):
            if qty < rules.min_qty or qty * price < rules.min_notional:
                return ZERO, f"{venue}: order of {qty} {sym} is below the minimum order size"
        return qty, None
