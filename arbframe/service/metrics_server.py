"""The HTTP face of a running service: ``/metrics``, ``/health`` and ``/ready`` (aiohttp).

``/metrics`` serves the kernel's :class:`prometheus_client.CollectorRegistry` in the Prometheus text format
(0.0.4): the trading collectors (``arbitrage_*``), the shared infra families (``arbframe_*``) and whatever
every plugin registered through ``arbframe_register_metrics``: it is one registry, nothing to merge.
``/health`` is *liveness*: with a ``live_provider`` (the service loop's), HTTP 200 while the loop completed a tick
within ``max(3 x interval, 10 s)`` and 503 otherwise, whatever Redis or PostgreSQL do; the body is the health
report's JSON (every component's check, the overall status) plus ``live`` and ``liveness``. Without a
``live_provider`` the status follows the report (503 when any check is ``ERROR``). ``/ready`` is *readiness*:
200 while the service says it can trade (storage writable or safely spooling, venues reachable, not killed), 503
otherwise, with the reason.

Serving must not steal time from the tick (``benchmarks/bench_metrics.py`` measures it). The server runs on the
service's event loop, where the tick's synchronous engine code is never interrupted, and:

* rendering (``generate_latest``, a few ms for a full registry) is done at most once per ``cache_seconds``
  (default 1 s -- Prometheus scrapes every 15 s), by one task at a time (concurrent scrapes share it), and family
  by family in slices of about 0.2 ms that yield to the loop, so a tick waiting on the loop is never held up by
  a whole rendering;
* the health report is cached for ``health_cache_seconds`` and bounded by ``health_timeout_seconds``;
* ``own_thread=True`` runs the server on its own loop in a daemon thread instead; it measured no better overall
  (the rendering then competes with the tick for the GIL) and hides a stuck loop from Prometheus' ``up``, so it
  is off by default.

aiohttp is imported only when a server starts (``pip install arbframe[server]``): importing this module is
cheap.
It binds ``127.0.0.1`` unless configured otherwise; the port defaults to 8000 (the seed's). A malformed request
gets aiohttp's 400 and costs one short log line at most (rate-limited, never a traceback); a connection that has
not sent a complete request header within ``header_timeout_seconds`` (default 10) is closed.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import asdict, is_dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiohttp import web
    from prometheus_client import CollectorRegistry

log = logging.getLogger("arbframe.metrics_server")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
#: The Prometheus text exposition format served on /metrics.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: A callable returning the health report (or an awaitable of it): a mapping, an object with ``to_dict()``, or
#: an iterable of :class:`arbframe.HealthResult`.
HealthProvider = Callable[[], Any]
#: A callable returning readiness: ``bool`` or ``(bool, reason)``.
ReadyProvider = Callable[[], "bool | tuple[bool, str]"]
#: A callable returning liveness: ``(bool, reason)``.
LiveProvider = Callable[[], "tuple[bool, str]"]

_SEVERITY = {"OK": 0, "SKIP": 0, "DISABLED": 0, "WARN": 1, "ERROR": 2}


class ServerUnavailable(RuntimeError):
    """aiohttp is not installed, so no HTTP server can start."""


def render_metrics(registry: CollectorRegistry) -> bytes:
    """The registry in Prometheus text format: what ``/metrics`` serves and ``arbframe metrics`` prints."""
    from prometheus_client import generate_latest

    return generate_latest(registry)


class _OneFamily:
    """A collector of one already-collected family, so ``generate_latest`` renders families one at a time."""

    __slots__ = ("family",)

    def __init__(self, family: Any) -> None:
        self.family = family

    def collect(self) -> tuple[Any, ...]:
        return (self.family,)


async def render_metrics_async(registry: CollectorRegistry, slice_seconds: float = 0.0002) -> bytes:
    """The same bytes as :func:`render_metrics`, rendered family by family, yielding to the event loop whenever
    ``slice_seconds`` of rendering have passed, so a full rendering (a few ms) never blocks a tick for longer
    than about one slice."""
    from prometheus_client import generate_latest

    parts: list[bytes] = []
    clock = time.perf_counter
    started = clock()
    for family in registry.collect():
        parts.append(generate_latest(_OneFamily(family)))
        if clock() - started >= slice_seconds:
            await asyncio.sleep(0)
            started = clock()
    return b"".join(parts)


# ------------------------------------------------------------------------------------------------ health JSON
def _status_name(value: Any) -> str:
    if isinstance(value, Enum):
        value = value.value
    return str(value).upper()


def _jsonable(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in asdict(value).items()}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def health_payload(report: Any) -> dict[str, Any]:
    """Normalise a health report into ``{"status": ..., "checks": [...], ...}`` for the JSON answer.

    Accepts what :mod:`arbframe.service.health` produces (an object with ``to_dict()``), a mapping, or an iterable of
    :class:`arbframe.HealthResult`. ``status`` is the worst check (ERROR > WARN > OK; SKIP and DISABLED are
    neutral) unless the report states an overall status itself.
    """
    if hasattr(report, "to_dict") and callable(report.to_dict):
        payload = _jsonable(report.to_dict())
    elif isinstance(report, Mapping):
        payload = _jsonable(report)
    elif isinstance(report, Iterable) and not isinstance(report, (str, bytes)):
        payload = {"checks": [_jsonable(r) for r in report]}
    else:
        raise TypeError(f"unsupported health report type {type(report).__name__}")
    if not isinstance(payload, dict):
        raise TypeError("the health report must serialise to a JSON object")
    checks = payload.get("checks")
    if isinstance(checks, Mapping):  # {"redis": {...}} -> list
        checks = [
            {"component": k, **(v if isinstance(v, Mapping) else {"status": v})} for k, v in checks.items()
        ]
        payload["checks"] = checks
    worst = "OK"
    for check in checks or ():
        status = _status_name(check.get("status", "OK")) if isinstance(check, Mapping) else "OK"
        if _SEVERITY.get(status, 0) > _SEVERITY[worst]:
            worst = status
    stated = payload.get("overall", payload.get("status"))
    if stated is not None:
        stated = _status_name(stated)
        if _SEVERITY.get(stated, 0) > _SEVERITY[worst]:
            worst = stated
    payload["status"] = worst
    return payload


def health_http_status(payload: Mapping[str, Any]) -> int:
    """503 when any check (or the overall status) is ERROR, else 200."""
    return 503 if payload.get("status") == "ERROR" else 200


# ----------------------------------------------------------------------------------------------------- server
class _Cached:
    """One value, refreshed by at most one task at a time and reused for ``ttl`` seconds."""

    def __init__(self, produce: Callable[[], Awaitable[Any]], ttl: float) -> None:
        self._produce = produce
        self._ttl = ttl
        self._value: Any = None
        self._at = float("-inf")
        self._pending: asyncio.Future[Any] | None = None

    async def get(self) -> Any:
        if self._ttl > 0 and time.monotonic() - self._at < self._ttl:
            return self._value
        if self._pending is None or self._pending.done():
            self._pending = asyncio.ensure_future(self._refresh())
        return await asyncio.shield(self._pending)

    async def _refresh(self) -> Any:
        started = time.monotonic()
        value = await self._produce()
        self._value, self._at = value, started
        return value


class MetricsServer:
    """The aiohttp app serving ``/metrics``, ``/health`` and ``/ready`` for one registry.

    ``port=0`` picks a free port; :attr:`port` holds the bound one after :meth:`start`.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        health_provider: HealthProvider | None = None,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        ready_provider: ReadyProvider | None = None,
        live_provider: LiveProvider | None = None,
        cache_seconds: float = 1.0,
        render_in_thread: bool = False,
        health_cache_seconds: float = 2.0,
        health_timeout_seconds: float = 5.0,
        own_thread: bool = False,
        header_timeout_seconds: float = 10.0,
    ) -> None:
        self.registry = registry
        self.header_timeout_seconds = header_timeout_seconds
        self.health_provider = health_provider
        self.ready_provider = ready_provider
        self.live_provider = live_provider
        self.host = host
        self.port = port
        self.render_in_thread = render_in_thread
        self.health_timeout_seconds = health_timeout_seconds
        self._metrics = _Cached(self._render, cache_seconds)
        self._health = _Cached(self._run_health, health_cache_seconds)
        self.own_thread = own_thread
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._runner is not None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if host in ("0.0.0.0", "[::]", ""):
            host = "127.0.0.1"
        return f"http://{host}:{self.port}"

    def build_app(self) -> web.Application:
        web = _aiohttp_web()
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_get("/metrics", self._handle_metrics)
        app.router.add_get("/health", self._handle_health)
        app.router.add_get("/ready", self._handle_ready)
        return app

    async def start(self) -> MetricsServer:
        """Bind and serve; ``OSError`` if the port is taken, :class:`ServerUnavailable` without aiohttp."""
        if self._runner is not None:
            return self
        _aiohttp_web()  # fail early, in the caller's thread, when aiohttp is missing
        if not self.own_thread:
            await self._start_here()
        else:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="arbframe-metrics-server", daemon=True)
            thread.start()
            try:
                await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._start_here(), loop))
            except BaseException:
                loop.call_soon_threadsafe(loop.stop)
                await asyncio.to_thread(thread.join, 5)
                loop.close()
                raise
            self._thread, self._thread_loop = thread, loop
        log.info("metrics server listening on %s (/metrics /health /ready%s)", self.url,
                 ", own thread" if self.own_thread else "")
        return self

    async def _start_here(self) -> None:
        web = _aiohttp_web()
        # a malformed request is logged as one short, rate-limited line (aiohttp would log a traceback each)
        runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False, logger=_QuietServerLog())
        await runner.setup()
        protocols = runner.server  # aiohttp's protocol factory: one request handler per connection
        assert protocols is not None
        timeout = self.header_timeout_seconds
        try:
            listener = await asyncio.get_running_loop().create_server(
                lambda: _HeaderDeadline(protocols(), timeout), self.host, self.port, reuse_address=True)
        except BaseException:
            await runner.cleanup()
            raise
        self._runner, self._listener = runner, listener
        sockets = listener.sockets or ()
        if sockets:
            self.port = sockets[0].getsockname()[1]

    async def _cleanup(self, runner: web.AppRunner, listener: asyncio.AbstractServer | None) -> None:
        if listener is not None:
            listener.close()
        await runner.cleanup()  # closes the open connections too
        if listener is not None:
            await listener.wait_closed()

    async def stop(self) -> None:
        """Stop serving; calling it twice is harmless."""
        runner, self._runner = self._runner, None
        listener, self._listener = self._listener, None
        thread, loop = self._thread, self._thread_loop
        self._thread = self._thread_loop = None
        try:
            if runner is not None:
                if loop is not None:
                    await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._cleanup(runner, listener),
                                                                               loop))
                else:
                    await self._cleanup(runner, listener)
                log.info("metrics server stopped")
        finally:
            if loop is not None and thread is not None:
                loop.call_soon_threadsafe(loop.stop)
                await asyncio.to_thread(thread.join, 5)
                if not thread.is_alive():
                    loop.close()

    async def __aenter__(self) -> MetricsServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- producers ------------------------------------------------------------------------------------
    async def _render(self) -> bytes:
        if self.render_in_thread:
            return await asyncio.to_thread(render_metrics, self.registry)
        return await render_metrics_async(self.registry)

    async def _run_health(self) -> tuple[int, dict[str, Any]]:
        if self.health_provider is None:
            return 200, {"status": "OK", "checks": [], "message": "no health provider configured"}
        try:
            report = self.health_provider()
            if inspect.isawaitable(report):
                report = await asyncio.wait_for(report, self.health_timeout_seconds)
            payload = health_payload(report)
        except asyncio.TimeoutError:
            msg = f"health report did not finish within {self.health_timeout_seconds:g} s"
            return 503, {"status": "ERROR", "checks": [], "message": msg}
        except Exception as exc:  # the endpoint answers, whatever the report did
            log.warning("health report failed: %r", exc)
            return 503, {"status": "ERROR", "checks": [], "message": f"health report failed: {exc!r}"}
        return health_http_status(payload), payload

    # -- handlers -------------------------------------------------------------------------------------
    async def _index(self, request: web.Request) -> web.Response:
        web = _aiohttp_web()
        return web.Response(text="arbframe: /metrics /health /ready\n")

    async def _handle_metrics(self, request: web.Request) -> web.Response:
        web = _aiohttp_web()
        body = await self._metrics.get()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def _handle_health(self, request: web.Request) -> web.Response:
        web = _aiohttp_web()
        status, payload = await self._health.get()
        if self.live_provider is not None:
            try:
                live, why = self.live_provider()
            except Exception as exc:
                live, why = False, f"liveness check failed: {exc!r}"
            payload = {**payload, "live": bool(live), "liveness": str(why)}
            status = 200 if live else 503
        return web.Response(
            text=json.dumps(payload, ensure_ascii=False, sort_keys=True),
            status=status,
            content_type="application/json",
        )

    async def _handle_ready(self, request: web.Request) -> web.Response:
        web = _aiohttp_web()
        ready, reason = True, "ready"
        if self.ready_provider is not None:
            try:
                answer = self.ready_provider()
            except Exception as exc:
                answer = (False, f"readiness check failed: {exc!r}")
            if isinstance(answer, tuple):
                ready, reason = bool(answer[0]), str(answer[1])
            else:
                ready, reason = bool(answer), "ready" if answer else "not ready"
        return web.Response(
            text=json.dumps({"ready": ready, "reason": reason}),
            status=200 if ready else 503,
            content_type="application/json",
        )


