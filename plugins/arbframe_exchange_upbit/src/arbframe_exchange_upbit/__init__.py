"""arbframe-exchange-upbit: the Upbit connector for arbframe (entry points ``arbframe.exchange: upbit`` and
``arbframe.fx: exchange``). Venue failures are :class:`arbframe.ExchangeError` kinds (Upbit's error name is the
error's ``code``). aiohttp is imported only when a session or stream is opened."""

from __future__ import annotations

from .exchange import UpbitExchange
from .fx import UpbitFxSource

ARBFRAME_API_VERSION = 1
__version__ = "0.2.0"

__all__ = ["ARBFRAME_API_VERSION", "UpbitExchange", "UpbitFxSource"]
