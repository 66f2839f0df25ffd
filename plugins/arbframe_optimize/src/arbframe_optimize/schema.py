"""The ``optimize`` config section (entry point ``optimize`` in ``arbframe.plugins``; cheap: no Optuna here).

Every ``arbframe`` command registers this module, so a config holding an ``optimize`` section validates wherever
the plugin is installed (``arbframe config validate``, ``arbframe run -c study.yml``). The search space's key
paths and ranges are checked against the rest of the schema when ``arbframe optimize`` starts
(:mod:`arbframe_optimize.space`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from arbframe import hookimpl, schema_defaults

ARBFRAME_API_VERSION = 1

#: objective name -> what it maximizes (arbframe_optimize.objective computes them)
OBJECTIVES: dict[str, str] = {
    "pnl": "realized PnL plus the unrealized PnL of positions open at the window's end (KRW)",
    "realized_pnl": "realized PnL of closed positions only (KRW)",
    "equity_change": "equity change: trading PnL, FX translation of USDT held and coin revaluation (KRW)",
    "pnl_over_drawdown": "pnl divided by the maximum drawdown (at least drawdown_floor_krw)",
    "pnl_per_trade": "pnl divided by the number of closed positions (0 without one)",
}

_NUMBER = {"type": "number"}
_RANGE_OR_CHOICES = {
    "type": "object",
    "description": "{low, high[, log][, step]} or {choices: [...]}",
    "properties": {
        "low": _NUMBER,
        "high": _NUMBER,
        "log": {"type": "boolean", "description": "sample on a log scale (low > 0)"},
        "step": {"type": "number", "exclusiveMinimum": 0, "description": "sample multiples of this above low"},
        "choices": {"type": "array", "minItems": 1,
                    "items": {"type": ["number", "string", "boolean", "null"]}},
    },
    "additionalProperties": False,
}

SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "parameter search (arbframe-optimize: `arbframe optimize`)",
    "properties": {
        "space": {
            "type": "object",
            "description": "parameter path (e.g. arbitrage.entry_threshold) -> range or choices",
            "additionalProperties": _RANGE_OR_CHOICES,
        },
        "objective": {"enum": list(OBJECTIVES), "default": "pnl", "description": "what a trial maximizes"},
        "min_trades": {"type": "integer", "minimum": 0, "default": 1,
                       "description": "constraint: fewer closed positions make a trial infeasible"},
        "max_drawdown_krw": {"type": ["number", "null"], "exclusiveMinimum": 0, "default": None,
                             "description": "constraint: a deeper drawdown makes a trial infeasible"},
        "drawdown_floor_krw": {"type": "number", "exclusiveMinimum": 0, "default": 1000,
                               "description": "pnl_over_drawdown divides by at least this"},
        "trials": {"type": "integer", "minimum": 1, "default": 100,
                   "description": "trials per study (per fold) when --trials is not given"},
        "folds": {"type": "integer", "minimum": 0, "maximum": 50, "default": 3,
                  "description": "walk-forward folds (0: one study over the whole span, no out-of-sample score)"},
        "anchored": {"type": "boolean", "default": False,
                     "description": "train each fold on everything before its test window (false: the window "
                                    "just before it)"},
        "seed": {"type": "integer", "default": 42, "description": "sampler seed (worker i of --jobs uses seed+i)"},
        "startup_trials": {"type": "integer", "minimum": 1, "default": 10,
                           "description": "random trials before the sampler (TPE) models the results"},
        "report_top": {"type": "integer", "minimum": 1, "maximum": 100, "default": 5,
                       "description": "best trials per fold in the report, each re-scored out of sample"},
        "heartbeat_seconds": {"type": "integer", "minimum": 1, "default": 10,
                              "description": "database storage: a running trial's heartbeat interval"},
        "grace_seconds": {"type": "integer", "minimum": 1, "default": 30,
                          "description": "database storage: a trial without a heartbeat this long is failed and "
                                         "retried"},
        "max_retries": {"type": "integer", "minimum": 0, "default": 3,
                        "description": "a trial whose worker died is retried at most this often"},
        "poll_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 1.0,
                         "description": "how often a worker with nothing to start looks at the study again"},
    },
    "additionalProperties": False,
}


def settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``optimize`` section with every default filled in."""
    section = config.get("optimize") or {}
    out = schema_defaults(SCHEMA, section)
    out.setdefault("space", {})
    return out


@hookimpl
def arbframe_config_schema() -> Mapping[str, Mapping[str, Any]]:
    return {"optimize": SCHEMA}