class _QuietServerLog:
    """The logger aiohttp's request handlers get: what would be a traceback per malformed request (one client
    can send thousands) becomes one short line, at most one per ``every`` seconds, with the count of the rest."""

    def __init__(self, every: float = 60.0) -> None:
        self.every = every
        self._last = -every
        self._suppressed = 0

    def _short(self, msg: object, args: tuple[Any, ...], kw: Mapping[str, Any]) -> None:
        now = time.monotonic()
        if now - self._last < self.every:
            self._suppressed += 1
            return
        exc = kw.get("exc_info")
        text = str(msg) % args if args else str(msg)
        if isinstance(exc, BaseException):
            reason = str(exc).splitlines()[0] if str(exc) else ""
            text = f"{text}: {type(exc).__name__}{': ' + reason[:120] if reason else ''}"
        more = f" ({self._suppressed} more since the last such line)" if self._suppressed else ""
        self._last, self._suppressed = now, 0
        log.warning("metrics server: %s%s", text, more)

    def exception(self, msg: object, *args: Any, **kw: Any) -> None:
        self._short(msg, args, kw)

    def error(self, msg: object, *args: Any, **kw: Any) -> None:
        self._short(msg, args, kw)

    def warning(self, msg: object, *args: Any, **kw: Any) -> None:
        self._short(msg, args, kw)

    def info(self, msg: object, *args: Any, **kw: Any) -> None:
        log.debug(msg, *args)

    def debug(self, msg: object, *args: Any, **kw: Any) -> None:
        log.debug(msg, *args)

    def isEnabledFor(self, level: int) -> bool:  # logging.Logger API
        return log.isEnabledFor(level)


