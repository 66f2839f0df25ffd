"""Binance spot REST on :class:`arbframe.VenueHttp`: its limits as data, HMAC signing, the server-time offset.

``VenueHttp`` does the limiter, transport, metrics, HTTP status kinds and retries; this module adds what is
Binance's own:

* :func:`rate_limits`: requests per second (the seed's ``rate_limit``), request weight per minute and orders per 10 s
  in fixed windows aligned to Binance's clock, each endpoint's documented weight, and the
  ``X-MBX-USED-WEIGHT-1M`` / ``X-MBX-ORDER-COUNT-10S`` headers fed back. ``endpoint`` (also the metric label) is
  the path, with a suffix where the same path costs differently (``/api/v3/order:GET``, ``/api/v3/depth:500``);
* signing: ``recvWindow``, ``timestamp`` (local clock + measured offset) and the hex HMAC-SHA256 ``signature``
  appended to the exact string sent — the query of a GET/DELETE, the form body of a POST;
* ``-1021`` (timestamp outside ``recvWindow``: refused before anything happened) re-syncs the offset from
  ``GET /api/v3/time`` and re-signs once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from arbframe import (
    Backoff,
    Banned,
    HeaderFeedback,
    HttpRequest,
    InvalidRequest,
    ProtocolError,
    Quota,
    RateLimiter,
    RateLimits,
    RetryPolicy,
    VenueHttp,
    VenueMetrics,
)
from arbframe_exchange_binance.errors import TIMESTAMP_OUTSIDE_WINDOW, classify
from arbframe_exchange_binance.signing import Signer, encode_params

log = logging.getLogger("arbframe.binance")

#: documented request weights (Binance spot REST API) per endpoint label; an order also counts in ``orders``
COSTS: dict[str, dict[str, float]] = {
    "/api/v3/exchangeInfo": {"weight": 20}, "/api/v3/ticker/bookTicker": {"weight": 2},
    "/api/v3/depth": {"weight": 5}, "/api/v3/depth:500": {"weight": 25}, "/api/v3/depth:1000": {"weight": 50},
    "/api/v3/depth:5000": {"weight": 250}, "/api/v3/account": {"weight": 20}, "/api/v3/order": {"orders": 1},
    "/api/v3/order:GET": {"weight": 4}, "/api/v3/openOrders": {"weight": 6}, "/api/v3/openOrders:all": {"weight": 80},
    "/api/v3/myTrades": {"weight": 5},  # with orderId
}
FEEDBACK = (HeaderFeedback("X-MBX-USED-WEIGHT-1M", "weight"), HeaderFeedback("X-MBX-ORDER-COUNT-10S", "orders"))


def rate_limits(cfg: Mapping[str, Any]) -> RateLimits:
    """The limits of a ``binance`` config section (``exchangeInfo``'s ``rateLimits`` replace weight and orders)."""
    safety = float(cfg["rate_limit_safety"])
    return RateLimits(quotas=(Quota("requests", float(cfg["rate_limit"]), 1.0),
                              Quota("weight", int(cfg["weight_limit_per_minute"]), 60.0, fixed=True, safety=safety),
                              Quota("orders", int(cfg["orders_per_10s"]), 10.0, fixed=True, safety=safety)),
                      costs=COSTS, default_cost={"requests": 1, "weight": 1}, feedback=FEEDBACK)


#: endpoints that are signed (TRADE / USER_DATA)
SIGNED = frozenset({"/api/v3/account", "/api/v3/order", "/api/v3/order/test", "/api/v3/order:GET",
                    "/api/v3/order:DELETE", "/api/v3/openOrders", "/api/v3/openOrders:all",
                    "/api/v3/myTrades"})


def depth_endpoint(limit: int) -> str:
    """``GET /api/v3/depth``'s label by ``limit``: weight 5 up to 100, 25 to 500, 50 to 1000, 250 to 5000."""
    label = _DEPTH_LABELS.get(limit)
    if label is None:
        label = next((f"/api/v3/depth{suffix}" for top, suffix in ((100, ""), (500, ":500"), (1000, ":1000"))
                      if limit <= top), "/api/v3/depth:5000")
        if len(_DEPTH_LABELS) < 5001:
            _DEPTH_LABELS[limit] = label
    return label


_DEPTH_LABELS: dict[int, str] = {}


class BinanceRest:
    """Public and signed REST calls; signed ones need ``api_key``/``api_secret``."""

    def __init__(self, cfg: Mapping[str, Any], *, api_key: str | None, api_secret: str | None,
                 metrics: VenueMetrics, timeout: float | None = None, retries: int | None = None) -> None:
        self.offset_ms = 0.0  # server time - local time
        self.limiter = RateLimiter(rate_limits(cfg), clock=self.server_time, on_wait=metrics.wait)
        retry = RetryPolicy(attempts=1 + int(cfg["max_retries"] if retries is None else retries),
                            backoff=Backoff(initial=float(cfg["retry_backoff_seconds"]),
                                            maximum=float(cfg["retry_backoff_max_seconds"])),
                            max_wait=float(cfg["max_retry_after_seconds"]))
        self.http = VenueHttp("binance", str(cfg["base_url"]), limiter=self.limiter, retry=retry, metrics=metrics,
                              classify=classify, sign=self._sign,
                              timeout=float(cfg["timeout_seconds"] if timeout is None else timeout),
                              ban_seconds=120.0, transport="aiohttp", user_agent="arbframe-binance/0.2")
        self.metrics = metrics
        self.recv_window = int(cfg["recv_window"])
        self.sync_interval = float(cfg["time_sync_interval_seconds"])
        self._api_key = api_key or None
        self._signer = Signer(api_secret) if api_secret else None
        self.last_sync: float | None = None  # monotonic
        self._sync_lock: asyncio.Lock | None = None
        self._ban_reported = 0.0
        self._queries: dict[tuple[Any, ...], str] = {}

    @property
    def has_credentials(self) -> bool:
        return self._api_key is not None and self._signer is not None

    async def close(self) -> None:
        await self.http.close()

    # ---------------------------------------------------------------------------------------------- time
    def server_time(self) -> float:
        """Seconds since the epoch on Binance's clock (local clock + measured offset)."""
        return time.time() + self.offset_ms / 1000.0

    async def sync_time(self) -> float:
        """Measure the server-time offset (``GET /api/v3/time``, midpoint of the round trip); seconds."""
        if self._sync_lock is None:
            self._sync_lock = asyncio.Lock()
        async with self._sync_lock:
            t0 = time.time()
            data = await self.http.json("GET", "/api/v3/time", endpoint="/api/v3/time")
            t1 = time.time()
            try:
                server_ms = float(data["serverTime"])
            except (KeyError, TypeError, ValueError):
                raise ProtocolError(f"binance /api/v3/time: unexpected answer {data!r:.200}", exchange="binance",
                                    endpoint="/api/v3/time") from None
            self.offset_ms = server_ms - (t0 + t1) * 500.0
            self.last_sync = time.monotonic()
            self.metrics.clock_offset(self.offset_ms / 1000.0)
            return self.offset_ms / 1000.0

    # ------------------------------------------------------------------------------------------ requests
    def _sign(self, request: HttpRequest) -> None:
        if request.endpoint not in SIGNED:  # public: the encoded query, memoised (the same few repeat every tick)
            if request.params:
                key = tuple(request.params.items())
                query = self._queries.get(key)
                if query is None:
                    if len(self._queries) > 512:
                        self._queries.clear()
                    query = self._queries[key] = encode_params(request.params)
                request.query = query
            return
        assert self._signer is not None and self._api_key is not None
        items = [(k, v) for k, v in request.params.items() if v is not None]
        items += [("recvWindow", self.recv_window), ("timestamp", int(time.time() * 1000.0 + self.offset_ms))]
        payload = encode_params(items)
        payload = f"{payload}&signature={self._signer.sign(payload)}"
        request.headers["X-MBX-APIKEY"] = self._api_key
        request.params = {}
        if request.method == "POST":
            request.body, request.query = payload.encode(), ""
            request.headers["Content-Type"] = "application/x-www-form-urlencoded"
        else:
            request.query = payload

    async def call(self, method: str, path: str, params: Mapping[str, Any] | None = None, *,
                   endpoint: str | None = None, idempotent: bool | None = None) -> Any:
        """Send (signed when ``endpoint`` is a signed one) with ``VenueHttp``'s retries; the decoded JSON."""
        endpoint = endpoint or path
        signed = endpoint in SIGNED
        if signed:
            if not self.has_credentials:
                raise InvalidRequest(f"binance: no API credentials for signed {method} {path}", exchange="binance",
                                     endpoint=endpoint)
            if self.last_sync is None or time.monotonic() - self.last_sync > self.sync_interval:
                await self.sync_time()
        try:  # the usual case in one step: VenueHttp straight, the answer decoded
            answer = await self.http.request(method, path, endpoint=endpoint, params=params, idempotent=idempotent)
        except InvalidRequest as exc:
            if not signed or exc.code != TIMESTAMP_OUTSIDE_WINDOW:
                raise
            log.warning("binance: timestamp outside recvWindow (-1021); re-syncing the server-time offset")
            await self.sync_time()
            return await self._json(method, path, params, endpoint, idempotent)
        except Banned as exc:
            self._report_ban(exc)
            raise
        return answer.json()

    async def _json(self, method: str, path: str, params: Mapping[str, Any] | None, endpoint: str,
                    idempotent: bool | None) -> Any:
        try:
            return await self.http.json(method, path, endpoint=endpoint, params=params, idempotent=idempotent)
        except Banned as exc:
            self._report_ban(exc)
            raise

    def _report_ban(self, exc: Banned) -> None:
        if self.limiter.banned_until > self._ban_reported:  # once per ban, not once per refused call
            self._ban_reported = self.limiter.banned_until
            log.error("binance: IP banned by the exchange (HTTP %s) for %.0fs; all requests stopped", exc.status,
                      exc.retry_after or 0)
