"""One REST client for a venue: rate limiter, signing hook, transport, metrics, error kinds and retries.

What a request goes through, in order (each attempt):

1. a ban in force raises :class:`arbframe.Banned` without sending;
2. the :class:`~arbframe.venues.ratelimit.RateLimiter` waits for the endpoint's cost;
3. ``sign(request)`` (optional) adds headers / signature with a fresh timestamp;
4. the transport sends it: aiohttp when installed (one pooled session), else the standard library in a worker
   thread; both bounded by ``timeout`` seconds;
5. the answer's headers feed the limiter; the round trip is counted (``VenueMetrics.request``);
6. the status maps to a kind: 429 -> :class:`~arbframe.RateLimited` (``Retry-After`` blocks the limiter),
   418 -> :class:`~arbframe.Banned` (the limiter refuses everything for ``Retry-After``, default
   ``ban_seconds``), 5xx -> :class:`~arbframe.VenueUnavailable`, no answer -> :class:`~arbframe.TransportError`
   / :class:`~arbframe.RequestTimeout`; then the venue's ``classify(answer)`` maps its own error bodies (and
   statuses it knows better) to a kind, and a 2xx body that is not JSON is a :class:`~arbframe.ProtocolError`;
7. the :class:`~arbframe.venues.retry.RetryPolicy` decides whether to try again (``retry_safe``, or ``transient``
   for an ``idempotent`` request; by default GET and DELETE are idempotent, POST is not).

Every error raised is an :class:`arbframe.ExchangeError`, counted once under its bounded kind.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from arbframe.core.errors import (
    Banned,
    ExchangeError,
    ProtocolError,
    RateLimited,
    RequestTimeout,
    TransportError,
    VenueUnavailable,
)
from arbframe.core.secrets import mask_url
from arbframe.venues.metrics import VenueMetrics
from arbframe.venues.ratelimit import RateLimiter, RateLimits
from arbframe.venues.retry import RetryPolicy

__all__ = ["HttpAnswer", "HttpRequest", "VenueHttp"]


@dataclass
class HttpRequest:
    """What is about to be sent; ``sign`` may change ``params``, ``body`` and ``headers``."""

    method: str
    path: str
    endpoint: str
    params: dict[str, Any] = field(default_factory=dict)
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    query: str | None = None  # pre-encoded query (signers that sign the exact string set it)

    def query_string(self) -> str:
        if self.query is not None:
            return self.query
        return urllib.parse.urlencode({k: v for k, v in self.params.items() if v is not None})


@dataclass
class HttpAnswer:
    """One answer: status, headers (case-insensitive lookups with :meth:`header`), raw body."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    endpoint: str = ""

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        if value is None:
            lowered = name.lower()
            value = next((v for k, v in self.headers.items() if k.lower() == lowered), None)
        return value

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            raise ProtocolError(f"{self.endpoint}: answer is not JSON ({self.body[:60]!r})", endpoint=self.endpoint,
                                status=self.status) from None


def _retry_after(answer: HttpAnswer) -> float | None:
    raw = answer.header("Retry-After")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None


Transport = Callable[[str, str, dict[str, str], "bytes | None", float], Awaitable[HttpAnswer]]


