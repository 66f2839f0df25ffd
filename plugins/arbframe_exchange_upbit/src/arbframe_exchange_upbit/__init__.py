"""arbframe-exchange-upbit: the Upbit connector for arbframe (entry points ``arbframe.exchange: upbit`` and
``arbframe.fx: exchange``). aiohttp is imported only when a session or stream is opened."""

from __future__ import annotations

from .errors import (
    UpbitAuthError,
    UpbitBadRequest,
    UpbitBanned,
    UpbitError,
    UpbitNetworkError,
    UpbitNotFound,
    UpbitOrderNotPlaced,
    UpbitOrderRejected,
    UpbitPermissionError,
    UpbitProtocolError,
    UpbitRateLimited,
    UpbitServerError,
)
from .exchange import UpbitExchange
from .fx import UpbitFxSource

ARBFRAME_API_VERSION = 1
__version__ = "0.1.0"

__all__ = [
    "ARBFRAME_API_VERSION",
    "UpbitAuthError",
    "UpbitBadRequest",
    "UpbitBanned",
    "UpbitError",
    "UpbitExchange",
    "UpbitFxSource",
    "UpbitNetworkError",
    "UpbitNotFound",
    "UpbitOrderNotPlaced",
    "UpbitOrderRejected",
    "UpbitPermissionError",
    "UpbitProtocolError",
    "UpbitRateLimited",
    "UpbitServerError",
]
