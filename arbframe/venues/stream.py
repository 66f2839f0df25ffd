"""A WebSocket order-book stream supervisor a venue configures with a few callables.

The venue supplies what differs (:class:`StreamSpec`): the URL for a symbol set, the subscription messages sent
after connecting, an optional application-level ping text, and ``parse(message) -> books``. The supervisor does
the rest, the same way for every venue:

* connect (aiohttp, imported lazily), send the subscription, answer protocol pings itself;
* keepalive: every ``ping_interval`` seconds a ping (the venue's text, else a protocol ping frame);
* idle watchdog: a connection on which nothing at all (data, pong, anything) arrived for ``idle_timeout`` seconds
  is dead and replaced. ``idle_timeout`` must be longer than ``ping_interval`` (checked when the settings are
  made), so the watchdog can never fire before a keepalive has had the chance to be answered;
* reconnect with exponential backoff and seeded jitter (:class:`~arbframe.venues.retry.Backoff`), resubscribing;
* rollover: before a connection reaches ``max_age`` (venues close them after 24 h), or when :meth:`BookStream.update`
  changes the subscription, a new connection is opened and the old one closed only after the new one delivered a
  frame its ``parse`` accepted (a venue's parse may drop updates the old connection already delivered), so there
  is no gap;
* latest book per symbol: :meth:`BookStream.latest` (``None`` when older than ``max_age`` or the connection it came
  on is down); every book also goes to each consumer of :meth:`BookStream.books` (a bounded buffer per consumer
  that drops its oldest book when full).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from arbframe.core.models import OrderBook
from arbframe.venues.metrics import VenueMetrics
from arbframe.venues.retry import Backoff

__all__ = ["BookStream", "StreamSettings", "StreamSpec"]

log = logging.getLogger("arbframe.venues.stream")

#: frames parsed back to back before the reader yields to the event loop: ``ws.receive()`` returns buffered frames
#: without yielding, so a venue's burst (one step's books of 150 symbols) would otherwise all be parsed before any
#: consumer (the event-driven ticks) sees the first of them
_YIELD_EVERY = 8


@dataclass(frozen=True)
class StreamSettings:
    """Timing of one stream. ``idle_timeout`` > ``ping_interval`` is enforced (``ValueError`` otherwise)."""

    ping_interval: float | None = 20.0
    idle_timeout: float = 60.0
    max_age: float | None = 23.5 * 3600
    rollover_timeout: float = 10.0
    backoff: Backoff = field(default_factory=lambda: Backoff(initial=0.5, maximum=30.0))
    queue_size: int = 1024
    connect_timeout: float = 10.0
    close_timeout: float = 2.0  # a dead peer must not hold a close for aiohttp's default 10 s

    def __post_init__(self) -> None:
        if self.idle_timeout <= 0:
            raise ValueError("stream idle_timeout must be positive")
        if self.ping_interval is not None and not 0 < self.ping_interval < self.idle_timeout:
            raise ValueError(
                f"stream ping_interval ({self.ping_interval:g}s) must be positive and shorter than idle_timeout "
                f"({self.idle_timeout:g}s): the idle watchdog must never fire before a keepalive"
            )


@dataclass(frozen=True)
class StreamSpec:
    """What a venue's stream looks like; plain callables, no base class."""

    url: Callable[[list[str], int], str]
    parse: Callable[[Any], Iterable[OrderBook]]
    subscribe: Callable[[list[str], int], list[str]] = lambda symbols, depth: []
    ping_text: str | None = None


