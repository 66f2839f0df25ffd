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

The client is on every trading call's path, so its own cost per call is kept down (``benchmarks/bench_rest_cpu.py``
measures it against the pre-port drivers): a successful first attempt goes straight through (the retry machinery
is entered only after a failure), the limiter's uncontended path takes no lock, URLs and timeouts are built once
and reused, response headers are kept as the transport's case-insensitive mapping instead of copied, and nothing
is formatted for an answer that is not an error.
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
from types import MappingProxyType
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

_IDEMPOTENT = frozenset(("GET", "DELETE", "HEAD"))
_NO_PARAMS: Mapping[str, Any] = MappingProxyType({})
_STATUS = {code: str(code) for code in (200, 201, 202, 204, 400, 401, 403, 404, 418, 429, 500, 502, 503, 504)}


@dataclass
class HttpRequest:
    """What is about to be sent; ``sign`` may set ``query``, ``body`` and ``headers`` (a fresh dict per attempt)
    and replace ``params`` -- not change the caller's ``params`` in place: a retry builds its request from them
    again. ``sign_data`` is whatever the caller passed to :meth:`VenueHttp.request` for its signer (say, a string
    to sign worked out once per call rather than once per attempt); VenueHttp itself never reads it."""

    method: str
    path: str
    endpoint: str
    params: Mapping[str, Any] = field(default_factory=dict)
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    query: str | None = None  # pre-encoded query (signers that sign the exact string set it)
    sign_data: Any = None

    def query_string(self) -> str:
        if self.query is not None:
            return self.query
        return urllib.parse.urlencode({k: v for k, v in self.params.items() if v is not None})


_NOT_DECODED: Any = object()


