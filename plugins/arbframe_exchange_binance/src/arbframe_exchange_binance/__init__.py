"""arbframe-exchange-binance: the Binance spot exchange driver for arbframe (entry point ``binance``).

Importing this package is cheap; aiohttp is imported when a connection is first opened.
"""

from __future__ import annotations

from arbframe_exchange_binance.errors import (
    BinanceAPIError,
    BinanceAuthError,
    BinanceBanned,
    BinanceDuplicateOrder,
    BinanceError,
    BinanceFilterError,
    BinanceInsufficientBalance,
    BinanceNotLive,
    BinanceOrderRejected,
    BinanceOrderStatusUnknown,
    BinanceParseError,
    BinanceRateLimited,
    BinanceServerError,
    BinanceTimestampError,
    BinanceTransportError,
    BinanceUnknownOrder,
)

__version__ = "0.1.0"

__all__ = [
    "BinanceAPIError",
    "BinanceAuthError",
    "BinanceBanned",
    "BinanceDuplicateOrder",
    "BinanceError",
    "BinanceExchange",
    "BinanceFilterError",
    "BinanceInsufficientBalance",
    "BinanceNotLive",
    "BinanceOrderRejected",
    "BinanceOrderStatusUnknown",
    "BinanceParseError",
    "BinanceRateLimited",
    "BinanceServerError",
    "BinanceTimestampError",
    "BinanceTransportError",
    "BinanceUnknownOrder",
    "__version__",
]


def __getattr__(name: str) -> object:
    if name == "BinanceExchange":
        from arbframe_exchange_binance.exchange import BinanceExchange

        return BinanceExchange
    raise AttributeError(f"module 'arbframe_exchange_binance' has no attribute {name!r}")
