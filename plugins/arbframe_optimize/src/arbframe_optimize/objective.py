"""What a trial scores: one of :data:`arbframe_optimize.schema.OBJECTIVES` of a replay's summary, and the
constraints (minimum closed positions, maximum drawdown) as Optuna reads them (each <= 0: met)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from arbframe import BacktestSummary


def metrics(summary: BacktestSummary) -> dict[str, Any]:
    """The figures of a replay a study keeps per trial (small: no curve, no table)."""
    realized = Decimal(summary.realized_pnl_krw)
    pnl = realized + Decimal(summary.unrealized_pnl_krw)
    return {
        "pnl": float(pnl),
        "realized_pnl": float(realized),
        "equity_change": float(Decimal(summary.equity_change_krw)),
        "max_drawdown": float(Decimal(summary.max_drawdown_krw)),
        "trades": summary.trades,
        "wins": summary.wins,
        "open_positions": summary.open_positions,
        "snapshots": summary.snapshots,
        "first_ts": summary.first_ts,
        "last_ts": summary.last_ts,
    }


def score(figures: Mapping[str, Any], objective: str, drawdown_floor: float) -> float:
    """The objective's value of one replay's :func:`metrics` (higher is better)."""
    pnl = float(figures["pnl"])
    if objective in ("pnl", "realized_pnl", "equity_change"):
        return float(figures[objective])
    if objective == "pnl_over_drawdown":
        return pnl / max(float(figures["max_drawdown"]), drawdown_floor)
    if objective == "pnl_per_trade":
        trades = int(figures["trades"])
        return pnl / trades if trades else 0.0
    raise ValueError(f"unknown objective {objective!r}")


def violations(figures: Mapping[str, Any], min_trades: int, max_drawdown: float | None) -> list[float]:
    """Constraint values, each <= 0 when met: ``min_trades - trades`` and ``drawdown - max_drawdown``."""
    out = [float(min_trades - int(figures["trades"]))]
    if max_drawdown is not None:
        out.append(float(figures["max_drawdown"]) - float(max_drawdown))
    return out


def feasible(values: list[float] | None) -> bool:
    return values is not None and all(v <= 0 for v in values)


def trial_constraints(trial: Any) -> list[float] | None:
    """The constraint values a finished trial recorded (in its ``result`` user attribute), None without."""
    result = trial.user_attrs.get("result")
    return None if not result else result.get("constraints")


def trial_feasible(trial: Any) -> bool:
    return feasible(trial_constraints(trial))
