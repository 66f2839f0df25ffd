"""The ``live`` config section, typed (schema: ``arbframe/builtins/trading.py`` ``LIVE_SCHEMA``; defaults:
``arbframe/defaults/base.yml``; what each key does: ``docs/LIVE.md``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


@dataclass(frozen=True)
class RiskLimits:
    """``live.limits``: a breach blocks new entries with a reason; ``max_consecutive_failures`` and
    ``max_daily_loss_krw`` (and ``live.max_residual_krw``) trip the kill switch."""

    max_order_notional_krw: Decimal | None = Decimal("2000000")
    max_symbol_notional_krw: Decimal | None = Decimal("5000000")
    max_total_notional_krw: Decimal | None = Decimal("20000000")
    max_open_positions: int | None = 4
    max_consecutive_failures: int | None = 3
    max_daily_loss_krw: Decimal | None = None
    #: venue -> asset -> amount that must stay free after an entry's orders
    min_reserve: Mapping[str, Mapping[str, Decimal]] = field(default_factory=dict)

    @classmethod
    def from_section(cls, s: Mapping[str, Any] | None) -> RiskLimits:
        s = s or {}
        d = cls()

        def pick(key: str, conv: Any) -> Any:
            return conv(s[key]) if key in s and s[key] is not None else (None if key in s else getattr(d, key))

        return cls(
            max_order_notional_krw=pick("max_order_notional_krw", _dec),
            max_symbol_notional_krw=pick("max_symbol_notional_krw", _dec),
            max_total_notional_krw=pick("max_total_notional_krw", _dec),
            max_open_positions=pick("max_open_positions", int),
            max_consecutive_failures=pick("max_consecutive_failures", int),
            max_daily_loss_krw=pick("max_daily_loss_krw", _dec),
            min_reserve={venue: {asset.upper(): Decimal(str(v)) for asset, v in (assets or {}).items()}
                         for venue, assets in (s.get("min_reserve") or {}).items()},
        )


@dataclass(frozen=True)
class LiveConfig:
    confirm: bool = False
    dry_run: bool = False
    max_slippage_bps: Decimal = Decimal(20)
    max_hedge_slippage_bps: Decimal = Decimal(60)
    hedge_timeout_seconds: float = 10.0
    hedge_retry_interval_seconds: float = 0.5
    lookup_interval_seconds: float = 0.5
    rate_limit_backoff_seconds: float = 1.0
    not_found_seconds: float = 5.0
    max_residual_krw: Decimal = Decimal(50000)
    reconcile_interval_seconds: float = 300.0
    max_balance_drift: Decimal = Decimal("0.001")
    reconcile_lookback_hours: float = 72.0
    persist_timeout_seconds: float = 5.0
    limits: RiskLimits = field(default_factory=RiskLimits)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> LiveConfig:
        s = config.get("live") or {}
        d = cls()

        def num(key: str, conv: Any = float) -> Any:
            return conv(str(s[key])) if conv is Decimal and key in s else conv(s[key]) if key in s else getattr(d, key)

        return cls(
            confirm=bool(s.get("confirm", False)),
            dry_run=bool(s.get("dry_run", False)),
            max_slippage_bps=num("max_slippage_bps", Decimal),
            max_hedge_slippage_bps=num("max_hedge_slippage_bps", Decimal),
            hedge_timeout_seconds=num("hedge_timeout_seconds"),
            hedge_retry_interval_seconds=num("hedge_retry_interval_seconds"),
            lookup_interval_seconds=num("lookup_interval_seconds"),
            rate_limit_backoff_seconds=num("rate_limit_backoff_seconds"),
            not_found_seconds=num("not_found_seconds"),
            max_residual_krw=num("max_residual_krw", Decimal),
            reconcile_interval_seconds=float(s["reconcile_interval_minutes"]) * 60
            if "reconcile_interval_minutes" in s else d.reconcile_interval_seconds,
            max_balance_drift=num("max_balance_drift", Decimal),
            reconcile_lookback_hours=num("reconcile_lookback_hours"),
            persist_timeout_seconds=num("persist_timeout_seconds"),
            limits=RiskLimits.from_section(s.get("limits")),
        )