class _AiohttpTransport:
    def __init__(self, user_agent: str) -> None:
        self.user_agent = user_agent
        self.session: Any = None
        self._loop: Any = None

    async def __call__(self, method: str, url: str, headers: dict[str, str], body: bytes | None,
                       timeout: float) -> HttpAnswer:
        import aiohttp
        import yarl

        loop = asyncio.get_running_loop()
        if self.session is None or self.session.closed or self._loop is not loop:  # a session serves one loop
            self.session = aiohttp.ClientSession(headers={"User-Agent": self.user_agent})
            self._loop = loop
        try:
            async with self.session.request(method, yarl.URL(url, encoded=True), data=body, headers=headers,
                                            timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                return HttpAnswer(resp.status, dict(resp.headers), await resp.read())
        except asyncio.TimeoutError:
            raise RequestTimeout(f"no answer within {timeout:g}s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from None

    async def close(self) -> None:
        session, self.session = self.session, None
        if session is not None and not session.closed:
            await session.close()


class _UrllibTransport:
    def __init__(self, user_agent: str) -> None:
        self.user_agent = user_agent

    async def __call__(self, method: str, url: str, headers: dict[str, str], body: bytes | None,
                       timeout: float) -> HttpAnswer:
        return await asyncio.to_thread(self._send, method, url, headers, body, timeout)

    def _send(self, method: str, url: str, headers: dict[str, str], body: bytes | None,
              timeout: float) -> HttpAnswer:
        request = urllib.request.Request(url, data=body, method=method,
                                         headers={"User-Agent": self.user_agent, **headers})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                return HttpAnswer(resp.status, dict(resp.headers), resp.read())
        except urllib.error.HTTPError as exc:
            return HttpAnswer(exc.code, dict(exc.headers or {}), exc.read() or b"")
        except TimeoutError:
            raise RequestTimeout(f"no answer within {timeout:g}s") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError):
                raise RequestTimeout(f"no answer within {timeout:g}s") from None
            raise TransportError(f"unreachable: {reason}") from None

    async def close(self) -> None:
        return None


def _default_transport(kind: str, user_agent: str) -> Any:
    if kind == "auto":
        try:
            import aiohttp  # noqa: F401 - only probing whether it is installed
        except ImportError:
            kind = "urllib"
        else:
            kind = "aiohttp"
    if kind == "aiohttp":
        return _AiohttpTransport(user_agent)
    if kind == "urllib":
        return _UrllibTransport(user_agent)
    raise ValueError(f"unknown transport {kind!r} (auto, aiohttp, urllib)")


class VenueHttp:
    """REST calls to one venue (see the module doc for what each request goes through)."""

    def __init__(
        self,
        exchange: str,
        base_url: str,
        *,
        limits: RateLimits | None = None,
        limiter: RateLimiter | None = None,
        retry: RetryPolicy | None = None,
        metrics: VenueMetrics | None = None,
        classify: Callable[[HttpAnswer], ExchangeError | None] | None = None,
        sign: Callable[[HttpRequest], None] | None = None,
        timeout: float = 10.0,
        ban_seconds: float = 60.0,
        transport: str | Any = "auto",
        user_agent: str = "arbframe",
    ) -> None:
        self.exchange = exchange
        self.base_url = base_url.rstrip("/")
        self.metrics = metrics or VenueMetrics(exchange)
        self.limiter = limiter or RateLimiter(limits or RateLimits(), on_wait=self.metrics.wait)
        self.retry = retry or RetryPolicy()
        self.classify = classify
        self.sign = sign
        self.timeout = float(timeout)
        self.ban_seconds = float(ban_seconds)
        self.transport = _default_transport(transport, user_agent) if isinstance(transport, str) else transport

    async def close(self) -> None:
        """Release the connection pool; safe to call twice."""
        close = getattr(self.transport, "close", None)
        if close is not None:
            await close()

    async def json(self, method: str, path: str, *, endpoint: str | None = None, **kw: Any) -> Any:
        """:meth:`request` and decode its JSON body."""
        answer = await self.request(method, path, endpoint=endpoint, **kw)
        return answer.json()

    async def request(self, method: str, path: str, *, endpoint: str | None = None,
                      params: Mapping[str, Any] | None = None, body: bytes | None = None,
                      headers: Mapping[str, str] | None = None, idempotent: bool | None = None,
                      timeout: float | None = None) -> HttpAnswer:
        """Send with the retries the policy allows; returns a 2xx answer or raises an ``ExchangeError``."""
        endpoint = endpoint or path
        if idempotent is None:
            idempotent = method.upper() in ("GET", "DELETE", "HEAD")

        async def attempt() -> HttpAnswer:
            request = HttpRequest(method.upper(), path, endpoint, dict(params or {}), body, dict(headers or {}))
            return await self._once(request, timeout or self.timeout)

        return await self.retry.call(attempt, idempotent=idempotent)

    async def _once(self, request: HttpRequest, timeout: float) -> HttpAnswer:
        endpoint = request.endpoint
        try:
            self.limiter.check_ban(self.exchange, endpoint)
        except Banned as exc:
            self.metrics.error(exc)
            raise
        await self.limiter.acquire(endpoint)
        if self.sign is not None:
            self.sign(request)
        query = request.query_string()
        url = f"{self.base_url}{request.path}" + (f"?{query}" if query else "")
        started = time.perf_counter()
        status = "error"
        try:
            answer = await self.transport(request.method, url, request.headers, request.body, timeout)
            status = str(answer.status)
        except ExchangeError as exc:
            status = "timeout" if isinstance(exc, RequestTimeout) else "error"
            error = type(exc)(f"{self.exchange} {endpoint}: {exc} ({mask_url(self.base_url)})",
                              exchange=self.exchange, endpoint=endpoint)
            self.metrics.error(error)
            raise error from None
        finally:
            self.metrics.request(endpoint, status, time.perf_counter() - started)
        answer.endpoint = endpoint
        self.limiter.observe(answer.headers)
        refusal = self._error_of(answer)
        if refusal is not None:
            self.metrics.error(refusal)
            raise refusal
        return answer

    def _error_of(self, answer: HttpAnswer) -> ExchangeError | None:
        where = f"{self.exchange} {answer.endpoint}"
        kw: dict[str, Any] = {"exchange": self.exchange, "endpoint": answer.endpoint, "status": answer.status}
        if answer.status == 418:
            wait = _retry_after(answer)
            wait = self.ban_seconds if wait is None else wait
            self.limiter.ban(wait)
            return Banned(f"{where}: banned (HTTP 418) for {wait:.0f}s", retry_after=wait, **kw)
        if answer.status == 429:
            wait = _retry_after(answer)
            if wait is not None:
                self.limiter.block(wait)
            return RateLimited(f"{where}: rate limited (HTTP 429)", retry_after=wait, **kw)
        if self.classify is not None:
            mapped = self.classify(answer)
            if mapped is not None:
                for key, value in kw.items():
                    if not getattr(mapped, key, None):
                        setattr(mapped, key, value)
                return mapped
        if answer.status >= 500:
            return VenueUnavailable(f"{where}: HTTP {answer.status}", **kw)
        if answer.status >= 400:
            return ExchangeError(f"{where}: HTTP {answer.status}", **kw)
        return None
