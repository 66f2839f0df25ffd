"""Trading metrics (seed D3/D4): computed for real from positions, exposed as prometheus-client collectors.

- :class:`TradingStats` keeps the numbers: total realized PnL, daily PnL (the day boundary is midnight in a
  configurable time zone, default ``Asia/Seoul``), win rate, round-trip trades, open positions, average trade
  duration, unrealized PnL. It is plain Python, fed by the engine.
- :class:`TradingMetrics` is the family of ``arbitrage_*`` collectors, built once per kernel registry
  (never prometheus-client's global one).
- :func:`format_metrics_summary` gives the seed's log line:
  ``[METRICS] pnl=0₩ win_rate=0.0% trades=0 open_pos=0 daily_pnl=0₩ avg_duration=0s``.
"""

from __future__ import annotations

import math
import platform
import weakref
from dataclasses import dataclass
from datetime import date, datetime, timezone, tzinfo
from decimal import Decimal
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from arbframe.core.models import ZERO, DailySummary, OrderStatus, Position, Side

TICK_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def load_timezone(name: str) -> tzinfo:
    """A zoneinfo time zone (the kernel depends on ``tzdata``, so every IANA name resolves even without a system tz
    database). Should it still fail (a typo, a stripped install): UTC+9 for ``Asia/Seoul`` (Korea has no DST), UTC
    for anything else, with a warning that daily figures then roll over at UTC midnight."""
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(name)
    except Exception as exc:
        from datetime import timedelta

        if name in ("Asia/Seoul", "KST"):
            return timezone(timedelta(hours=9), "KST")
        if name not in ("UTC", "Etc/UTC"):
            import logging

            logging.getLogger("arbframe.metrics").warning(
                "time zone %r unavailable (%s); daily PnL and limits use UTC days", name, exc)
        return timezone.utc


@dataclass(frozen=True)
class MetricSnapshot:
    """The seed's MetricSnapshot, with exact decimals."""

    timestamp: datetime
    total_pnl_krw: Decimal
    win_rate: float
    num_trades: int
    num_open_positions: int
    daily_pnl_krw: Decimal
    avg_trade_duration_seconds: float
    unrealized_pnl_krw: Decimal = ZERO


class TradingStats:
    """Running totals of closed positions plus the open book (fed by the engine)."""

    def __init__(self, tz: str | tzinfo = "Asia/Seoul") -> None:
        self.tz = load_timezone(tz) if isinstance(tz, str) else tz
        self.total_pnl_krw = ZERO
        self.trades = 0
        self.wins = 0
        self.duration_total = 0.0
        self.daily: dict[date, Decimal] = {}
        self.daily_trades: dict[date, int] = {}
        self.open_positions = 0
        self.unrealized_pnl_krw = ZERO
        self.peak_equity_krw: Decimal | None = None  # highest realized + unrealized PnL seen by this process
        self.now: datetime | None = None
        self._daily_cache: tuple[datetime, Decimal] | None = None

    def day_of(self, ts: datetime) -> date:
        return ts.astimezone(self.tz).date()

    def record_close(self, position: Position) -> None:
        pnl = position.realized_pnl_krw or ZERO
        self.total_pnl_krw += pnl
        self.trades += 1
        if pnl > 0:
            self.wins += 1
        if position.closed_at is not None:
            self.duration_total += (position.closed_at - position.opened_at).total_seconds()
            day = self.day_of(position.closed_at)
            self.daily[day] = self.daily.get(day, ZERO) + pnl
            self.daily_trades[day] = self.daily_trades.get(day, 0) + 1
        self._daily_cache = None

    @property
    def win_rate(self) -> float:
        return self.wins / self.trades if self.trades else 0.0

    @property
    def avg_trade_duration_seconds(self) -> float:
        return self.duration_total / self.trades if self.trades else 0.0

    def drawdown_krw(self) -> Decimal:
        """How far realized + unrealized PnL is below its peak in this process (0 at a new peak); updates the peak."""
        equity = self.total_pnl_krw + self.unrealized_pnl_krw
        if self.peak_equity_krw is None or equity > self.peak_equity_krw:
            self.peak_equity_krw = equity
        return self.peak_equity_krw - equity

    def daily_pnl(self, now: datetime | None = None) -> Decimal:
        now = now or self.now
        if now is None:
            return ZERO
        cached = self._daily_cache
        if cached is not None and cached[0] == now:
            return cached[1]
        value = self.daily.get(self.day_of(now), ZERO)
        self._daily_cache = (now, value)
        return value

    def snapshot(self, now: datetime) -> MetricSnapshot:
        return MetricSnapshot(
            timestamp=now,
            total_pnl_krw=self.total_pnl_krw,
            win_rate=self.win_rate,
            num_trades=self.trades,
            num_open_positions=self.open_positions,
            daily_pnl_krw=self.daily_pnl(now),
            avg_trade_duration_seconds=self.avg_trade_duration_seconds,
            unrealized_pnl_krw=self.unrealized_pnl_krw,
        )


