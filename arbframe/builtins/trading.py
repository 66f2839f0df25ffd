"""The trading core as a builtin plugin: JSON Schema fragments of the sections it owns.

Sections: ``arbitrage`` (venue pair, symbols, thresholds, limits), ``fx`` (only ``max_age_seconds`` here; the
source drivers add theirs), ``paper`` (paper wallets, id seed), ``simulation`` (the simulated market of mock
mode), ``backtest`` (replay output), ``live`` (confirmation, execution bounds, risk limits) and ``alerts``
(thresholds the alert rules read from gauges).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from arbframe.kernel.hookspecs import hookimpl

ARBFRAME_API_VERSION = 1

_NUM = {"type": "number"}
_NONNEG = {"type": "number", "minimum": 0}
_POS = {"type": "number", "exclusiveMinimum": 0}
_RATIO = {"type": "number", "minimum": -1, "maximum": 10}
_OPT_POS = {"type": ["number", "null"], "exclusiveMinimum": 0}
_BALANCES = {
    "type": "object",
    "description": "venue -> {asset: amount}",
    "additionalProperties": {
        "type": "object",
        "additionalProperties": {"type": ["number", "string"]},
    },
}

ARBITRAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "the venue pair, symbols, entry/exit rules and risk limits of the strategy",
    "properties": {
        "domestic": {"type": "string", "minLength": 1, "description": "KRW venue (exchange plugin name)"},
        "foreign": {"type": "string", "minLength": 1, "description": "USDT venue (exchange plugin name)"},
        "symbols": {
            "type": "array", "minItems": 1, "uniqueItems": True,
            "items": {"type": "string", "pattern": "^[A-Za-z0-9]{1,20}$"},
        },
        "directions": {
            "type": "array", "minItems": 1, "uniqueItems": True, "items": {"enum": ["kimchi", "reverse"]},
        },
        "order_notional_krw": {**_POS, "description": "KRW value of one position (each leg)"},
        "entry_threshold": {
            "type": "number", "minimum": 0, "maximum": 10,
            "description": "net premium (after round-trip fees) that opens a position; exit_threshold <= it",
        },
        "exit_threshold": {**_RATIO, "description": "close when the premium at closing prices falls to this"},
        "safety_margin": {**_NONNEG, "description": "subtracted from the premium on top of the fees"},
        "max_position_notional_krw": _POS,
        "max_total_notional_krw": _POS,
        "max_open_positions": {"type": "integer", "minimum": 0},
        "max_positions_per_symbol": {"type": "integer", "minimum": 0},
        "cooldown_seconds": _NONNEG,
        "stop_loss_premium": {**_OPT_POS, "description": "close when the premium moves this far against entry"},
        "max_holding_seconds": {**_OPT_POS, "description": "close positions held this long"},
        "max_daily_loss_krw": {**_OPT_POS, "description": "no new entries once the day's realized loss reaches it"},
        "max_fx_age_seconds": {**_POS, "description": "older FX rates block new entries (default fx.max_age_seconds)"},
        "max_book_age_seconds": {**_OPT_POS, "description": "an older order book blocks its symbol for the tick"},
        "thin_book_penalty": {
            **_NONNEG, "description": "a position the book is too thin to close is marked at the depth there is "
            "and the rest at the last price moved this fraction against it",
        },
        "book_depth": {"type": "integer", "minimum": 1, "maximum": 200},
        "use_tether": {"type": "boolean", "description": "also read the domestic KRW-USDT book (tether premium)"},
        "log_spreads": {"type": "boolean", "description": "record every spread (both directions, every tick)"},
        "spread_log_interval_seconds": {
            **_NONNEG, "description": "record spreads at most this often in market time (0: every tick)",
        },
        "timezone": {"type": "string", "minLength": 1, "description": "day boundary of daily PnL (Asia/Seoul)"},
    },
    "additionalProperties": False,
}

FX_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "max_age_seconds": {**_POS, "description": "an FX rate older than this blocks new entries"},
        # the builtin `static` source's rate: a kernel key of the shared `fx` section (the seed's fx_mode=static)
        "static_rate": {**_POS, "description": "USD/KRW of the `static` FX source"},
    },
}

_SIDE_FEE = {
    "type": "object",
    "properties": {
        "rate": {**_NONNEG, "description": "fee fraction (default: the exchange's fee_rate)"},
        "asset": {"type": "string", "minLength": 1,
                  "description": "quote | base | an asset priced in USDT such as BNB (then asset_price)"},
        "asset_price": {**_POS, "description": "price of the fee asset in the venue's quote currency"},
    },
    "additionalProperties": False,
}
_FEES = {
    "type": "object",
    "description": "venue -> {buy, sell}: the fee schedule paper fills charge",
    "additionalProperties": {
        "type": "object",
        "properties": {"buy": _SIDE_FEE, "sell": _SIDE_FEE},
        "additionalProperties": False,
    },
}

PAPER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "paper execution",
    "properties": {
        "balances": _BALANCES,
        "fees": _FEES,
        "seed": {"type": ["integer", "null"], "description": "seed of record ids (null: random ids)"},
    },
    "additionalProperties": False,
}

SIMULATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "the simulated market used in mock mode",
    "properties": {
        "seed": {"type": "integer"},
        "tick_seconds": _POS,
        "premium_mean": _NUM,
        "premium_sigma": _NONNEG,
        "premium_reversion": _NONNEG,
        "excursion_prob": {"type": "number", "minimum": 0, "maximum": 1},
        "excursion_min": _NONNEG,
        "excursion_max": _NONNEG,
        "excursion_up_prob": {"type": "number", "minimum": 0, "maximum": 1},
        "tether_mean": _NUM,
        "price_sigma": _NONNEG,
        "spread_bps": _NONNEG,
        "level_gap_bps": _NONNEG,
        "level_notional_usd": _POS,
        "base_prices": {"type": "object", "additionalProperties": _POS},
        "usdkrw": {**_POS, "description": "starting USD/KRW (default: fx.static_rate)"},
    },
    "additionalProperties": False,
}

BACKTEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "data": {"type": ["string", "null"], "description": "recorded snapshots (JSON lines, .gz allowed)"},
        "output_dir": {"type": "string", "minLength": 1, "description": "where the replay writes its files"},
        "chart": {"type": "boolean", "description": "write premium_equity.png when matplotlib is installed"},
        "seed": {"type": "integer", "description": "seed of the ids the replay writes"},
        "spread_log_interval_seconds": {
            **_NONNEG, "description": "record spreads at most this often in market time (0: every snapshot)",
        },
    },
    "additionalProperties": False,
}

_OPT_POS_INT = {"type": ["integer", "null"], "minimum": 1}
_LIMITS = {
    "type": "object",
    "description": "live risk limits (null: none); a breach blocks entries, some trip the kill switch",
    "properties": {
        "max_order_notional_krw": {**_OPT_POS, "description": "KRW value of one entry's domestic leg"},
        "max_symbol_notional_krw": {**_OPT_POS, "description": "KRW at entry of the open positions on one symbol"},
        "max_total_notional_krw": {**_OPT_POS, "description": "KRW at entry of every open position"},
        "max_open_positions": {**_OPT_POS_INT, "description": "open positions, entries in flight included"},
        "max_consecutive_failures": {
            **_OPT_POS_INT, "description": "hedges failed in a row (unwound, unresolved, residual): trips the kill "
            "switch",
        },
        "max_daily_loss_krw": {
            **_OPT_POS, "description": "the day's realized loss that trips the kill switch (null: "
            "arbitrage.max_daily_loss_krw)",
        },
        "min_reserve": {
            "type": "object", "description": "venue -> {asset: amount} that must stay free after an entry's orders",
            "additionalProperties": {"type": "object", "additionalProperties": {"type": ["number", "string"]}},
        },
    },
    "additionalProperties": False,
}

LIVE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "live execution (docs/LIVE.md)",
    "properties": {
        "confirm": {"type": "boolean", "description": "must be true (with credentials) for --mode live"},
        "dry_run": {"type": "boolean",
                    "description": "send every order to the venues' test endpoints: checked, never placed"},
        "max_slippage_bps": {**_NONNEG, "description": "IOC price bound: the book VWAP moved this far against us"},
        "max_hedge_slippage_bps": {
            **_NONNEG, "description": "bound of hedge retries and unwinds when one leg filled more than the other",
        },
        "hedge_timeout_seconds": {**_POS, "description": "how long to retry the missing leg, then to unwind"},
        "hedge_retry_interval_seconds": {**_NONNEG, "description": "pause between hedge retries"},
        "lookup_interval_seconds": {**_POS, "description": "pause between lookups of an order by client id"},
        "not_found_seconds": {
            **_POS, "description": "an order the venue still does not know this long after sending was never placed",
        },
        "rate_limit_backoff_seconds": {**_POS, "description": "first wait after a 429 without Retry-After (doubles)"},
        "max_residual_krw": {
            **_NONNEG, "description": "unhedged coin value that blocks entries and trips the kill switch",
        },
        "reconcile_interval_minutes": {**_POS, "description": "balance check against the books every N minutes"},
        "max_balance_drift": {
            **_NONNEG, "description": "relative balance difference from the books that pauses entries",
        },
        "reconcile_lookback_hours": {**_POS, "description": "stored orders read back at start"},
        "persist_timeout_seconds": {**_POS, "description": "bound on storing one order state before sending"},
        "limits": _LIMITS,
    },
    "additionalProperties": False,
}


ALERTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "alert thresholds exported as gauges for the Prometheus rules (they change no trading decision)",
    "properties": {
        "max_drawdown_krw": {
            **_OPT_POS,
            "description": "ArbframeDrawdown fires past this drawdown from peak (null: arbitrage.max_daily_loss_krw)",
        },
    },
    "additionalProperties": False,
}


@hookimpl
def arbframe_config_schema() -> Mapping[str, Mapping[str, Any]]:
    return {
        "arbitrage": ARBITRAGE_SCHEMA,
        "fx": FX_SCHEMA,
        "paper": PAPER_SCHEMA,
        "simulation": SIMULATION_SCHEMA,
        "backtest": BACKTEST_SCHEMA,
        "live": LIVE_SCHEMA,
        "alerts": ALERTS_SCHEMA,
    }
