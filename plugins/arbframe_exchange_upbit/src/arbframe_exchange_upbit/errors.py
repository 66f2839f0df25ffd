"""Typed errors. Each carries Upbit's error ``name`` and ``message`` (from ``{"error": {"name", "message"}}``),
the HTTP status and the endpoint; none ever carries a key, a token or a secret."""

from __future__ import annotations

from datetime import datetime

__all__ = [
    "UpbitAuthError",
    "UpbitBadRequest",
    "UpbitBanned",
    "UpbitError",
    "UpbitNetworkError",
    "UpbitNotFound",
    "UpbitOrderNotPlaced",
    "UpbitOrderRejected",
    "UpbitPermissionError",
    "UpbitProtocolError",
    "UpbitRateLimited",
    "UpbitServerError",
    "error_for",
]


class UpbitError(Exception):
    """Base of every Upbit connector error."""

    kind = "api"  # metric label of arbframe_exchange_errors_total

    def __init__(self, message: str, *, status: int | None = None, name: str | None = None,
                 endpoint: str | None = None) -> None:
        self.status = status
        self.name = name
        self.message = message
        self.endpoint = endpoint
        where = f"{endpoint}: " if endpoint else ""
        code = f"{status} " if status is not None else ""
        label = f"{name}: " if name else ""
        super().__init__(f"upbit {where}{code}{label}{message}".strip())


class UpbitBadRequest(UpbitError):
    """HTTP 400: the request was malformed or refused by a rule."""


class UpbitOrderRejected(UpbitBadRequest):
    """An order Upbit refused (price unit, minimum total, funds, volume) or the connector refused before
    sending (below the minimum order amount)."""


class UpbitAuthError(UpbitError):
    """HTTP 401: bad/expired key, bad JWT, reused nonce, query hash mismatch, IP not allowed."""

    kind = "auth"


class UpbitPermissionError(UpbitError):
    """HTTP 403: the key lacks the permission (``out_of_scope``)."""

    kind = "auth"


class UpbitNotFound(UpbitError):
    """HTTP 404: e.g. ``order_not_found``."""


class UpbitRateLimited(UpbitError):
    """HTTP 429 that persisted through the retries."""

    kind = "rate_limited"


class UpbitBanned(UpbitError):
    """HTTP 418: Upbit blocked this IP/account; no call is sent again before ``until``."""

    kind = "banned"

    def __init__(self, message: str, *, until: datetime | None = None, **kw) -> None:
        super().__init__(message, **kw)
        self.until = until


class UpbitServerError(UpbitError):
    """HTTP 5xx that persisted through the retries (GET), or at once (orders)."""

    kind = "http"


class UpbitNetworkError(UpbitError):
    """Timeout, refused or dropped connection."""

    kind = "timeout"


class UpbitProtocolError(UpbitError):
    """A body that is not the documented JSON shape."""

    kind = "parse"


class UpbitOrderNotPlaced(UpbitError):
    """Order placement failed in transit and a follow-up lookup by identifier proved no order exists.

    Nothing was retried: the caller decides whether to send a new order (with a new identifier)."""

    kind = "order"


_BY_STATUS: dict[int, type[UpbitError]] = {
    400: UpbitBadRequest,
    401: UpbitAuthError,
    403: UpbitPermissionError,
    404: UpbitNotFound,
    429: UpbitRateLimited,
}

_ORDER_REJECT_PREFIXES = (
    "create_ask_error", "create_bid_error", "under_min_total", "over_max_total", "insufficient_funds",
    "invalid_price", "invalid_volume", "invalid_funds", "invalid_ord_type", "invalid_side", "market_offline",
    "duplicate_identifier", "too_many_orders",
)


def error_for(status: int, name: str | None, message: str, endpoint: str) -> UpbitError:
    """The exception class for an HTTP error status and Upbit error name."""
    if status >= 500:
        return UpbitServerError(message, status=status, name=name, endpoint=endpoint)
    cls = _BY_STATUS.get(status, UpbitError)
    if cls is UpbitBadRequest and name and name.startswith(_ORDER_REJECT_PREFIXES):
        cls = UpbitOrderRejected
    return cls(message, status=status, name=name, endpoint=endpoint)