class _HeaderDeadline(asyncio.Protocol):
    """Wraps aiohttp's request handler: a connection that starts a request but has not sent its whole header
    (up to the blank line) within ``timeout`` seconds is closed. aiohttp has no such limit, so a half-sent
    request would hold its connection forever. Idle keep-alive connections are left to aiohttp's own timeout."""

    def __init__(self, inner: Any, timeout: float) -> None:
        self.inner = inner
        self.timeout = timeout
        self._transport: Any = None
        self._timer: asyncio.TimerHandle | None = None
        self._tail = b""

    def connection_made(self, transport: Any) -> None:
        self._transport = transport
        self._arm()
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        seen = self._tail + data
        if b"\r\n\r\n" in seen or b"\n\n" in seen:
            self._disarm()  # a header is complete
        elif self._timer is None:
            self._arm()  # a new request has begun
        self._tail = seen[-3:]
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def _arm(self) -> None:
        if self.timeout > 0:
            self._timer = asyncio.get_running_loop().call_later(self.timeout, self._expire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        if self._transport is not None and not self._transport.is_closing():
            log.debug("metrics server: closed a connection whose request header was not complete within %gs",
                      self.timeout)
            self._transport.close()


def _aiohttp_web() -> Any:
    try:
        from aiohttp import web
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ServerUnavailable(
            "the metrics server needs aiohttp, which is not installed (pip install 'arbframe[server]')"
        ) from exc
    return web


def health_provider_for(
    kernel: Any, cache: Any = None, fx_source: Any = None, *, budget_seconds: float = 3.0, loop_state: Any = None
) -> HealthProvider:
    """The ``/health`` provider of a running service: every plugin's checks plus the kernel's (FX, heartbeat,
    and with ``loop_state`` LIVENESS and READINESS), run concurrently off the event loop
    (:func:`arbframe.service.health.build_report_async`), bounded by ``budget_seconds``. ``kernel`` is the
    service's :class:`arbframe.kernel.plugin_host.Kernel`."""

    async def provider() -> Any:
        from arbframe.service.health import build_report_async, kernel_checks, loop_checks

        checks = list(kernel.health_checks())
        checks += kernel_checks(
            kernel.config, cache, fx_source=fx_source, service_name=kernel.context.service_name,
            same_process=True,
        )
        if loop_state is not None:
            checks += loop_checks(loop_state)
        return await build_report_async(checks, budget_seconds=budget_seconds)

    return provider


async def start_metrics_server(
    registry: CollectorRegistry,
    health_provider: HealthProvider | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    **options: Any,
) -> MetricsServer:
    """Start a :class:`MetricsServer` and return it (call ``await server.stop()`` on shutdown)."""
    return await MetricsServer(registry, health_provider, host=host, port=port, **options).start()


async def start_from_config(
    config: Mapping[str, Any],
    registry: CollectorRegistry,
    health_provider: HealthProvider | None = None,
    ready_provider: ReadyProvider | None = None,
    live_provider: LiveProvider | None = None,
) -> MetricsServer | None:
    """What ``arbframe run`` calls: start the server when ``metrics_server.enabled``, else return None.

    A missing aiohttp or a taken port is logged as an ERROR and the service carries on without the endpoint
    (Prometheus then reports the target down, which the alert rules catch).
    """
    section = config.get("metrics_server") or {}
    if not section.get("enabled", False):
        return None
    host = str(section.get("host") or DEFAULT_HOST)
    port = int(section.get("port", DEFAULT_PORT))
    options = {k: section[k] for k in ("cache_seconds", "render_in_thread", "own_thread") if k in section}
    try:
        return await start_metrics_server(
            registry, health_provider, host, port, ready_provider=ready_provider, live_provider=live_provider,
            **options
        )
    except ServerUnavailable as exc:
        log.error("metrics server disabled: %s", exc)
    except OSError as exc:
        log.error("metrics server disabled: cannot listen on %s:%s (%s)", host, port, exc.strerror or exc)
    return None
