"""Upbit REST on arbframe's :class:`~arbframe.VenueHttp`: endpoints, rate limits as data, JWT signing, error kinds.

What is Upbit's own here (the rest - limiter, transport, metrics, retries - is the kernel's block):

* **Rate limits** per request group (``market``, ``ticker``, ``orderbook`` per IP; ``default``, ``order``,
  ``order-test`` per account) plus the seed's overall ``rate_limit``, kept in step with the ``Remaining-Req:
  group=default; min=1800; sec=29`` header (``min`` is deprecated and ignored; ``sec=0`` holds the group back).
* **Signing**: a JWT per request (:mod:`.auth`) with the SHA512 hash of the exact query string or JSON body.
* **Error kinds** (:func:`classify`): Upbit's ``{"error": {"name", "message"}}`` bodies mapped to the taxonomy;
  the name is kept as the error's ``code``. 401/403 -> ``AuthenticationError``; 404 ``order_not_found`` ->
  ``UnknownOrder``, another 404 (an unknown market) -> ``InvalidRequest``; a 400 on an order ->
  ``InsufficientFunds`` (``insufficient_funds_*``) or ``OrderRejected``; another 400 -> ``InvalidRequest``; 5xx ->
  ``VenueUnavailable``; a 2xx body that is not JSON -> ``ProtocolError`` (raised inside the retry loop, so a read
  is retried). The kernel maps 429 -> ``RateLimited`` and 418 -> ``Banned``.
* **429 without Retry-After** (Upbit never sends one): exponential backoff with jitter, and every request waits
  it out meanwhile (:class:`UpbitRetry`), instead of hammering on towards a 418.
* **418**: Upbit states the block time in its message, not in ``Retry-After``; :class:`_BanTime` hands it to the
  kernel, which then refuses every call without sending it until the block ends.

Retries follow the taxonomy: reads and cancels are retried on transient kinds; an order is resent only after a
429 (refused before acting, and it carries its ``identifier``); after a timeout or 5xx the caller looks it up.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from arbframe import (
    AuthenticationError,
    Backoff,
    ExchangeError,
    HeaderFeedback,
    HttpAnswer,
    HttpRequest,
    InsufficientFunds,
    InvalidRequest,
    OrderRejected,
    ProtocolError,
    Quota,
    RateLimited,
    RateLimiter,
    RateLimits,
    RetryPolicy,
    UnknownOrder,
    VenueHttp,
    VenueMetrics,
    VenueUnavailable,
)

from .auth import TokenMaker, body_query, encode_query, query_pairs, raw_query
from .parsing import loads

__all__ = ["ENDPOINTS", "GROUP_LIMITS", "UpbitRest", "UpbitRetry", "classify", "parse_remaining_req", "rate_limits"]


class Endpoint(NamedTuple):
    method: str
    path: str
    group: str
    private: bool = False


ENDPOINTS: dict[str, Endpoint] = {
    "markets": Endpoint("GET", "/v1/market/all", "market"),
    "ticker": Endpoint("GET", "/v1/ticker", "ticker"),
    "orderbook": Endpoint("GET", "/v1/orderbook", "orderbook"),
    "accounts": Endpoint("GET", "/v1/accounts", "default", True),
    "place_order": Endpoint("POST", "/v1/orders", "order", True),
    "test_order": Endpoint("POST", "/v1/orders/test", "order-test", True),
    "order": Endpoint("GET", "/v1/order", "default", True),
    "cancel_order": Endpoint("DELETE", "/v1/order", "default", True),
    "open_orders": Endpoint("GET", "/v1/orders/open", "default", True),
}
_PRIVATE = frozenset(ep.path for ep in ENDPOINTS.values() if ep.private)
_ORDER_PATHS = frozenset(("/v1/orders", "/v1/orders/test"))
_HEADERS = {"Accept": "application/json"}
_JSON_BODY_HEADERS = {"Accept": "application/json", "Content-Type": "application/json; charset=utf-8"}
#: ``json.dumps(..., separators=(",", ":"))`` without building an encoder per call (same output)
_compact_json = json.JSONEncoder(separators=(",", ":")).encode

#: requests per second per group (Upbit's published limits; config ``upbit.group_limits`` overrides)
GROUP_LIMITS: dict[str, float] = {
    "market": 10, "candle": 10, "trade": 10, "ticker": 10, "orderbook": 10,
    "default": 30, "order": 8, "order-test": 8, "order-cancel-all": 0.5,
}


@functools.lru_cache(maxsize=512)  # the same few values come back on every answer
def parse_remaining_req(value: str) -> tuple[str, float] | None:
    """``group=default; min=1800; sec=29`` -> ``("default", 29)``; None when unreadable."""
    fields = dict(part.strip().partition("=")[::2] for part in value.split(";"))
    try:
        return fields["group"].strip(), float(fields["sec"])
    except (KeyError, ValueError):
        return None


def rate_limits(rate_limit: float, group_limits: Mapping[str, float] | None = None) -> RateLimits:
    """Upbit's limits as data: one quota per group (a limit under 1/s spaces requests evenly) and the overall
    ``rate_limit`` every request counts against."""
    limits = {**GROUP_LIMITS, **(group_limits or {})}
    quotas = [Quota("requests", float(rate_limit))]
    quotas += [Quota(group, 1, 1 / n) if n < 1 else Quota(group, float(n)) for group, n in limits.items()]
    costs = {ep.path: {ep.group: 1} for ep in ENDPOINTS.values()}
    return RateLimits(quotas=tuple(quotas), costs=costs, default_cost={"requests": 1},
                      feedback=(HeaderFeedback("Remaining-Req", meaning="remaining", parse=parse_remaining_req),))


def _error_body(raw: bytes) -> tuple[str, str]:
    """Upbit's ``{"error": {"name", "message"}}``; anything else becomes a short text message."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return "", raw[:200].decode("utf-8", "replace").strip()
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return str(err.get("name") or ""), str(err.get("message") or "")
    return "", str(body)[:200]