@dataclass
class HttpAnswer:
    """One answer: status, headers (case-insensitive lookups with :meth:`header`; the transport's own mapping,
    not a copy), raw body. ``decoded``: a venue's ``classify`` hook that decodes a 2xx body (to check it) may keep
    the result here; :meth:`json` then returns it instead of decoding again."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    endpoint: str = ""
    decoded: Any = _NOT_DECODED

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        if value is None and type(self.headers) is dict:  # aiohttp's headers are case-insensitive already
            lowered = name.lower()
            value = next((v for k, v in self.headers.items() if k.lower() == lowered), None)
        return value

    def json(self) -> Any:
        if self.decoded is not _NOT_DECODED:
            return self.decoded
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
    #: URLs (pre-encoded, so aiohttp sends them byte for byte) kept for reuse; a venue's few public queries repeat
    #: every tick. Cleared when full: signed URLs are each used once.
    URL_CACHE = 256

    def __init__(self, user_agent: str) -> None:
        self.user_agent = user_agent
        self.session: Any = None
        self._loop: Any = None
        self._aiohttp: Any = None
        self._url_type: Any = None
        self._errors: tuple[type[BaseException], ...] = (OSError,)
        self._urls: dict[str, Any] = {}
        self._timeouts: dict[float, Any] = {}
        self._default_timeout = -1.0

    def _start(self, loop: Any, timeout: float) -> None:
        import aiohttp
        import yarl

        self._aiohttp, self._url_type = aiohttp, yarl.URL
        self._errors = (aiohttp.ClientError, OSError)
        self._default_timeout = timeout  # the session's own: a request with it passes no timeout of its own
        self.session = aiohttp.ClientSession(headers={"User-Agent": self.user_agent},
                                             timeout=aiohttp.ClientTimeout(total=timeout))
        self._loop = loop

    async def __call__(self, method: str, url: str, headers: dict[str, str], body: bytes | None,
                       timeout: float) -> HttpAnswer:
        session = self.session
        if session is None or session.closed or self._loop is not asyncio.get_running_loop():
            self._start(asyncio.get_running_loop(), timeout)  # a session serves one loop
            session = self.session
        urls = self._urls
        target = urls.get(url)
        if target is None:
            if len(urls) >= self.URL_CACHE:
                urls.clear()
            target = urls[url] = self._url_type(url, encoded=True)
        try:
            if timeout == self._default_timeout:
                request = session.request(method, target, data=body, headers=headers)
            else:
                limit = self._timeouts.get(timeout)
                if limit is None:
                    limit = self._timeouts[timeout] = self._aiohttp.ClientTimeout(total=timeout)
                request = session.request(method, target, data=body, headers=headers, timeout=limit)
            async with request as resp:
                return HttpAnswer(resp.status, resp.headers, await resp.read())
        except asyncio.TimeoutError:
            raise RequestTimeout(f"no answer within {timeout:g}s") from None
        except self._errors as exc:
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
                      timeout: float | None = None, sign_data: Any = None) -> HttpAnswer:
        """Send with the retries the policy allows; returns a 2xx answer or raises an ``ExchangeError``.
        ``sign_data`` goes to the ``sign`` hook untouched (:attr:`HttpRequest.sign_data`)."""
        endpoint = endpoint or path
        method = method.upper()
        if idempotent is None:
            idempotent = method in _IDEMPOTENT
        timeout = timeout or self.timeout
        params = params if params is not None else _NO_PARAMS
        try:  # the first attempt goes straight through; the retry policy is entered only after a failure
            return await self._once(HttpRequest(method, path, endpoint, params, body,
                                                dict(headers) if headers else {}, None, sign_data), timeout)
        except ExchangeError as exc:
            retry = self.retry
            if retry.attempts <= 1 or not retry.should_retry(exc, idempotent=idempotent):
                raise
            failed = exc

        async def attempt() -> HttpAnswer:
            return await self._once(HttpRequest(method, path, endpoint, params, body,
                                                dict(headers) if headers else {}, None, sign_data), timeout)

        return await retry.call(attempt, idempotent=idempotent, failed=failed)

    async def _once(self, request: HttpRequest, timeout: float) -> HttpAnswer:
        endpoint = request.endpoint
        limiter = self.limiter
        if limiter.banned_until:  # a ban was ever set: ask the clock whether it still holds
            try:
                limiter.check_ban(self.exchange, endpoint)
            except Banned as exc:
                self.metrics.error(exc)
                raise
        if not limiter.try_acquire(endpoint):
            await limiter.acquire(endpoint)
        if self.sign is not None:
            self.sign(request)
        query = request.query
        if query is None:
            query = request.query_string() if request.params else ""
        url = f"{self.base_url}{request.path}?{query}" if query else f"{self.base_url}{request.path}"
        started = time.perf_counter()
        status = "error"
        try:
            answer = await self.transport(request.method, url, request.headers, request.body, timeout)
            status = _STATUS.get(answer.status) or str(answer.status)
        except ExchangeError as exc:
            status = "timeout" if isinstance(exc, RequestTimeout) else "error"
            error = type(exc)(f"{self.exchange} {endpoint}: {exc} ({mask_url(self.base_url)})",
                              exchange=self.exchange, endpoint=endpoint)
            self.metrics.error(error)
            raise error from None
        finally:
            self.metrics.request(endpoint, status, time.perf_counter() - started)
        answer.endpoint = endpoint
        if limiter.feedback:
            limiter.observe(answer.headers)
        if answer.status < 300:  # a success (unless the venue's classify refuses the body): nothing to format
            if self.classify is None:
                return answer
            refusal = self.classify(answer)
            if refusal is None:
                return answer
            self._fill(refusal, answer)
        else:
            refusal = self._error_of(answer)
        if refusal is not None:
            self.metrics.error(refusal)
            raise refusal
        return answer

    def _error_of(self, answer: HttpAnswer) -> ExchangeError | None:
        status = answer.status
        if status == 418:
            wait = _retry_after(answer)
            wait = self.ban_seconds if wait is None else wait
            self.limiter.ban(wait)
            return Banned(f"{self.exchange} {answer.endpoint}: banned (HTTP 418) for {wait:.0f}s", retry_after=wait,
                          **self._where(answer))
        if status == 429:
            wait = _retry_after(answer)
            if wait is not None:
                self.limiter.block(wait)
            return RateLimited(f"{self.exchange} {answer.endpoint}: rate limited (HTTP 429)", retry_after=wait,
                               **self._where(answer))
        if self.classify is not None:
            mapped = self.classify(answer)
            if mapped is not None:
                return self._fill(mapped, answer)
        if status >= 500:
            return VenueUnavailable(f"{self.exchange} {answer.endpoint}: HTTP {status}", **self._where(answer))
        if status >= 400:
            return ExchangeError(f"{self.exchange} {answer.endpoint}: HTTP {status}", **self._where(answer))
        return None

    def _fill(self, error: ExchangeError, answer: HttpAnswer) -> ExchangeError:
        """What the venue's ``classify`` left out: exchange, endpoint, status."""
        for key, value in self._where(answer).items():
            if not getattr(error, key, None):
                setattr(error, key, value)
        return error

    def _where(self, answer: HttpAnswer) -> dict[str, Any]:
        return {"exchange": self.exchange, "endpoint": answer.endpoint, "status": answer.status}
