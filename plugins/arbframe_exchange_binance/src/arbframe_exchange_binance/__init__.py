"""arbframe-exchange-binance: the Binance spot exchange driver for arbframe (entry point ``binance``).

Importing this package is cheap; aiohttp is imported when a connection is first opened. Every error the driver
raises is a kind of arbframe's exchange error taxonomy (``arbframe.ExchangeError``; see ``errors``).
"""

from __future__ import annotations

#: The arbframe plugin API this distribution is written for.
ARBFRAME_API_VERSION = 1

__version__ = "0.2.0"

__all__ = ["ARBFRAME_API_VERSION", "BinanceExchange", "__version__"]


def __getattr__(name: str) -> object:
    if name == "BinanceExchange":
        from arbframe_exchange_binance.exchange import BinanceExchange

        return BinanceExchange
    raise AttributeError(f"module 'arbframe_exchange_binance' has no attribute {name!r}")
