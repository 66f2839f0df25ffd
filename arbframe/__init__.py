"""arbframe: a plugin framework for cross-exchange crypto arbitrage.

The names here are the public API plugins may import; everything else in the kernel is internal. Importing this
package is cheap (``arbframe --help`` must stay quick): every name loads from its module on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from arbframe.core.version import __version__

#: public name -> module that defines it
_LAZY: dict[str, str] = {
    "InsufficientFunds": "arbframe.trading.paper",
    "usable_credential": "arbframe.core.secrets",
    "paper_balances": "arbframe.market.routing",
    "configured_symbols": "arbframe.market.routing",
    "VenueRouting": "arbframe.market.routing",
    "url_endpoint": "arbframe.core.secrets",
    "PluginMetrics": "arbframe.kernel.instruments",
    "BookKey": "arbframe.kernel.book",
    "BookLock": "arbframe.kernel.book",
    "BookLocked": "arbframe.kernel.book",
    "FileBookLock": "arbframe.kernel.book",
    "Holder": "arbframe.kernel.book",
    "CacheMetrics": "arbframe.kernel.instruments",
    "StorageMetrics": "arbframe.kernel.instruments",
    "ExchangeMetrics": "arbframe.kernel.instruments",
    "API_VERSION": "arbframe.kernel.interfaces",
    "ArbframeError": "arbframe.core.errors",
    "Balance": "arbframe.core.models",
    "DailySummary": "arbframe.core.models",
    "mask_secret_url": "arbframe.core.secrets",
    "BookLevel": "arbframe.core.models",
    "Cache": "arbframe.kernel.interfaces",
    "CacheKeys": "arbframe.core.keys",
    "ConfigError": "arbframe.core.errors",
    "Direction": "arbframe.core.models",
    "Driver": "arbframe.kernel.interfaces",
    "DriverLoadError": "arbframe.core.errors",
    "DriverNotInstalled": "arbframe.core.errors",
    "ErrorRecord": "arbframe.core.models",
    "Exchange": "arbframe.kernel.interfaces",
    "Fill": "arbframe.core.models",
    "FxRate": "arbframe.core.models",
    "FxSource": "arbframe.kernel.interfaces",
    "HealthCheck": "arbframe.kernel.interfaces",
    "HealthResult": "arbframe.kernel.interfaces",
    "HealthStatus": "arbframe.kernel.interfaces",
    "IdGenerator": "arbframe.core.models",
    "MarketRules": "arbframe.core.models",
    "Order": "arbframe.core.models",
    "OrderBook": "arbframe.core.models",
    "OrderRequest": "arbframe.core.models",
    "OrderStatus": "arbframe.core.models",
    "OrderType": "arbframe.core.models",
    "PluginContext": "arbframe.kernel.interfaces",
    "Position": "arbframe.core.models",
    "PositionStatus": "arbframe.core.models",
    "Quote": "arbframe.core.models",
    "RowError": "arbframe.core.records",
    "SPREAD_TTL_SECONDS": "arbframe.core.keys",
    "Side": "arbframe.core.models",
    "SimulatedAccount": "arbframe.market.simulation",
    "SimulatedExchange": "arbframe.market.simulation",
    "SimulatedMarket": "arbframe.market.simulation",
    "Spread": "arbframe.core.models",
    "Storage": "arbframe.kernel.interfaces",
    "TABLES": "arbframe.core.records",
    "Trade": "arbframe.core.models",
    "columns": "arbframe.core.records",
    "from_row": "arbframe.core.records",
    "hookimpl": "arbframe.kernel.hookspecs",
    "load_config": "arbframe.kernel.config",
    "mask_secret": "arbframe.core.secrets",
    "mask_url": "arbframe.core.secrets",
    "new_id": "arbframe.core.models",
    "read_csv_table": "arbframe.core.records",
    "round_to_step": "arbframe.kernel.interfaces",
    "to_dict": "arbframe.core.records",
    "to_row": "arbframe.core.records",
    "utcnow": "arbframe.core.models",
}

if TYPE_CHECKING:
    from arbframe.core.errors import ArbframeError, ConfigError, DriverLoadError, DriverNotInstalled
    from arbframe.core.keys import SPREAD_TTL_SECONDS, CacheKeys
    from arbframe.core.models import (
        Balance,
        BookLevel,
        DailySummary,
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
    from arbframe.core.records import TABLES, RowError, columns, from_row, read_csv_table, to_dict, to_row
    from arbframe.core.secrets import mask_secret, mask_secret_url, mask_url, url_endpoint
    from arbframe.kernel.book import BookKey, BookLock, BookLocked, FileBookLock, Holder
    from arbframe.kernel.config import load_config
    from arbframe.kernel.hookspecs import hookimpl
    from arbframe.kernel.instruments import CacheMetrics, ExchangeMetrics, PluginMetrics, StorageMetrics
    from arbframe.kernel.interfaces import (
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
    from arbframe.market.routing import VenueRouting, configured_symbols, paper_balances
    from arbframe.market.simulation import SimulatedAccount, SimulatedExchange, SimulatedMarket
    from arbframe.trading.paper import InsufficientFunds


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
    "Balance",
    "BookKey",
    "BookLevel",
    "BookLock",
    "BookLocked",
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
    "FileBookLock",
    "Fill",
    "FxRate",
    "FxSource",
    "HealthCheck",
    "HealthResult",
    "HealthStatus",
    "Holder",
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
