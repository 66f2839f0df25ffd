"""Risk limits of live execution, the residual exposure hedges leave, and their gauges (``docs/METRICS.md``).

:class:`RiskGuard` answers "may a new entry start now?" with None or a reason: kill switch, balance drift found by
the reconciliation, an order whose outcome is still unknown, residual exposure over ``live.max_residual_krw``,
``live.limits`` (notional per order, per symbol and in total, open positions, consecutive execution failures,
minimum reserve per venue and asset). :meth:`RiskGuard.after_hedge` counts failures and says when the kill switch
must trip (``max_consecutive_failures``, residual exposure, the daily loss limit).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from arbframe.core.models import ZERO, Side
from arbframe.execution.base import HedgeReport
from arbframe.execution.config import LiveConfig
from arbframe.execution.residual import Residual, exposure, total_krw

_families: weakref.WeakKeyDictionary[CollectorRegistry, ExecutionMetrics] = weakref.WeakKeyDictionary()
_NAN = float("nan")


def _f(value: Decimal | int | None) -> float:
    return _NAN if value is None else float(value)


@dataclass(frozen=True)
class ExecutionMetrics:
    """The ``arbframe_*`` execution collectors of one registry."""

    residual_exposure: Gauge
    kill_switch: Gauge
    consecutive_failures: Gauge
    unresolved_orders: Gauge
    entries_paused: Gauge
    balance_drift: Gauge  # venue, asset
    hedges: Counter  # purpose, status
    orders: Counter  # exchange, status
    limit: Gauge  # limit
    min_reserve: Gauge  # venue, asset

    @classmethod
    def get(cls, registry: CollectorRegistry) -> ExecutionMetrics:
        found = _families.get(registry)
        if found is None:
            found = _families[registry] = cls._build(registry)
        return found

    def precreate(self, purposes: tuple[str, ...] = ("open", "close")) -> None:
        """``arbframe_hedges_total`` at 0 for each purpose and outcome, so alerts see the first one."""
        from arbframe.execution.base import HEDGE_STATUSES

        for purpose in purposes:
            for status in HEDGE_STATUSES:
                self.hedges.labels(purpose=purpose, status=status)

    @classmethod
    def _build(cls, r: CollectorRegistry) -> ExecutionMetrics:
        return cls(
            residual_exposure=Gauge("arbframe_residual_exposure_krw",
                                    "KRW value of coin left unhedged by live hedges (blocks entries over "
                                    "live.max_residual_krw)", registry=r),
            kill_switch=Gauge("arbframe_kill_switch", "1 while the kill switch is tripped", registry=r),
            consecutive_failures=Gauge("arbframe_execution_consecutive_failures",
                                       "live hedges that failed in a row", registry=r),
            unresolved_orders=Gauge("arbframe_execution_unresolved_orders",
                                    "orders whose outcome is unknown (entries wait)", registry=r),
            entries_paused=Gauge("arbframe_execution_entries_paused",
                                 "1 while live entries are blocked by execution risk (kill switch, drift, residual, "
                                 "unknown orders, failures)", registry=r),
            balance_drift=Gauge("arbframe_balance_drift", "relative difference between a venue balance and what "
                                "the books say it should be", ["venue", "asset"], registry=r),
            hedges=Counter("arbframe_hedges", "live hedges by purpose and outcome", ["purpose", "status"],
                           registry=r),
            orders=Counter("arbframe_execution_orders", "live order state changes written", ["exchange", "status"],
                           registry=r),
            limit=Gauge("arbframe_risk_limit", "configured live risk limit (NaN: none)", ["limit"], registry=r),
            min_reserve=Gauge("arbframe_risk_min_reserve", "live.limits.min_reserve per venue and asset",
                              ["venue", "asset"], registry=r),
        )


class RiskGuard:
    """Entry checks and failure counting of live execution (see the module docstring)."""

    def __init__(self, cfg: LiveConfig, metrics: ExecutionMetrics | None = None) -> None:
        self.cfg = cfg
        self.limits = cfg.limits
        self.metrics = metrics
        self.consecutive_failures = 0
        #: ``Residual.key`` -> the coin a hedge left unhedged (:mod:`arbframe.execution.residual`)
        self.residuals: dict[str, Residual] = {}
        #: symbol -> coin mark in KRW now (the engine's marks; set by the runner): residuals are marked to market
        self.mark_source: Callable[[], Mapping[str, Decimal]] | None = None
        self.drift: str | None = None  # why the last balance check paused entries
        self.unresolved = 0
        self.killed_reason: str | None = None
        self.reconciling: str | None = "reconciliation has not run yet"
        if metrics is not None:
            metrics.precreate()
            self.publish_limits()

    # ---------------------------------------------------------------------------------------------- gauges
    def publish_limits(self) -> None:
        m, lim = self.metrics, self.limits
        if m is None:
            return
        for name, value in (("max_order_notional_krw", lim.max_order_notional_krw),
                            ("max_symbol_notional_krw", lim.max_symbol_notional_krw),
                            ("max_total_notional_krw", lim.max_total_notional_krw),
                            ("max_open_positions", lim.max_open_positions),
                            ("max_consecutive_failures", lim.max_consecutive_failures),
                            ("max_daily_loss_krw", lim.max_daily_loss_krw),
                            ("max_residual_krw", self.cfg.max_residual_krw),
                            ("max_balance_drift", self.cfg.max_balance_drift),
                            ("max_slippage_bps", self.cfg.max_slippage_bps),
                            ("max_hedge_slippage_bps", self.cfg.max_hedge_slippage_bps)):
            m.limit.labels(limit=name).set(_f(value))
        for venue, assets in lim.min_reserve.items():
            for asset, amount in assets.items():
                m.min_reserve.labels(venue=venue, asset=asset).set(float(amount))
        self.publish()

    def publish(self) -> None:
        m = self.metrics
        if m is None:
            return
        m.residual_exposure.set(float(self.residual_krw))
        m.kill_switch.set(1 if self.killed_reason is not None else 0)
        m.consecutive_failures.set(self.consecutive_failures)
        m.unresolved_orders.set(self.unresolved)
        m.entries_paused.set(1 if self.pause_reason() is not None else 0)

    def marks(self) -> Mapping[str, Decimal] | None:
        """The coin marks residuals are valued at now (None: none known, each at its hedge's price)."""
        return self.mark_source() if self.mark_source is not None else None

    @property
    def residual_krw(self) -> Decimal:
        """Per symbol |net coin x its mark now|, summed (:func:`arbframe.execution.residual.total_krw`)."""
        if not self.residuals:
            return ZERO
        return total_krw(self.residuals.values(), self.marks())

    def residual_over(self) -> bool:
        return self.residual_krw > self.cfg.max_residual_krw

    def residual_reason(self) -> str:
        return (f"residual exposure {self.residual_krw.quantize(Decimal(1)):,} KRW ({self.residual_text()}) over "
                f"live.max_residual_krw={self.cfg.max_residual_krw}")

    def residual_text(self) -> str:
        """One line: each symbol's net residual, where it sits and its KRW value; "none"."""
        parts = [e.describe() for e in exposure(self.residuals.values(), self.marks()).values()]
        return "; ".join(parts) if parts else "none"

    def restore_residuals(self, residuals: Iterable[Residual]) -> None:
        """The residuals recorded before a restart (replacing none held in memory)."""
        for r in residuals:
            self.residuals.setdefault(r.key, r)
        self.publish()

    def clear_residuals(self, keys: Iterable[str]) -> list[Residual]:
        """Drop the residuals an operator flattened by hand (``arbframe resume --flattened``); the ones dropped."""
        cleared = [self.residuals.pop(k) for k in keys if k in self.residuals]
        if cleared:
            self.publish()
        return cleared

    # ---------------------------------------------------------------------------------------------- checks
    def pause_reason(self) -> str | None:
        """Why no entry on any symbol may start now, or None."""
        if self.killed_reason is not None:
            return f"kill switch: {self.killed_reason}"
        if self.reconciling is not None:
            return self.reconciling
        if self.unresolved:
            return f"{self.unresolved} order(s) with an unknown outcome: entries wait until they are known"
        if self.drift is not None:
            return f"balance drift: {self.drift}"
        if self.residual_over():
            return self.residual_reason()
        limit = self.limits.max_consecutive_failures
        if limit is not None and self.consecutive_failures >= limit:
            return f"{self.consecutive_failures} consecutive execution failures (max {limit})"
        return None

    def entry_block(self, symbol: str, notional_krw: Decimal | None = None, *,
                    positions: Iterable[Any] = (), legs: Iterable[tuple[str, Side, Decimal, Decimal, str]] = (),
                    wallets: Mapping[str, Any] | None = None) -> str | None:
        """None when an entry of ``notional_krw`` on ``symbol`` may start; else why not. ``legs``: (venue, side,
        qty, price, quote currency) of its orders, checked against ``wallets`` and ``min_reserve``."""
        why = self.pause_reason()
        if why is not None or notional_krw is None:
            return why
        lim = self.limits
        open_positions = list(positions)
        if lim.max_open_positions is not None and len(open_positions) >= lim.max_open_positions:
            return f"live.limits.max_open_positions={lim.max_open_positions} reached"
        if lim.max_order_notional_krw is not None and notional_krw > lim.max_order_notional_krw:
            return (f"order of {notional_krw.quantize(Decimal(1))} KRW over live.limits.max_order_notional_krw="
                    f"{lim.max_order_notional_krw}")
        on_symbol = sum((p.qty * p.entry_domestic_price for p in open_positions if p.symbol == symbol), ZERO)
        if lim.max_symbol_notional_krw is not None and on_symbol + notional_krw > lim.max_symbol_notional_krw:
            return f"{symbol} notional would pass live.limits.max_symbol_notional_krw={lim.max_symbol_notional_krw}"
        total = sum((p.qty * p.entry_domestic_price for p in open_positions), ZERO)
        if lim.max_total_notional_krw is not None and total + notional_krw > lim.max_total_notional_krw:
            return f"total notional would pass live.limits.max_total_notional_krw={lim.max_total_notional_krw}"
        if lim.min_reserve and wallets is not None:
            for venue, side, qty, price, quote in legs:
                asset, spend = (quote, qty * price) if side is Side.BUY else (symbol, qty)
                reserve = lim.min_reserve.get(venue, {}).get(asset)
                if reserve is None:
                    continue
                wallet = wallets.get(venue)
                free = wallet.get(asset) if wallet is not None else ZERO
                if free - spend < reserve:
                    return (f"{venue} {asset}: {free} free less {spend} would fall under live.limits.min_reserve "
                            f"{reserve}")
        return None

    # -------------------------------------------------------------------------------------------- outcomes
    def after_hedge(self, report: HedgeReport, mark_krw: Decimal | None) -> str | None:
        """Count the hedge's outcome and record its residual (valued at ``mark_krw``, KRW per coin); the reason
        the kill switch must trip now, or None."""
        failed = (report.status in ("unwound", "unresolved") or (report.status == "rejected" and bool(report.orders))
                  or report.residual != 0)
        if report.residual:
            key = f"{report.position_id}:{report.purpose}"
            held = self.residuals.get(key)
            coin = report.residual + (held.coin if held is not None else ZERO)
            when = (report.finished_at or report.requested_at).isoformat()
            self.residuals[key] = Residual(report.position_id, report.purpose, report.symbol, report.residual_venue,
                                           coin, mark_krw.normalize() if mark_krw is not None else ZERO,
                                           held.ts if held is not None else when)
        self.consecutive_failures = self.consecutive_failures + 1 if failed else 0
        if self.metrics is not None:
            self.metrics.hedges.labels(purpose=report.purpose, status=report.status).inc()
        self.publish()
        limit = self.limits.max_consecutive_failures
        if limit is not None and self.consecutive_failures >= limit:
            return f"{self.consecutive_failures} consecutive execution failures (live.limits.max_consecutive_failures)"
        if report.residual and self.residual_over():  # this hedge left coin unhedged, and the total is too much
            return self.residual_reason()
        return None

    def daily_loss_trip(self, daily_realized_krw: Decimal, fallback_limit: Decimal | None) -> str | None:
        limit = self.limits.max_daily_loss_krw if self.limits.max_daily_loss_krw is not None else fallback_limit
        if limit is not None and daily_realized_krw <= -limit:
            return f"daily loss {(-daily_realized_krw).quantize(Decimal(1))} KRW reached the limit {limit} KRW"
        return None