class DayRollover:
    """Notices the first tick of a new trading day and summarises the day that ended."""

    def __init__(self, stats: TradingStats) -> None:
        self.stats = stats
        self.day: date | None = None

    def update(self, now: datetime) -> DailySummary | None:
        day = self.stats.day_of(now)
        ended, self.day = self.day, day
        if ended is None or day <= ended:
            return None
        s = self.stats
        return DailySummary(
            day=ended, realized_pnl_krw=s.daily.get(ended, ZERO), trades=s.daily_trades.get(ended, 0),
            total_pnl_krw=s.total_pnl_krw, win_rate=s.win_rate, open_positions=s.open_positions,
            unrealized_pnl_krw=s.unrealized_pnl_krw,
        )


def _krw(value: Decimal) -> str:
    return f"{value.quantize(Decimal(1)):,}" if value else "0"


def format_metrics_summary(s: MetricSnapshot) -> str:
    """``[METRICS] pnl=0₩ win_rate=0.0% trades=0 open_pos=0 daily_pnl=0₩ avg_duration=0s`` (seed D3)."""
    return (
        f"[METRICS] pnl={_krw(s.total_pnl_krw)}₩ win_rate={s.win_rate * 100:.1f}% trades={s.num_trades} "
        f"open_pos={s.num_open_positions} daily_pnl={_krw(s.daily_pnl_krw)}₩ "
        f"avg_duration={s.avg_trade_duration_seconds:.0f}s unrealized={_krw(s.unrealized_pnl_krw)}₩"
    )


