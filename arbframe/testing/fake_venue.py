"""A base for local fake venues (aiohttp on 127.0.0.1, a free port): books, balances, faults, WebSocket clients.

A venue's fake subclasses :class:`FakeVenue` and adds its routes in :meth:`FakeVenue.routes`; everything else is
shared, with one vocabulary for every venue::

    async with MyFakeVenue() as fake:       # or: with MyFakeVenue().in_thread() as fake:  (sync tests)
        fake.set_mid("BTC", 135_000_000)    # books: deterministic levels around a mid, seeded quantities
        fake.inject("rate_limited", 2)      # the next 2 requests answer HTTP 429 + Retry-After
        fake.step()                         # move every mid one seeded step; WebSocket clients get new books
        fake.balances["KRW"] = Decimal(0)

Fault kinds (:data:`FAULT_KINDS`) and what a connector must raise for each (:data:`EXPECTED_ERRORS`, asserted by
:class:`arbframe.testing.exchange_kit.ExchangeContract`):

=================  ====================================================  =================================
kind               the fake answers                                      the driver raises
=================  ====================================================  =================================
``rate_limited``   HTTP 429, ``Retry-After: <retry_after>``              :class:`arbframe.RateLimited`
``banned``         HTTP 418, ``Retry-After: <retry_after>``              :class:`arbframe.Banned`
``unavailable``    HTTP 503                                              :class:`arbframe.VenueUnavailable`
``timeout``        nothing for ``delay`` seconds, then the normal answer :class:`arbframe.RequestTimeout`
``drop``           closes the connection without an answer               :class:`arbframe.TransportError`
``malformed``      HTTP 200 with a body that is not JSON                 :class:`arbframe.ProtocolError`
``auth``           HTTP 401 (the venue's error body)                     :class:`arbframe.AuthenticationError`
``venue_error``    the venue's own error (subclass: :meth:`venue_fault`) per the venue
=================  ====================================================  =================================

``inject(kind, count, path=...)`` limits a fault to one path; ``clear()`` removes pending faults;
``fake.requests`` lists ``(method, path)`` of every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from arbframe.core.errors import (
    AuthenticationError,
    Banned,
    ProtocolError,
    RateLimited,
    RequestTimeout,
    TransportError,
    VenueUnavailable,
)

__all__ = ["EXPECTED_ERRORS", "FAULT_KINDS", "FakeVenue", "Fault"]

FAULT_KINDS = ("rate_limited", "banned", "unavailable", "timeout", "drop", "malformed", "auth", "venue_error")

EXPECTED_ERRORS: dict[str, type[Exception]] = {
    "rate_limited": RateLimited,
    "banned": Banned,
    "unavailable": VenueUnavailable,
    "timeout": RequestTimeout,
    "drop": TransportError,
    "malformed": ProtocolError,
    "auth": AuthenticationError,
}


@dataclass
class Fault:
    kind: str
    count: int = 1
    path: str | None = None
    retry_after: float = 0.05
    delay: float = 1.0
    details: dict[str, Any] = field(default_factory=dict)


class FakeVenue:
    """Shared state and serving of a fake venue. Subclasses implement :meth:`routes` (and :meth:`venue_fault`)."""

    name = "venue"
    #: the quote currency of :meth:`book` levels' prices
    quote = "KRW"

    def __init__(self, *, mids: dict[str, Decimal | int | str] | None = None, tick: Decimal | str = "1",
                 levels: int = 20, seed: int = 7, balances: dict[str, Decimal | int | str] | None = None) -> None:
        self.mids: dict[str, Decimal] = {k.upper(): Decimal(str(v)) for k, v in (mids or {}).items()}
        self.tick = Decimal(str(tick))
        self.levels = levels
        self.seed = seed
        self._rng = random.Random(seed)
        self.balances: dict[str, Decimal] = {k.upper(): Decimal(str(v)) for k, v in (balances or {}).items()}
        self.requests: list[tuple[str, str]] = []
        self.faults: list[Fault] = []
        self.ws_clients: list[Any] = []
        self.steps = 0
        self._runner: Any = None
        self._site: Any = None
        self.port = 0
        self.host = "127.0.0.1"
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---------------------------------------------------------------------------------------------- books
    def price_step(self, symbol: str, price: Decimal) -> Decimal:
        """The price grid at ``price`` (override for venues with price bands)."""
        return self.tick

    def set_mid(self, symbol: str, price: Decimal | int | str) -> None:
        self.mids[symbol.upper()] = Decimal(str(price))

    def book(self, symbol: str, depth: int | None = None) -> tuple[list[tuple[Decimal, Decimal]],
                                                                  list[tuple[Decimal, Decimal]]]:
        """(bids best first, asks best first): ``levels`` prices one grid step apart around the mid, seeded
        quantities (the same mid and seed always give the same book). ``KeyError`` for an unknown symbol."""
        mid = self.mids[symbol.upper()]
        step = self.price_step(symbol, mid)
        mid = (mid / step).to_integral_value() * step
        rng = random.Random(f"{self.seed}:{symbol}:{mid}")
        count = max(1, min(depth or self.levels, self.levels))

        def side(sign: int) -> list[tuple[Decimal, Decimal]]:
            return [(mid + sign * step * (i + 1),
                     Decimal(rng.randint(1_000_000, 90_000_000)) / Decimal(100_000_000) * (i + 1))
                    for i in range(count)]

        return side(-1), side(+1)

    def step(self) -> None:
        """Move every mid by a seeded step of at most 0.1 % and tell WebSocket clients (:meth:`on_step`)."""
        for symbol, mid in list(self.mids.items()):
            move = Decimal(self._rng.randint(-10, 10)) / Decimal(10_000)
            grid = self.price_step(symbol, mid)
            self.mids[symbol] = max(grid, ((mid * (1 + move)) / grid).to_integral_value() * grid)
        self.steps += 1
        self.on_step()

    def on_step(self) -> None:
        """Called after :meth:`step`; a fake with WebSocket streams pushes new books here."""

    # --------------------------------------------------------------------------------------------- faults
    def inject(self, kind: str, count: int = 1, *, path: str | None = None, **details: Any) -> Fault:
        """The next ``count`` requests (to ``path`` if given) fail as ``kind`` (see the module table)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {', '.join(FAULT_KINDS)}")
        known = {k: details.pop(k) for k in ("retry_after", "delay") if k in details}
        fault = Fault(kind, count, path, details=details, **known)
        self.faults.append(fault)
        return fault

    def clear(self) -> None:
        self.faults.clear()

    def take_fault(self, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.path is None or fault.path == path:
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    async def venue_fault(self, fault: Fault, request: Any) -> Any:
        """The answer for a venue-specific fault (``venue_error``, ``auth``); override per venue."""
        from aiohttp import web

        status = 401 if fault.kind == "auth" else 400
        return web.json_response({"error": fault.kind, **fault.details}, status=status)

    async def _apply_fault(self, fault: Fault, request: Any) -> Any:
        from aiohttp import web

        kind = fault.kind
        if kind == "rate_limited":
            return web.json_response({"error": "too many requests"}, status=429,
                                     headers={"Retry-After": f"{fault.retry_after:g}"})
        if kind == "banned":
            return web.json_response({"error": "banned"}, status=418,
                                     headers={"Retry-After": f"{fault.retry_after:g}"})
        if kind == "unavailable":
            return web.json_response({"error": "unavailable"}, status=503)
        if kind == "malformed":
            return web.Response(status=200, text="<html>not json", content_type="text/html")
        if kind == "drop":
            transport = request.transport
            if transport is not None:
                transport.abort()
            raise asyncio.CancelledError
        return await self.venue_fault(fault, request)

    # --------------------------------------------------------------------------------------------- serving
    def routes(self, app: Any) -> None:
        """Add the venue's routes to the aiohttp ``app`` (override)."""
        raise NotImplementedError

    def _app(self) -> Any:
        from aiohttp import web

        @web.middleware
        async def faults(request: Any, handler: Any) -> Any:
            self.requests.append((request.method, request.path))
            fault = self.take_fault(request.path)
            if fault is not None:
                if fault.kind == "timeout":
                    await asyncio.sleep(fault.delay)
                else:
                    return await self._apply_fault(fault, request)
            return await handler(request)

        app = web.Application(middlewares=[faults])
        self.routes(app)
        return app

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def start(self) -> FakeVenue:
        from aiohttp import web

        self._runner = web.AppRunner(self._app(), handle_signals=False)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.host, 0)
        await self._site.start()
        self.port = self._site._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        """Close WebSocket clients and stop serving; safe to call twice."""
        for ws in list(self.ws_clients):
            with contextlib.suppress(Exception):
                await ws.close()
        self.ws_clients.clear()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> FakeVenue:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @contextlib.contextmanager
    def in_thread(self) -> Iterator[FakeVenue]:
        """Serve from a private event loop in a thread (for synchronous tests and subprocess runs)."""
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self.start())
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=serve, name=f"fake-{self.name}", daemon=True)
        self._thread.start()
        ready.wait(10)
        try:
            yield self
        finally:
            asyncio.run_coroutine_threadsafe(self.close(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(10)
            loop.close()
            self._thread = None
