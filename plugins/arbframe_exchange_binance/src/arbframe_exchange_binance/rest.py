"""The Binance spot REST client: signing, server-time offset, weights, retries, metrics.

Requests are built as strings exactly once: the signed payload (``...&timestamp=...&signature=...``) is the query
string of a GET/DELETE or the ``application/x-www-form-urlencoded`` body of a POST, handed to aiohttp as
pre-encoded bytes/URL so that what was signed is what is sent.

Retries: idempotent requests (every GET, and DELETE of an order) are retried with exponential backoff after a
transport error, a 5xx or an unparseable answer. A 429 blocks the rate limiter for ``Retry-After`` in every
case (so no request goes out before it passes) and is retried when the wait is at most
``max_retry_after_seconds`` and retries are left (else raised); a 418 stops everything and raises
:class:`BinanceBanned` until the ban expires; ``-1021`` (clock drift) refreshes the server-time offset from
``GET /api/v3/time`` and retries once with a fresh timestamp. A
POST of an order is never retried here: the driver looks the order up first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from arbframe_exchange_binance.errors import (
    BinanceBanned,
    BinanceError,
    BinanceNotLive,
    BinanceParseError,
    BinanceRateLimited,
    BinanceServerError,
    BinanceTimestampError,
    BinanceTransportError,
    classify,
)
from arbframe_exchange_binance.ratelimit import RateLimiter
from arbframe_exchange_binance.signing import Signer, encode_params

log = logging.getLogger("arbframe.binance")

#: Documented request weights (Binance spot REST API).
WEIGHTS = {
    "/api/v3/ping": 1,
    "/api/v3/time": 1,
    "/api/v3/exchangeInfo": 20,
    "/api/v3/ticker/bookTicker": 2,  # one symbol (4 for several / all)
    "/api/v3/account": 20,
    "/api/v3/order:POST": 1,
    "/api/v3/order:DELETE": 1,
    "/api/v3/order:GET": 4,
    "/api/v3/openOrders": 6,  # one symbol (80 without)
}


def depth_weight(limit: int) -> int:
    """``GET /api/v3/depth`` weight by ``limit``: 1-100 -> 5, 101-500 -> 25, 501-1000 -> 50, 1001-5000 -> 250."""
    if limit <= 100:
        return 5
    if limit <= 500:
        return 25
    if limit <= 1000:
        return 50
    return 250


@dataclass
class RestSettings:
    base_url: str = "https://api.binance.com"
    recv_window: int = 5000
    request_timeout: float = 10.0
    connect_timeout: float = 5.0
    max_retries: int = 3
    retry_backoff: float = 0.5
    retry_backoff_max: float = 8.0
    max_retry_after: float = 60.0
    time_sync_interval: float = 300.0


class Response:
    __slots__ = ("data", "headers", "status")

    def __init__(self, status: int, headers: Mapping[str, str], data: Any) -> None:
        self.status, self.headers, self.data = status, headers, data


class BinanceRest:
    """One aiohttp session against ``base_url``; private calls need ``api_key``/``api_secret`` and ``live``."""

    def __init__(
        self,
        settings: RestSettings,
        *,
        api_key: str | None = None,
        api_secret: str | None = None,
        live: bool = False,
        limiter: RateLimiter | None = None,
        metrics: Any = None,
        exchange: str = "binance",
        on_ban: Callable[[BinanceBanned], None] | None = None,
    ) -> None:
        self.s = settings
        self.base_url = settings.base_url.rstrip("/")
        self._api_key = api_key or None
        self._signer = Signer(api_secret) if api_secret else None
        self.live = live
        self.exchange = exchange
        self.metrics = metrics
        self.offset_ms = 0.0  # server time - local time
        self.last_sync: float | None = None  # monotonic
        self.limiter = limiter or RateLimiter(clock=self.server_time)
        self.limiter.clock = self.server_time
        self.banned_until = 0.0  # monotonic
        self.on_ban = on_ban
        self._session: Any = None
        self._owns_session = True
        self._query_cache: dict[tuple[Any, ...], str] = {}
        self._url_cache: dict[str, Any] = {}
        self._req_children: dict[tuple[str, str], Any] = {}
        self._lat_children: dict[str, Any] = {}
        self._sync_lock: asyncio.Lock | None = None

    # ------------------------------------------------------------------ session
    @property
    def has_credentials(self) -> bool:
        return self._api_key is not None and self._signer is not None

    async def open(self, session: Any = None) -> None:
        if self._session is not None and not self._session.closed:
            return
        import aiohttp

        if session is not None:
            self._session, self._owns_session = session, False
            return
        timeout = aiohttp.ClientTimeout(total=self.s.request_timeout, sock_connect=self.s.connect_timeout)
        self._session = aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": "arbframe-binance/0.1"})
        self._owns_session = True

    async def close(self) -> None:
        if self._session is not None and self._owns_session and not self._session.closed:
            await self._session.close()
        self._session = None

    # --------------------------------------------------------------------- time
    def server_time(self) -> float:
        """Seconds since the epoch on the exchange's clock (local clock + measured offset)."""
        return time.time() + self.offset_ms / 1000.0

    def timestamp_ms(self) -> int:
        return int(time.time() * 1000.0 + self.offset_ms)

    async def sync_time(self) -> float:
        """Measure the server-time offset (``GET /api/v3/time``, midpoint of the round trip); seconds."""
        if self._sync_lock is None:
            self._sync_lock = asyncio.Lock()
        async with self._sync_lock:
            t0 = time.time()
            resp = await self._request_once("GET", "/api/v3/time", "", None, weight=1, signed=False)
            t1 = time.time()
            try:
                server_ms = float(resp.data["serverTime"])
            except (KeyError, TypeError, ValueError) as exc:
                raise BinanceParseError(f"binance /api/v3/time: unexpected answer {resp.data!r:.200}") from exc
            self.offset_ms = server_ms - (t0 + t1) * 500.0
            self.last_sync = time.monotonic()
            if self.metrics is not None:
                self.metrics.clock_offset_seconds.labels(self.exchange).set(self.offset_ms / 1000.0)
            return self.offset_ms / 1000.0

    # ------------------------------------------------------------------ requests
    async def public(self, path: str, params: Mapping[str, Any] | None = None, *, weight: int | None = None) -> Any:
        """A public GET, retried with backoff."""
        return await self.request("GET", path, params, signed=False, weight=weight)

    async def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        signed: bool = False,
        weight: int | None = None,
        idempotent: bool | None = None,
        order: bool = False,
    ) -> Any:
        """Send with retries (see module doc); returns the decoded JSON."""
        if signed and not self.live:
            raise BinanceNotLive(f"binance: refusing to send signed {method} {path} outside live mode")
        if signed and not self.has_credentials:
            raise BinanceNotLive(f"binance: no API credentials for signed {method} {path}")
        if weight is None:
            weight = WEIGHTS.get(f"{path}:{method}", WEIGHTS.get(path, 1))
        if idempotent is None:
            idempotent = method in ("GET", "DELETE")
        attempt = 0
        resynced = False
        while True:
            try:
                if signed:
                    if self.last_sync is None or time.monotonic() - self.last_sync > self.s.time_sync_interval:
                        await self.sync_time()
                    assert self._signer is not None
                    payload = self._signer.signed_payload(params or {}, timestamp=self.timestamp_ms(),
                                                          recv_window=self.s.recv_window)
                else:
                    payload = self._public_query(params)
                if method == "POST":
                    query, body = "", payload
                else:
                    query, body = payload, None
                resp = await self._request_once(method, path, query, body, weight=weight, signed=signed,
                                                order=order)
                return resp.data
            except BinanceTimestampError:
                if resynced:
                    raise
                resynced = True
                log.warning("binance: timestamp outside recvWindow (-1021); re-syncing the server-time offset")
                await self.sync_time()
            except BinanceBanned:
                raise
            except BinanceRateLimited as exc:
                wait = exc.retry_after if exc.retry_after is not None else self._backoff(attempt + 1)
                if attempt >= self.s.max_retries or wait > self.s.max_retry_after:
                    raise  # the limiter stays blocked for the whole wait (see _request_once)
                attempt += 1
                self.limiter.block(wait)  # the next acquire() waits it out (counted as a rate-limit wait)
            except (BinanceTransportError, BinanceServerError, BinanceParseError) as exc:
                if not idempotent or attempt >= self.s.max_retries:
                    raise
                attempt += 1
                delay = self._backoff(attempt)
                log.info("binance: %s %s failed (%s); retry %d/%d in %.2fs", method, path, exc, attempt,
                         self.s.max_retries, delay)
                await asyncio.sleep(delay)

    def _public_query(self, params: Mapping[str, Any] | None) -> str:
        """Encoded query of an unsigned request, memoised (the same few public queries repeat every tick)."""
        if not params:
            return ""
        key = tuple(params.items())
        try:
            found = self._query_cache.get(key)
        except TypeError:  # unhashable value
            return encode_params(params)
        if found is None:
            if len(self._query_cache) > 512:
                self._query_cache.clear()
            found = self._query_cache[key] = encode_params(params)
        return found

    def _url(self, path: str, query: str) -> Any:
        """A pre-encoded yarl URL (aiohttp sends it byte for byte); unsigned ones are memoised."""
        import yarl

        text = f"{self.base_url}{path}?{query}" if query else f"{self.base_url}{path}"
        if "signature=" in query:
            return yarl.URL(text, encoded=True)
        url = self._url_cache.get(text)
        if url is None:
            if len(self._url_cache) > 512:
                self._url_cache.clear()
            url = self._url_cache[text] = yarl.URL(text, encoded=True)
        return url

    def _observe(self, path: str, status: str, seconds: float) -> None:
        key = (path, status)
        child = self._req_children.get(key)
        if child is None:
            child = self._req_children[key] = self.metrics.requests.labels(self.exchange, path, status)
        child.inc()
        hist = self._lat_children.get(path)
        if hist is None:
            hist = self._lat_children[path] = self.metrics.request_seconds.labels(self.exchange, path)
        hist.observe(seconds)

    def _backoff(self, attempt: int) -> float:
        return min(self.s.retry_backoff_max, self.s.retry_backoff * (2 ** (attempt - 1)))

    async def _request_once(self, method: str, path: str, query: str, body: str | None, *, weight: int,
                            signed: bool, order: bool = False) -> Response:
        """One HTTP exchange: limiter, send, metrics, header bookkeeping, error classification."""
        banned = self.banned_until - time.monotonic()
        if banned > 0:
            raise BinanceBanned(f"binance: IP banned (HTTP 418) for another {banned:.0f}s; not sending {path}",
                                retry_after=banned, status=418, endpoint=path)
        if self._session is None or self._session.closed:
            await self.open()
        await self.limiter.acquire(weight, order=order)
        url = self._url(path, query)
        headers: dict[str, str] = {}
        if signed or (self._api_key and path.startswith("/api/v3/order")):
            headers["X-MBX-APIKEY"] = self._api_key or ""
        data: bytes | None = None
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            data = body.encode()
        m = self.metrics
        started = time.perf_counter()
        status_label = "error"
        try:
            async with self._session.request(method, url, data=data, headers=headers) as resp:
                status = resp.status
                status_label = str(status)
                raw = await resp.read()
                resp_headers = resp.headers
        except asyncio.TimeoutError as exc:
            status_label = "timeout"
            self._error("timeout")
            raise BinanceTransportError(f"binance {method} {path}: timed out", endpoint=path) from exc
        except Exception as exc:  # aiohttp.ClientError and friends
            import aiohttp

            if not isinstance(exc, (aiohttp.ClientError, OSError)):
                raise
            self._error("connection")
            raise BinanceTransportError(f"binance {method} {path}: {type(exc).__name__}: {exc}",
                                        endpoint=path) from exc
        finally:
            if m is not None:
                self._observe(path, status_label, time.perf_counter() - started)
        self.limiter.observe_headers(resp_headers)
        if status == 200:
            try:
                return Response(status, resp_headers, json.loads(raw))
            except ValueError as exc:
                self._error("parse")
                raise BinanceParseError(f"binance {method} {path}: malformed JSON ({raw[:80]!r})",
                                        status=status, endpoint=path) from exc
        retry_after = _retry_after(resp_headers)
        code: int | None = None
        msg = ""
        try:
            payload = json.loads(raw) if raw else {}
            if isinstance(payload, dict):
                code = payload.get("code")
                msg = str(payload.get("msg", ""))
        except ValueError:
            msg = raw[:120].decode(errors="replace")
        err = classify(code, msg or f"HTTP {status}", status=status, endpoint=path, retry_after=retry_after)
        self._error(err.kind)
        if isinstance(err, BinanceBanned):
            wait = retry_after if retry_after is not None else 120.0
            self.banned_until = time.monotonic() + wait
            self.limiter.block(wait)
            log.error("binance: IP banned by the exchange (HTTP 418) for %.0fs: %s; all requests stopped", wait, msg)
            if self.on_ban is not None:
                self.on_ban(err)
        elif isinstance(err, BinanceRateLimited):
            # Block here, whatever the retry policy in request() then decides (retry, give up because the wait
            # is too long, or retries exhausted): the next request from anyone waits it out instead of going
            # out at once, which is the road from 429s to an IP ban (418).
            wait = retry_after if retry_after is not None else self._backoff(1)
            self.limiter.block(wait)
            log.warning("binance: rate limited (HTTP %s, code %s); Retry-After %s; requests paused for %.1fs",
                        status, code, retry_after, wait)
        return _raise(err)

    def _error(self, kind: str) -> None:
        if self.metrics is not None:
            self.metrics.errors.labels(self.exchange, kind).inc()


def _raise(err: BinanceError) -> Response:
    raise err


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
