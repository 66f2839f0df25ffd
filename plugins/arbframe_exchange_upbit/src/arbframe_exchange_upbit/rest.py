"""The REST transport: signing, rate limiting, retries, typed errors, metrics.

Retry policy (no duplicate orders, ever):

* ``GET`` requests are retried with exponential backoff on timeouts, dropped connections, 5xx and malformed
  bodies, up to ``max_retries`` times.
* ``429`` (the request was refused, not processed) is retried for every method after blocking the group; an
  order carries an ``identifier``, so even then Upbit itself rejects a duplicate.
* ``POST``/``DELETE`` are never retried on timeouts or 5xx: the outcome is unknown, the caller reconciles
  (``UpbitExchange.place_order`` looks the order up by its identifier).
* ``418`` stops all calls until the block ends; every call before then raises :class:`UpbitBanned` at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from .auth import encode_query, make_token, query_pairs, raw_query
from .errors import (
    UpbitBanned,
    UpbitError,
    UpbitNetworkError,
    UpbitProtocolError,
    UpbitRateLimited,
    UpbitServerError,
    error_for,
)
from .parsing import loads
from .ratelimit import RateLimiter

__all__ = ["ENDPOINTS", "Endpoint", "RestObserver", "UpbitRest"]

log = logging.getLogger("arbframe.upbit")


@dataclass(frozen=True)
class Endpoint:
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
    "order": Endpoint("GET", "/v1/order", "default", True),
    "cancel_order": Endpoint("DELETE", "/v1/order", "default", True),
    "open_orders": Endpoint("GET", "/v1/orders/open", "default", True),
}


class RestObserver:
    """Receives request outcomes (the exchange wires it to ExchangeMetrics); the default does nothing."""

    def request(self, endpoint: str, status: str, seconds: float) -> None: ...

    def error(self, kind: str) -> None: ...

    def wait(self, group: str, seconds: float) -> None: ...


_BAN_SECONDS = re.compile(r"(\d+)\s*(?:s\b|sec|second|초)", re.IGNORECASE)


class UpbitRest:
    def __init__(self, *, base_url: str, access_key: str | None = None, secret_key: str | None = None,
                 limiter: RateLimiter | None = None, timeout: float = 5.0, max_retries: int = 3,
                 backoff: float = 0.2, backoff_max: float = 5.0, ban_seconds: float = 60.0,
                 observer: RestObserver | None = None, session: Any = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._access_key = access_key or None
        self._secret_key = secret_key or None
        self.observer = observer or RestObserver()
        self.limiter = limiter or RateLimiter(on_wait=self.observer.wait)
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.backoff_max = float(backoff_max)
        self.ban_seconds = float(ban_seconds)
        self.banned_until: datetime | None = None
        self._ban_deadline = 0.0
        self._session = session
        self._own_session = session is None
        self._aiohttp: Any = None

    # ------------------------------------------------------------------------------------------ session
    @property
    def has_credentials(self) -> bool:
        return bool(self._access_key and self._secret_key)

    async def start(self) -> None:
        if self._aiohttp is None:
            import aiohttp  # lazy: heavy, and only needed once the driver is used
            import yarl

            self._aiohttp = aiohttp
            self._yarl = yarl
        if self._session is None or self._session.closed:
            aiohttp = self._aiohttp
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                connector=aiohttp.TCPConnector(limit=32, ttl_dns_cache=300),
                json_serialize=json.dumps,
            )
            self._own_session = True

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and self._own_session and not session.closed:
            await session.close()

    @property
    def session(self) -> Any:
        return self._session

    # ------------------------------------------------------------------------------------------- banning
    def banned(self) -> bool:
        return self._ban_deadline > time.monotonic()

    def _ban(self, seconds: float) -> None:
        self._ban_deadline = time.monotonic() + seconds
        self.banned_until = datetime.now(timezone.utc) + timedelta(seconds=seconds)

    # ------------------------------------------------------------------------------------------ requests
    def _sleep_for(self, attempt: int) -> float:
        return min(self.backoff_max, self.backoff * (2 ** attempt))

    async def request(self, name: str, params: Any = None, body: dict[str, Any] | None = None, *,
                      timeout: float | None = None) -> Any:
        """Send one logical request (with the retries its method allows) and return the decoded JSON."""
        ep = ENDPOINTS[name]
        if self._session is None or self._aiohttp is None:
            await self.start()
        aiohttp = self._aiohttp
        pairs = query_pairs(params)
        url = self.base_url + ep.path
        if pairs:
            url = f"{url}?{encode_query(pairs)}"
        yurl = self._yarl.URL(url, encoded=True)
        data: bytes | None = None
        headers: dict[str, str] = {"Accept": "application/json"}
        if body is not None:
            body_pairs = query_pairs(body)
            data = json.dumps({k: v for k, v in body.items() if v is not None}, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json; charset=utf-8"
            signed = raw_query(body_pairs)
        else:
            signed = raw_query(pairs)
        if ep.private and not self.has_credentials:
            raise UpbitError("private endpoint called without credentials", endpoint=ep.path)
        extra: dict[str, Any] = {"timeout": aiohttp.ClientTimeout(total=timeout)} if timeout is not None else {}
        is_get = ep.method == "GET"
        attempt = 0
        while True:
            if self.banned():
                self.observer.error("banned")
                raise UpbitBanned(f"calls suspended after HTTP 418 until {self.banned_until:%H:%M:%S} UTC",
                                  status=418, name="banned", endpoint=ep.path, until=self.banned_until)
            await self.limiter.acquire(ep.group)
            if ep.private:
                headers["Authorization"] = "Bearer " + make_token(self._access_key, self._secret_key, signed)
            started = time.perf_counter()
            status_label = "error"
            try:
                async with self._session.request(ep.method, yurl, data=data, headers=headers, **extra) as resp:
                    raw = await resp.read()
                    status = resp.status
                    remaining = resp.headers.get("Remaining-Req")
                    retry_after = resp.headers.get("Retry-After")
                status_label = str(status)
            except asyncio.TimeoutError:
                status_label = "timeout"
                failure: UpbitError = UpbitNetworkError(f"no answer within {timeout or self.timeout:g}s",
                                                        endpoint=ep.path)
            except aiohttp.ClientError as exc:
                failure = UpbitNetworkError(f"{type(exc).__name__}: {exc}", endpoint=ep.path)
            finally:
                self.observer.request(ep.path, status_label, time.perf_counter() - started)
            if status_label in ("timeout", "error"):
                self.observer.error(failure.kind)
                if is_get and attempt < self.max_retries:
                    await asyncio.sleep(self._sleep_for(attempt))
                    attempt += 1
                    continue
                raise failure
            self.limiter.observe(remaining)
            if 200 <= status < 300:
                try:
                    return loads(raw)
                except UpbitProtocolError as exc:
                    exc.endpoint = ep.path
                    self.observer.error("parse")
                    if is_get and attempt < self.max_retries:
                        await asyncio.sleep(self._sleep_for(attempt))
                        attempt += 1
                        continue
                    raise
            err_name, err_msg = _error_body(raw)
            if status == 418:
                seconds = _ban_duration(retry_after, err_msg, self.ban_seconds)
                self._ban(seconds)
                self.observer.error("banned")
                log.error("upbit: HTTP 418 on %s (%s); all calls suspended for %.0fs", ep.path,
                          err_msg or "blocked", seconds)
                raise UpbitBanned(err_msg or "blocked by Upbit (HTTP 418)", status=418, name=err_name,
                                  endpoint=ep.path, until=self.banned_until)
            if status == 429:
                self.observer.error("rate_limited")
                pause = self._sleep_for(attempt)
                self.limiter.block(ep.group, max(pause, 1.0 if attempt else pause))
                if attempt < self.max_retries:
                    log.warning("upbit: HTTP 429 on %s, backing off %.2fs", ep.path, pause)
                    await asyncio.sleep(pause)
                    attempt += 1
                    continue
                raise UpbitRateLimited(err_msg or "too many requests", status=429, name=err_name,
                                       endpoint=ep.path)
            if status >= 500:
                self.observer.error("http")
                if is_get and attempt < self.max_retries:
                    await asyncio.sleep(self._sleep_for(attempt))
                    attempt += 1
                    continue
                raise UpbitServerError(err_msg or f"HTTP {status}", status=status, name=err_name,
                                       endpoint=ep.path)
            error = error_for(status, err_name, err_msg or f"HTTP {status}", ep.path)
            self.observer.error(error.kind)
            raise error


def _error_body(raw: bytes) -> tuple[str | None, str]:
    """Upbit's ``{"error": {"name", "message"}}``; anything else becomes a short text message."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        text = raw[:200].decode("utf-8", "replace").strip()
        return None, text
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        name = err.get("name")
        return (str(name) if name is not None else None), str(err.get("message") or "")
    return None, str(body)[:200]


def _ban_duration(retry_after: str | None, message: str, default: float) -> float:
    if retry_after:
        try:
            return max(1.0, float(retry_after))
        except ValueError:
            pass
    match = _BAN_SECONDS.search(message or "")
    if match:
        return max(1.0, float(match.group(1)))
    return default
