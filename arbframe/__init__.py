"""arbframe: a plugin framework for cross-exchange crypto arbitrage.

The names here are the public API plugins may import; everything else in the kernel is internal. Importing this
package is cheap: heavy parts (prometheus-client, the simulated market) load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from arbframe.errors import ArbframeError, ConfigError, DriverLoadError, DriverNotInstalled
from arbframe.hookspecs import hookimpl
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
from arbframe.records import TABLES, RowError, columns, from_row, read_csv_table, to_dict, to_row

__version__ = "0.1.0"

if TYPE_CHECKING:
    from arbframe.simulation import SimulatedAccount, SimulatedExchange, SimulatedMarket

_LAZY = {
    "SimulatedMarket": "arbframe.simulation",
    "SimulatedExchange": "arbframe.simulation",
    "SimulatedAccount": "arbframe.simulation",
    "mask_secret": "arbframe.secrets",
    "mask_url": "arbframe.secrets",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'arbframe' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "API_VERSION",
    "SPREAD_TTL_SECONDS",
    "TABLES",
    "ArbframeError",
    "BookLevel",
    "Cache",
    "CacheKeys",
    "ConfigError",
    "Direction",
    "Driver",
    "DriverLoadError",
    "DriverNotInstalled",
    "ErrorRecord",
    "Exchange",
    "Fill",
    "FxRate",
    "FxSource",
    "HealthCheck",
    "HealthResult",
    "HealthStatus",
    "IdGenerator",
    "MarketRules",
    "Order",
    "OrderBook",
    "OrderRequest",
    "OrderStatus",
    "OrderType",
    "PluginContext",
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
    "Trade",
    "__version__",
    "columns",
    "from_row",
    "hookimpl",
    "mask_secret",
    "mask_url",
    "new_id",
    "read_csv_table",
    "round_to_step",
    "to_dict",
    "to_row",
    "utcnow",
]
