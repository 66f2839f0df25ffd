"""Binance's ``{"code": ..., "msg": ...}`` answers as kinds of arbframe's exchange error taxonomy.

The codes follow Binance's spot error documentation. Every one maps to a kind (``retry_safe`` / ``transient`` are
the taxonomy's):

==============================================  ==========================================================
code (message)                                  kind
==============================================  ==========================================================
HTTP 429, ``-1003`` TOO_MANY_REQUESTS,          :class:`arbframe.RateLimited` (HTTP 418 is
``-1015`` TOO_MANY_ORDERS, ``-1034``            :class:`arbframe.Banned`, handled by ``VenueHttp``)
``-1002``, ``-1022``, ``-1099``, ``-2014``,     :class:`arbframe.AuthenticationError`
``-2015``, HTTP 401
HTTP 403 (web application firewall)             :class:`arbframe.Banned`
``-1000`` ``-1001`` ``-1006`` ``-1007``         :class:`arbframe.VenueUnavailable` (``-1006``/``-1007``: execution
``-1008`` ``-1016``, HTTP 5xx                   status unknown; the driver reconciles an order by client id)
``-1013`` (filter failure), ``-1014``,          :class:`arbframe.OrderRejected` (``filter_type`` names the filter)
``-2010`` NEW_ORDER_REJECTED, ``-2016``
``-2010`` "insufficient balance"                :class:`arbframe.InsufficientFunds`
``-2011`` "Unknown order sent.", ``-2013``,     :class:`arbframe.UnknownOrder`
``-2026`` ORDER_ARCHIVED
``-1021`` timestamp outside ``recvWindow``,     :class:`arbframe.InvalidRequest` (the driver re-syncs its clock
``-11xx`` parameters (``-1121`` bad symbol),    and re-signs once on ``-1021``)
``-1020``, any other 4xx
==============================================  ==========================================================
"""

from __future__ import annotations

from arbframe import (
    AuthenticationError,
    Banned,
    ExchangeError,
    HttpAnswer,
    InsufficientFunds,
    InvalidRequest,
    OrderRejected,
    ProtocolError,
    RateLimited,
    UnknownOrder,
    VenueUnavailable,
)

__all__ = ["TIMESTAMP_OUTSIDE_WINDOW", "classify", "error_for", "filter_error", "is_duplicate_order"]

TIMESTAMP_OUTSIDE_WINDOW = -1021
INVALID_SYMBOL = -1121
_RATE = {-1003, -1015, -1034}
_AUTH = {-1002, -1022, -1099, -2014, -2015}
_UNAVAILABLE = {-1000, -1001, -1006, -1007, -1008, -1016}
_REJECTED = {-1013, -1014, -2010, -2016}
_UNKNOWN_ORDER = {-2013, -2026}


def error_for(code: int | None, msg: str, *, status: int, endpoint: str = "",
              retry_after: float | None = None) -> ExchangeError:
    """The taxonomy error for an error answer: ``code``/``msg`` from the body, ``status`` the HTTP status."""
    text = f"binance {endpoint}: {msg} (code {code}, HTTP {status})"
    lowered = msg.lower()
    kind: type[ExchangeError]
    if status == 429 or code in _RATE:
        kind = RateLimited
    elif code in _AUTH or status == 401:
        kind = AuthenticationError
    elif status == 403:
        kind = Banned
    elif code in _UNAVAILABLE or status >= 500:
        kind = VenueUnavailable
    elif code in _UNKNOWN_ORDER or (code == -2011 and "unknown order" in lowered):
        kind = UnknownOrder
    elif code in _REJECTED or "filter failure" in lowered:
        kind = InsufficientFunds if "insufficient balance" in lowered else OrderRejected
    else:  # -1021, -11xx parameters, -1020, -2011 for another reason, any other 4xx
        kind = InvalidRequest
    error = kind(text, exchange="binance", endpoint=endpoint, status=status, code=code, retry_after=retry_after)
    if "filter failure:" in lowered:
        error.filter_type = msg.split(":", 1)[1].strip()  # type: ignore[attr-defined]
    return error


def classify(answer: HttpAnswer) -> ExchangeError | None:
    """``VenueHttp``'s hook: the error an answer carries, None for a success. A 2xx body that cannot be a JSON
    object or array (an HTML page, a truncated answer) is a :class:`arbframe.ProtocolError` here, so it is counted
    and a read is retried (checked on its first and last byte: the body is decoded once, later)."""
    if answer.status < 400:
        body = answer.body.strip()
        if body[:1] + body[-1:] in (b"{}", b"[]"):
            return None
        return ProtocolError(f"binance {answer.endpoint}: answer is not JSON ({body[:60]!r})", exchange="binance",
                             endpoint=answer.endpoint, status=answer.status)
    try:
        body = answer.json()
    except ProtocolError:
        body = None
    code, msg = None, answer.body[:120].decode(errors="replace") or f"HTTP {answer.status}"
    if isinstance(body, dict):
        code, msg = body.get("code"), str(body.get("msg", msg))
    raw = answer.header("Retry-After")
    retry_after = float(raw) if raw is not None and raw.replace(".", "", 1).isdigit() else None
    return error_for(code if isinstance(code, int) else None, msg, status=answer.status, endpoint=answer.endpoint,
                     retry_after=retry_after)


def filter_error(message: str, filter_type: str) -> OrderRejected:
    """An order the driver refuses before sending (a symbol filter it breaks): nothing reached Binance."""
    error = OrderRejected(f"binance: {message}", exchange="binance", endpoint="/api/v3/order", code=filter_type)
    error.filter_type = filter_type  # type: ignore[attr-defined]
    return error


def is_duplicate_order(exc: BaseException) -> bool:
    """``-2010`` "Duplicate order sent.": an *open* order already carries this client order id."""
    return isinstance(exc, OrderRejected) and getattr(exc, "code", None) == -2010 and "duplicate order" in str(
        exc).lower()