class _Consumer:
    __slots__ = ("books", "waiter")

    def __init__(self, size: int) -> None:
        self.books: deque[OrderBook] = deque(maxlen=max(1, size))
        self.waiter: asyncio.Future[None] | None = None

    def wake(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class BookStream:
    """One subscription (symbols at one depth) over one WebSocket connection at a time."""

    def __init__(self, exchange: str, spec: StreamSpec, symbols: Iterable[str], depth: int, *,
                 settings: StreamSettings | None = None, metrics: VenueMetrics | None = None,
                 rng: random.Random | None = None) -> None:
        self.exchange = exchange
        self.spec = spec
        self.symbols = sorted({s.upper() for s in symbols})
        self.depth = depth
        self.settings = settings or StreamSettings()
        self.metrics = metrics or VenueMetrics(exchange)
        self._rng = rng or random.Random()
        self._latest: dict[str, tuple[OrderBook, float, int]] = {}  # symbol -> (book, monotonic, connection)
        self._consumers: list[_Consumer] = []
        self._task: asyncio.Task[None] | None = None
        self._session: Any = None
        self._stopping = False
        self._roll = asyncio.Event() if _has_loop() else None
        self._live: set[int] = set()  # connection numbers currently up
        self._conn_seq = 0
        self.connected = asyncio.Event() if _has_loop() else None
        self.reconnects = 0
        self.rollovers = 0
        self.connections_opened = 0

    # -------------------------------------------------------------------------------------------- control
    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start supervising (needs a running loop); a no-op while it runs."""
        if self.running:
            return
        if self._roll is None:
            self._roll = asyncio.Event()
        if self.connected is None:
            self.connected = asyncio.Event()
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(self._supervise(), name=f"{self.exchange}-stream")

    async def stop(self) -> None:
        """Close the connection; consumers' iterators end after draining. Safe to call twice."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        session, self._session = self._session, None
        if session is not None:
            with contextlib.suppress(Exception):
                await session.close()
        self._live.clear()
        if self.connected is not None:
            self.connected.clear()
        for consumer in self._consumers:
            consumer.wake()

    def update(self, symbols: Iterable[str], depth: int | None = None) -> None:
        """Change the subscription; a running stream rolls over to it without a gap."""
        wanted = sorted({s.upper() for s in symbols} | set(self.symbols))
        deeper = depth is not None and depth > self.depth
        if wanted == self.symbols and not deeper:
            return
        self.symbols = wanted
        if deeper:
            self.depth = depth  # type: ignore[assignment]
        if self.running and self._roll is not None:
            self._roll.set()

    # ------------------------------------------------------------------------------------------ consuming
    def latest(self, symbol: str, max_age: float | None = None) -> OrderBook | None:
        """The newest book of ``symbol`` if its connection is up and it is at most ``max_age`` seconds old
        (default: ``idle_timeout``); ``None`` otherwise."""
        entry = self._latest.get(symbol.upper())
        if entry is None or entry[2] not in self._live:
            return None
        age = time.monotonic() - entry[1]
        if age > (self.settings.idle_timeout if max_age is None else max_age):
            return None
        return entry[0]

    async def books(self, symbols: Iterable[str] | None = None, depth: int | None = None) -> AsyncIterator[OrderBook]:
        """Every book as it arrives (``symbols`` filters, ``depth`` trims); starts the stream; ends on stop."""
        wanted = {s.upper() for s in symbols} if symbols is not None else None
        if wanted:
            self.update(wanted, depth)
        consumer = _Consumer(self.settings.queue_size)
        self._consumers.append(consumer)
        self.start()
        try:
            while True:
                while consumer.books:
                    book = consumer.books.popleft()
                    if wanted is not None and book.symbol not in wanted:
                        continue
                    if depth is not None and (len(book.bids) > depth or len(book.asks) > depth):
                        book = OrderBook(book.exchange, book.symbol, book.bids[:depth], book.asks[:depth], book.ts,
                                         book.simulated)
                    yield book
                if self._stopping:
                    return
                consumer.waiter = asyncio.get_running_loop().create_future()
                await consumer.waiter
        finally:
            with contextlib.suppress(ValueError):
                self._consumers.remove(consumer)

    def _publish(self, book: OrderBook, conn: int) -> None:
        self._latest[book.symbol] = (book, time.monotonic(), conn)
        ts = book.ts.timestamp() if book.ts is not None else None
        if ts is not None:
            self.metrics.message_age(time.time() - ts)
        for consumer in self._consumers:
            consumer.books.append(book)
            consumer.wake()

    # ----------------------------------------------------------------------------------------- connection
    async def _open(self) -> tuple[Any, int]:
        import aiohttp

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        url = self.spec.url(self.symbols, self.depth)
        kw: dict[str, Any] = {}
        if hasattr(aiohttp, "ClientWSTimeout"):
            kw["timeout"] = aiohttp.ClientWSTimeout(ws_close=self.settings.close_timeout)
        ws = await asyncio.wait_for(
            self._session.ws_connect(url, autoping=False, max_msg_size=16 * 1024 * 1024, **kw),
            self.settings.connect_timeout)
        for message in self.spec.subscribe(self.symbols, self.depth):
            await ws.send_str(message)
        self._conn_seq += 1
        self.connections_opened += 1
        return ws, self._conn_seq

    async def _supervise(self) -> None:
        failures = 0
        first = True
        while not self._stopping:
            try:
                ws, conn = await self._open()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                delay = self.settings.backoff.delay(failures - 1, self._rng)
                log.warning("%s stream: connect failed (%s: %s); retry in %.2fs", self.exchange,
                            type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                continue
            if not first:
                self.reconnects += 1
                self.metrics.reconnect()
            first = False
            delivered = await self._run(ws, conn)
            if self._stopping:
                return
            failures = 0 if delivered else failures + 1
            delay = self.settings.backoff.delay(max(0, failures - 1), self._rng)
            log.warning("%s stream: connection lost; reconnecting in %.2fs", self.exchange, delay)
            await asyncio.sleep(delay)

    async def _run(self, ws: Any, conn: int) -> bool:
        """Pump ``ws``, rolling over to fresh connections as they age; True if any book arrived.

        :meth:`stop` cancels the task running this, and also sets ``_stopping``, checked after every step: before
        Python 3.12 ``asyncio.wait_for`` returns its result and drops a cancellation that arrives once the awaited
        thing is done (here: a stop from the consumer of the replacement connection's first book), and the loop
        would go on with the new connection while ``stop()`` waits for it."""
        loop = asyncio.get_running_loop()
        got = asyncio.Event()
        reader = loop.create_task(self._read(ws, conn, got))
        delivered = False
        opened = time.monotonic()
        try:
            while not self._stopping:
                assert self._roll is not None
                max_age = self.settings.max_age
                until = None if max_age is None else max(0.0, max_age - (time.monotonic() - opened))
                notice = loop.create_task(self._roll.wait())
                try:
                    done, _ = await asyncio.wait({reader, notice}, timeout=until, return_when=asyncio.FIRST_COMPLETED)
                finally:  # also when stop() cancels us here: never leave the waiter pending
                    notice.cancel()
                delivered = delivered or got.is_set()
                if reader in done:
                    return delivered
                self._roll.clear()
                try:  # rollover: the new connection first, then retire the old one
                    new_ws, new_conn = await self._open()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("%s stream: rollover connect failed (%s); keeping the old connection",
                                self.exchange, exc)
                    opened = time.monotonic()
                    continue
                new_got = asyncio.Event()
                new_reader = loop.create_task(self._read(new_ws, new_conn, new_got))
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(new_got.wait(), self.settings.rollover_timeout)
                if self._stopping:  # (a cancellation wait_for dropped)
                    await _retire(new_ws, new_reader)
                    break
                if not new_got.is_set():
                    log.warning("%s stream: replacement connection sent nothing; keeping the old one", self.exchange)
                    await _retire(new_ws, new_reader)
                    opened = time.monotonic()
                    continue
                await _retire(ws, reader)
                ws, conn, reader, got, opened = new_ws, new_conn, new_reader, new_got, time.monotonic()
                self.rollovers += 1
                delivered = True
            return delivered
        finally:
            await _retire(ws, reader)

    async def _read(self, ws: Any, conn: int, got: asyncio.Event) -> None:
        import aiohttp

        kinds = aiohttp.WSMsgType
        ends = (kinds.CLOSE, kinds.CLOSING, kinds.CLOSED, kinds.ERROR)
        seen = [time.monotonic()]
        loop = asyncio.get_running_loop()
        keepalive = loop.create_task(self._keepalive(ws, seen))
        self._live.add(conn)
        if self.connected is not None:
            self.connected.set()
        frames = 0
        try:
            while True:
                msg = await ws.receive()
                seen[0] = time.monotonic()
                if msg.type is kinds.PING:
                    await ws.pong(msg.data)
                elif msg.type in (kinds.TEXT, kinds.BINARY):
                    try:
                        books = list(self.spec.parse(msg.data))
                    except Exception as exc:  # one bad frame never kills the stream
                        log.warning("%s stream: dropped a message: %s", self.exchange, exc)
                        continue
                    for book in books:
                        self._publish(book, conn)
                    got.set()  # a frame the venue's parse accepted (it may drop updates it already delivered)
                    frames += 1
                    if frames % _YIELD_EVERY == 0:  # a burst already buffered: let consumers see the first books
                        await asyncio.sleep(0)
                elif msg.type in ends:
                    return
        finally:
            keepalive.cancel()
            self._live.discard(conn)
            if not self._live and self.connected is not None:
                self.connected.clear()

    async def _keepalive(self, ws: Any, seen: list[float]) -> None:
        """Ping every ``ping_interval``; close the connection once nothing arrived for ``idle_timeout``."""
        s = self.settings
        step = min(s.ping_interval or s.idle_timeout, s.idle_timeout) / 4
        last_ping = time.monotonic()
        while not ws.closed:
            await asyncio.sleep(step)
            now = time.monotonic()
            if s.ping_interval is not None and now - last_ping >= s.ping_interval:
                last_ping = now
                with contextlib.suppress(Exception):
                    if self.spec.ping_text is not None:
                        await ws.send_str(self.spec.ping_text)
                    else:
                        await ws.ping()
            if now - seen[0] > s.idle_timeout:
                log.warning("%s stream: nothing for %.1fs; replacing the connection", self.exchange, now - seen[0])
                with contextlib.suppress(Exception):
                    await ws.close()
                return


async def _retire(ws: Any, reader: asyncio.Task[None]) -> None:
    with contextlib.suppress(Exception):
        await ws.close()
    if not reader.done():
        reader.cancel()
        await asyncio.wait({reader})  # the reader's own cancellation stays in it; a stop() of ours propagates
    if not reader.cancelled():
        reader.exception()  # retrieved: it ended with the connection


def _has_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