_families: weakref.WeakKeyDictionary[CollectorRegistry, TradingMetrics] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class TradingMetrics:
    """The ``arbitrage_*`` collectors of one registry (see docs/METRICS.md)."""

    total_pnl: Gauge
    daily_pnl: Gauge
    unrealized_pnl: Gauge
    win_rate: Gauge
    trades: Counter
    open_positions: Gauge
    avg_trade_duration: Gauge
    premium: Gauge  # symbol, direction
    net_premium: Gauge  # symbol, direction
    fx_rate: Gauge
    fx_age: Gauge
    tick_seconds: Histogram
    ticks: Counter
    orders: Counter  # exchange, side, status
    simulated: Gauge
    heartbeat: Gauge
    build_info: Gauge
    drawdown: Gauge
    # configured limits, so alert rules compare against the config instead of copied numbers (NaN: no limit)
    max_daily_loss: Gauge
    max_fx_age: Gauge
    max_drawdown: Gauge
    interval: Gauge
    equity: Gauge
    equity_change: Gauge
    session_pnl: Gauge
    open_value: Gauge
    close_cost: Gauge
    open_at_start: Gauge
    fx_translation: Gauge
    coin_revaluation: Gauge
    data_blocked: Counter  # symbol, reason (arbframe.trading.marketdata.REASONS)

    @classmethod
    def get(cls, registry: CollectorRegistry) -> TradingMetrics:
        found = _families.get(registry)
        if found is None:
            found = cls._build(registry)
            _families[registry] = found
        return found

    @classmethod
    def _build(cls, r: CollectorRegistry) -> TradingMetrics:
        from arbframe.core.version import __version__

        build = Gauge("arbframe_build_info", "arbframe version (value is always 1)", ["version", "python"], registry=r)
        build.labels(version=__version__, python=platform.python_version()).set(1)
        return cls(
            total_pnl=Gauge("arbitrage_total_pnl_krw", "Total realized PnL in KRW", registry=r),
            daily_pnl=Gauge(
                "arbitrage_daily_pnl_krw", "Realized PnL of the current day (configured time zone) in KRW", registry=r
            ),
            unrealized_pnl=Gauge(
                "arbitrage_unrealized_pnl_krw", "Open positions marked to market in KRW (after exit fees)", registry=r
            ),
            win_rate=Gauge("arbitrage_win_rate", "Win rate of closed positions (0.0 ~ 1.0)", registry=r),
            trades=Counter("arbitrage_trades", "Closed round-trip positions", registry=r),
            open_positions=Gauge("arbitrage_open_positions", "Open hedged positions", registry=r),
            avg_trade_duration=Gauge(
                "arbitrage_avg_trade_duration_seconds", "Average holding time of closed positions", registry=r
            ),
            premium=Gauge(
                "arbitrage_premium_ratio", "Executable premium (gross) for the order size", ["symbol", "direction"],
                registry=r,
            ),
            net_premium=Gauge(
                "arbitrage_net_premium_ratio", "Executable premium after round-trip fees", ["symbol", "direction"],
                registry=r,
            ),
            fx_rate=Gauge("arbitrage_fx_rate_krw", "USD/KRW rate used for the premium", registry=r),
            fx_age=Gauge("arbitrage_fx_age_seconds", "Age of the USD/KRW rate when used", registry=r),
            tick_seconds=Histogram(
                "arbitrage_tick_duration_seconds", "Engine tick processing time", buckets=TICK_BUCKETS, registry=r
            ),
            ticks=Counter("arbitrage_ticks", "Engine ticks processed", registry=r),
            orders=Counter("arbitrage_orders", "Order legs by outcome", ["exchange", "side", "status"], registry=r),
            simulated=Gauge("arbitrage_simulated_data", "1 when market data is simulated (mock mode)", registry=r),
            heartbeat=Gauge(
                "arbitrage_heartbeat_timestamp_seconds", "Unix time of the last service heartbeat", registry=r
            ),
            build_info=build,
            equity=Gauge("arbitrage_equity_krw", "Every paper balance valued at the current FX rate and coin marks",
                         registry=r),
            equity_change=Gauge(
                "arbitrage_equity_change_krw", "Equity change since the service started (= session PnL + unrealized "
                "PnL + close cost + FX translation + coin revaluation - open positions at the start)", registry=r),
            session_pnl=Gauge("arbitrage_session_pnl_krw", "Realized trade PnL of positions closed since the "
                              "service started", registry=r),
            open_value=Gauge("arbitrage_open_positions_value_krw", "What the open positions' entry legs changed in "
                             "the balances, at the current FX rate and coin marks (= unrealized PnL + close cost)",
                             registry=r),
            close_cost=Gauge("arbitrage_close_cost_krw", "What closing the open positions at the current books "
                             "would take out of equity (exit fees, depth, the premium still open): equity values "
                             "them at the marks", registry=r),
            open_at_start=Gauge("arbitrage_open_positions_at_start_krw", "The entry legs of the positions resumed "
                                "at the start, at the first tick's FX rate and coin marks (0 on a fresh start)",
                                registry=r),
            fx_translation=Gauge("arbitrage_fx_translation_krw", "Equity change from the USD/KRW move on the USDT "
                                 "held, since the service started", registry=r),
            coin_revaluation=Gauge("arbitrage_coin_revaluation_krw", "Equity change from coin marks moving on the "
                                   "coin held (inventory and residue), since the service started", registry=r),
            data_blocked=Counter("arbitrage_market_data_blocked", "Symbol ticks blocked by a market-data check",
                                 ["symbol", "reason"], registry=r),
            drawdown=Gauge(
                "arbitrage_drawdown_krw", "Realized + unrealized PnL below its peak since the process started (KRW)",
                registry=r,
            ),
            max_daily_loss=_limit(
                r, "arbitrage_max_daily_loss_krw", "Configured daily loss limit: no new entries past it (KRW)"
            ),
            max_fx_age=_limit(r, "arbitrage_max_fx_age_seconds", "Configured FX age past which entries are blocked"),
            max_drawdown=_limit(r, "arbitrage_max_drawdown_krw", "Configured drawdown alert threshold (KRW)"),
            interval=_limit(r, "arbitrage_tick_interval_seconds", "Configured interval between service ticks"),
        )

    def publish_equity(self, breakdown: Any) -> None:
        """Copy an :class:`~arbframe.trading.accounting.EquityBreakdown` (None: no FX rate yet) into the gauges."""
        if breakdown is None:
            return
        self.equity.set(float(breakdown.equity))
        self.equity_change.set(float(breakdown.change))
        self.session_pnl.set(float(breakdown.realized))
        self.open_value.set(float(breakdown.open_value))
        self.close_cost.set(float(breakdown.close_cost))
        self.open_at_start.set(float(breakdown.open_at_start))
        self.fx_translation.set(float(breakdown.fx_translation))
        self.coin_revaluation.set(float(breakdown.coin_revaluation))

    def publish_limits(
        self, *, max_daily_loss_krw: Decimal | None, max_fx_age_seconds: float | None,
        max_drawdown_krw: Decimal | None, interval_seconds: float | None,
    ) -> None:
        """Export the configured limits (None: no limit, exported as NaN so a comparison never fires)."""
        for gauge, value in (
            (self.max_daily_loss, max_daily_loss_krw), (self.max_fx_age, max_fx_age_seconds),
            (self.max_drawdown, max_drawdown_krw), (self.interval, interval_seconds),
        ):
            gauge.set(math.nan if value is None else float(value))

    def precreate_orders(self, exchanges: tuple[str, ...]) -> None:
        """``arbitrage_orders_total`` at 0 for each venue, side and final status, so alerts see the first one."""
        for exchange in exchanges:
            for side in Side:
                for status in (OrderStatus.FILLED, OrderStatus.PARTIALLY_FILLED, OrderStatus.CANCELED,
                               OrderStatus.REJECTED):
                    self.orders.labels(exchange=exchange, side=side.value, status=status.value)

    def publish(self, stats: TradingStats, now: datetime) -> None:
        """Copy the computed numbers into the gauges."""
        self.total_pnl.set(float(stats.total_pnl_krw))
        self.daily_pnl.set(float(stats.daily_pnl(now)))
        self.unrealized_pnl.set(float(stats.unrealized_pnl_krw))
        self.win_rate.set(stats.win_rate)
        self.open_positions.set(stats.open_positions)
        self.avg_trade_duration.set(stats.avg_trade_duration_seconds)
        self.drawdown.set(float(stats.drawdown_krw()))


def _limit(registry: CollectorRegistry, name: str, documentation: str) -> Gauge:
    gauge = Gauge(name, documentation, registry=registry)
    gauge.set(math.nan)  # unknown until the service publishes its config
    return gauge