def classify(answer: HttpAnswer) -> ExchangeError | None:
    """The error kind of an answer (see the module doc); a 2xx JSON body is decoded once, with exact decimals,
    and kept as ``answer.decoded``."""
    status, endpoint = answer.status, answer.endpoint
    if status < 300:
        try:
            answer.decoded = loads(answer.body)  # type: ignore[attr-defined]
        except ProtocolError as exc:
            return ProtocolError(f"upbit {endpoint}: {exc}")
        return None
    name, message = _error_body(answer.body)
    text = f"upbit {endpoint}: HTTP {status} {name}: {message}".replace(" : ", ": ")
    if status >= 500:
        kind: type[ExchangeError] = VenueUnavailable
    elif status in (401, 403):
        kind = AuthenticationError
    elif status == 404:
        kind = UnknownOrder if name == "order_not_found" else InvalidRequest
    elif endpoint in _ORDER_PATHS:
        kind = InsufficientFunds if name.startswith("insufficient_funds") else OrderRejected
    elif status >= 400:
        kind = InvalidRequest
    else:
        kind = ExchangeError
    return kind(text, code=name or None)


@dataclass
class UpbitRetry(RetryPolicy):
    """The kernel's retry policy, plus: a 429 without ``Retry-After`` blocks ``limiter`` for the backoff, so every
    other request backs off with the retried one."""

    limiter: RateLimiter | None = None

    def wait_for(self, exc: BaseException, attempt: int) -> float:
        wait = super().wait_for(exc, attempt)
        if isinstance(exc, RateLimited) and exc.retry_after is None and self.limiter is not None:
            self.limiter.block(wait)
        return wait


_BAN_SECONDS = re.compile(r"(\d+(?:\.\d+)?)\s*(?:s\b|sec|second|초)", re.IGNORECASE)


