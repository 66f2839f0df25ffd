"""arbframe: a plugin framework for cross-exchange crypto arbitrage.

The names here are the public API plugins may import; everything else in the kernel is internal. Importing this
package is cheap (``arbframe --help`` must stay quick): every name loads from its module on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> module that defines it
_LAZY: dict[str, str] = {
    "InsufficientFunds": "arbframe.paper",
    "usable_credential": "arbframe.secrets",
    "paper_balances": "arbframe.venue",
    "configured_symbols": "arbframe.venue",
    "VenueRouting": "arbframe.venue",
    "url_endpoint": "arbframe.secrets",
    "PluginMetrics": "arbframe.instruments",
    "DailySummary": "arbframe.metrics",
    "CacheMetrics": "arbframe.instruments",
    "StorageMetrics": "arbframe.instruments",
    "ExchangeMetrics": "arbframe.instruments",
    "API_VERSION": "arbframe.interfaces",
    "ArbframeError": "arbframe.errors",
    "BookLevel": "arbframe.models",
    "Cache": "arbframe.interfaces",
    "CacheKeys": "arbframe.keys",
    "ConfigError": "arbframe.errors",
    "Direction": "arbframe.models",
    "Driver": "arbframe.interfaces",
    "DriverLoadError": "arbframe.errors",
    "DriverNotInstalled": "arbframe.errors",
    "ErrorRecord": "arbframe.models",
    "Exchange": "arbframe.interfaces",
    "Fill": "arbframe.models",
    "FxRate": "arbframe.models",
    "FxSource": "arbframe.interfaces",
    "HealthCheck": "arbframe.interfaces",
    "HealthResult": "arbframe.interfaces",
    "HealthStatus": "arbframe.interfaces",
    "IdGenerator": "arbframe.models",
    "MarketRules": "arbframe.models",
    "Order": "arbframe.models",
    "OrderBook": "arbframe.models",
    "OrderRequest": "arbframe.models",
    "OrderStatus": "arbframe.models",
    "OrderType": "arbframe.models",
    "PluginContext": "arbframe.interfaces",
    "Position": "arbframe.models",
    "PositionStatus": "arbframe.models",
    "Quote": "arbframe.models",
    "RowError": "arbframe.records",
    "SPREAD_TTL_SECONDS": "arbframe.keys",
    "Side": "arbframe.models",
    "SimulatedAccount": "arbframe.simulation",
    "SimulatedExchange": "arbframe.simulation",
    "SimulatedMarket": "arbframe.simulation",
    "Spread": "arbframe.models",
    "Storage": "arbframe.interfaces",
    "TABLES": "arbframe.records",
    "Trade": "arbframe.models",
    "columns": "arbframe.records",
    "from_row": "arbframe.records",
    "hookimpl": "arbframe.hookspecs",
    "load_config": "arbframe.config",
    "mask_secret": "arbframe.secrets",
    "mask_url": "arbframe.secrets",
    "mask_secret_url": "arbframe.secrets",
    "new_id": "arbframe.models",
    "read_csv_table": "arbframe.records",
    "round_to_step": "arbframe.interfaces",
    "to_dict": "arbframe.records",
    "to_row": "arbframe.records",
    "utcnow": "arbframe.models",
}

if TYPE_CHECKING:
    from arbframe.config import load_config
    from arbframe.errors import ArbframeError, ConfigError, DriverLoadError, DriverNotInstalled
    from arbframe.hookspecs import hookimpl
    from arbframe.instruments import CacheMetrics, ExchangeMetrics, PluginMetrics, StorageMetrics
    from arbframe.interfaces import (
        API_VERSION,
        Cache,
        Driver,
        Exchange,
        FxSource,
        HealthCheck,
        HealthResult,
        HealthStatus,
        PluginContext,
        Storage,
        round_to_step,
    )
    from arbframe.keys import SPREAD_TTL_SECONDS, CacheKeys
    from arbframe.metrics import DailySummary
    from arbframe.models import (
        BookLevel,
        Direction,
        ErrorRecord,
        Fill,
        FxRate,
        IdGenerator,
        MarketRules,
        Order,
        OrderBook,
        OrderRequest,
        OrderStatus,
        OrderType,
        Position,
        PositionStatus,
        Quote,
        Side,
        Spread,
        Trade,
        new_id,
        utcnow,
    )
    from arbframe.paper import InsufficientFunds
    from arbframe.records import TABLES, RowError, columns, from_row, read_csv_table, to_dict, to_row
    from arbframe.secrets import mask_secret, mask_secret_url, mask_url, url_endpoint
    from arbframe.simulation import SimulatedAccount, SimulatedExchange, SimulatedMarket
    from arbframe.venue import VenueRouting, configured_symbols, paper_balances


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'arbframe' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "API_VERSION",
    "SPREAD_TTL_SECONDS",
    "TABLES",
    "ArbframeError",
    "BookLevel",
    "Cache",
    "CacheKeys",
    "CacheMetrics",
    "ConfigError",
    "DailySummary",
    "Direction",
    "Driver",
    "DriverLoadError",
    "DriverNotInstalled",
    "ErrorRecord",
    "Exchange",
    "ExchangeMetrics",
    "Fill",
    "FxRate",
    "FxSource",
    "HealthCheck",
    "HealthResult",
    "HealthStatus",
    "IdGenerator",
    "InsufficientFunds",
    "MarketRules",
    "Order",
    "OrderBook",
    "OrderRequest",
    "OrderStatus",
    "OrderType",
    "PluginContext",
    "PluginMetrics",
    "Position",
    "PositionStatus",
    "Quote",
    "RowError",
    "Side",
    "SimulatedAccount",
    "SimulatedExchange",
    "SimulatedMarket",
    "Spread",
    "Storage",
    "StorageMetrics",
    "Trade",
    "VenueRouting",
    "__version__",
    "columns",
    "configured_symbols",
    "from_row",
    "hookimpl",
    "load_config",
    "mask_secret",
    "mask_secret_url",
    "mask_url",
    "new_id",
    "paper_balances",
    "read_csv_table",
    "round_to_step",
    "to_dict",
    "to_row",
    "url_endpoint",
    "usable_credential",
    "utcnow",
]
