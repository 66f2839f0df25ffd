"""Typed errors for Binance's ``{"code": ..., "msg": ...}`` answers and for transport failures.

The classification follows Binance's spot error documentation: ``-1021`` timestamp outside ``recvWindow``,
``-1013`` / ``Filter failure: ...`` order filters, ``-2010`` new order rejected (insufficient balance, duplicate
client order id, ...), ``-2011`` cancel rejected (``Unknown order sent.``), ``-2013`` order does not exist,
``-1003`` too many requests, ``-1022`` / ``-2014`` / ``-2015`` bad signature or key. HTTP 429 and 418 are rate
limiting and IP bans; 5xx (and ``-1006`` / ``-1007``) mean the outcome is unknown.
"""

from __future__ import annotations

from typing import Any

from arbframe import ArbframeError


class BinanceError(ArbframeError):
    """Base of every error this driver raises."""

    kind = "error"  # the `kind` label of arbframe_exchange_errors_total

    def __init__(self, message: str, *, code: int | None = None, status: int | None = None,
                 endpoint: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.endpoint = endpoint


class BinanceTransportError(BinanceError):
    """The request never got an answer (connection refused/dropped, timeout)."""

    kind = "timeout"


class BinanceParseError(BinanceError):
    """The answer was not the JSON we expected."""

    kind = "parse"


class BinanceServerError(BinanceError):
    """HTTP 5xx, or an API code that says the execution status is unknown (-1006, -1007)."""

    kind = "http"


class BinanceAPIError(BinanceError):
    """Any other ``{code, msg}`` error."""

    kind = "api"


class BinanceFilterError(BinanceAPIError):
    """An order breaks a symbol filter (PRICE_FILTER, LOT_SIZE, NOTIONAL, MIN_NOTIONAL ...).

    Raised both client-side (before sending, from the cached ``exchangeInfo`` filters) and for ``-1013``.
    """

    def __init__(self, message: str, *, filter_type: str = "", **kw: Any) -> None:
        super().__init__(message, **kw)
        self.filter_type = filter_type


class BinanceOrderRejected(BinanceAPIError):
    """``-2010`` NEW_ORDER_REJECTED for a reason without its own class."""


class BinanceInsufficientBalance(BinanceOrderRejected):
    """``-2010`` "Account has insufficient balance for requested action."""


class BinanceDuplicateOrder(BinanceOrderRejected):
    """``-2010`` "Duplicate order sent.": the client order id is in use."""


class BinanceUnknownOrder(BinanceAPIError):
    """``-2011`` "Unknown order sent." or ``-2013`` "Order does not exist."."""


class BinanceTimestampError(BinanceAPIError):
    """``-1021`` timestamp outside ``recvWindow`` (or more than 1 s ahead of the server)."""


class BinanceAuthError(BinanceAPIError):
    """Bad signature, API key format, key permissions or IP whitelist (-1002, -1022, -2014, -2015)."""


class BinanceRateLimited(BinanceAPIError):
    """HTTP 429 / ``-1003``: too much request weight or too many orders; ``retry_after`` in seconds."""

    kind = "rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class BinanceBanned(BinanceRateLimited):
    """HTTP 418: the IP is banned until ``retry_after`` seconds from now. The driver stops sending."""

    kind = "banned"


class BinanceOrderStatusUnknown(BinanceError):
    """An order was sent, the answer was lost, and looking it up by client order id did not settle it.

    The order was NOT re-sent. ``client_order_id`` identifies it for a later :meth:`fetch_order`.
    """

    kind = "unknown_status"

    def __init__(self, message: str, *, client_order_id: str, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.client_order_id = client_order_id


class BinanceNotLive(BinanceError):
    """A private call reached the REST client outside live mode (a bug: the driver simulates those)."""

    kind = "not_live"


_UNKNOWN_STATUS_CODES = {-1006, -1007}
_AUTH_CODES = {-1002, -1022, -2014, -2015}


def classify(code: int | None, msg: str, *, status: int | None = None, endpoint: str = "",
             retry_after: float | None = None) -> BinanceError:
    """The typed exception for an error answer (``code``/``msg`` from the body, ``status`` the HTTP status)."""
    text = f"binance {endpoint}: {msg} (code {code}, HTTP {status})" if endpoint else f"binance: {msg}"
    kw: dict[str, Any] = {"code": code, "status": status, "endpoint": endpoint}
    lowered = (msg or "").lower()
    if status == 418:
        return BinanceBanned(text, retry_after=retry_after, **kw)
    if status == 429 or code in (-1003, -1015):
        return BinanceRateLimited(text, retry_after=retry_after, **kw)
    if code == -1021:
        return BinanceTimestampError(text, **kw)
    if code in _AUTH_CODES:
        return BinanceAuthError(text, **kw)
    if code in _UNKNOWN_STATUS_CODES:
        return BinanceServerError(text, **kw)
    if "filter failure" in lowered or code == -1013:
        filter_type = msg.split(":", 1)[1].strip() if "filter failure:" in lowered else ""
        return BinanceFilterError(text, filter_type=filter_type, **kw)
    if code in (-2011, -2013) or "unknown order" in lowered or "does not exist" in lowered:
        return BinanceUnknownOrder(text, **kw)
    if code == -2010:
        if "insufficient balance" in lowered:
            return BinanceInsufficientBalance(text, **kw)
        if "duplicate order" in lowered:
            return BinanceDuplicateOrder(text, **kw)
        return BinanceOrderRejected(text, **kw)
    if status is not None and status >= 500:
        return BinanceServerError(text, **kw)
    return BinanceAPIError(text, **kw)