class _BanTime:
    """A transport wrapper: Upbit's 418 says how long the block lasts in its message; copy that into
    ``Retry-After``, where the kernel reads a ban's length (else ``ban_seconds``)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, method: str, url: str, headers: dict[str, str], body: bytes | None,
                       timeout: float) -> HttpAnswer:
        answer = await self.inner(method, url, headers, body, timeout)
        if answer.status == 418 and answer.header("Retry-After") is None:
            match = _BAN_SECONDS.search(_error_body(answer.body)[1])
            if match:
                answer.headers = {**answer.headers, "Retry-After": match.group(1)}
        return answer

    async def close(self) -> None:
        await self.inner.close()


class UpbitRest:
    """One Upbit REST client: ``await call(name, params, body)`` returns the decoded JSON or raises a kind."""

    def __init__(self, base_url: str, *, access_key: str | None = None, secret_key: str | None = None,
                 rate_limit: float = 10, group_limits: Mapping[str, float] | None = None, timeout: float = 5.0,
                 max_retries: int = 3, backoff: float = 0.2, backoff_max: float = 5.0, ban_seconds: float = 60.0,
                 metrics: VenueMetrics | None = None, exchange: str = "upbit") -> None:
        self._access_key = access_key or None
        self._secret_key = secret_key or None
        self._tokens = TokenMaker(self._access_key or "", self._secret_key or "")
        self.metrics = metrics or VenueMetrics(exchange)
        self.limiter = RateLimiter(rate_limits(rate_limit, group_limits), on_wait=self.metrics.wait)
        self.retry = UpbitRetry(attempts=1 + int(max_retries),
                                backoff=Backoff(initial=float(backoff), maximum=float(backoff_max)),
                                limiter=self.limiter)
        self.http = VenueHttp(exchange, base_url, limiter=self.limiter, retry=self.retry, metrics=self.metrics,
                              classify=classify, sign=self._sign, timeout=timeout, ban_seconds=ban_seconds,
                              transport="aiohttp", user_agent="arbframe-exchange-upbit")
        self.http.transport = _BanTime(self.http.transport)

    @property
    def has_credentials(self) -> bool:
        return bool(self._access_key and self._secret_key)

    def banned_for(self) -> float:
        """Seconds left of an HTTP 418 block (0 when none)."""
        return self.limiter.banned_for()

    async def close(self) -> None:
        await self.http.close()

    async def call(self, name: str, params: Mapping[str, Any] | None = None,
                   body: Mapping[str, Any] | None = None) -> Any:
        """One logical request (with the retries its kind allows); the decoded JSON answer."""
        ep = ENDPOINTS[name]
        if ep.private and not self.has_credentials:
            raise AuthenticationError(f"upbit {ep.path}: private endpoint called without credentials",
                                      exchange="upbit", endpoint=ep.path)
        pairs = query_pairs(params) if params else []
        query = encode_query(pairs) if pairs else ""
        if body is None:
            data = None
            signed = raw_query(pairs) if ep.private else None
        else:
            fields = {k: v for k, v in body.items() if v is not None}
            data = _compact_json(fields).encode()
            signed = body_query(fields) if ep.private else None
        answer = await self.http.request(ep.method, ep.path, endpoint=ep.path, params=params, body=data,
                                         headers=_HEADERS if data is None else _JSON_BODY_HEADERS,
                                         sign_data=(query, signed))
        return answer.decoded

    def _sign(self, request: HttpRequest) -> None:
        """The wire query (lists repeat their key: ``states[]=wait&states[]=watch``) and, for a private endpoint,
        a fresh JWT over the unencoded query string or the JSON body's fields in order (both worked out once per
        call by :meth:`call`, handed over as ``sign_data``; a fresh token per attempt)."""
        if request.sign_data is None:  # not from call(): work it out here
            pairs = query_pairs(request.params)
            if request.body is not None:
                pairs = query_pairs(json.loads(request.body))
            request.sign_data = (encode_query(query_pairs(request.params)),
                                 raw_query(pairs) if request.endpoint in _PRIVATE else None)
        query, signed = request.sign_data
        request.query = query
        if signed is not None:
            request.headers["Authorization"] = f"Bearer {self._tokens.token(signed)}"
