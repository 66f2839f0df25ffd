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
* rollover (:meth:`BookStream.rollover`): a new connection is opened and subscribed while the old one keeps
  delivering, and the old one is closed only after the new one delivered a frame its ``parse`` accepted (a venue's
  parse may drop updates the old connection already delivered), so there is no gap. It happens before a
  connection reaches ``max_age`` (venues close them after 24 h), when :meth:`BookStream.update` changes the
  subscription, and when the venue announces a disconnect (its ``parse`` calls :meth:`BookStream.rollover`:
  Binance's ``serverShutdown``). A rollover that fails keeps the old connection and is tried again with backoff;
* REST fallback (``StreamSpec.poll``): while no connection has delivered for ``fallback_after`` seconds (down,
  reconnecting, not yet up), books come from polling the venue's REST API every ``fallback_interval`` seconds
  (through its rate limiter); they go wherever streamed books go, carry the time of their REST answer (so their
  age is what the engine's market-data checks see), and :meth:`BookStream.book_info` says ``source="rest"``.
  Polling stops as soon as a connection delivers again;
* latest book per symbol: :meth:`BookStream.latest` (``None`` when older than ``max_age`` or the connection it came
  on is down); every book also goes to each consumer of :meth:`BookStream.books` (a bounded buffer per consumer
  that drops its oldest book when full, or with ``conflate=True`` the newest book per symbol).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from arbframe.core.models import OrderBook
from arbframe.venues.metrics import VenueMetrics
from arbframe.venues.retry import Backoff

__all__ = ["BookInfo", "BookStream", "StreamSettings", "StreamSpec"]

log = logging.getLogger("arbframe.venues.stream")

#: ``ws.receive()`` returns buffered frames without yielding, so a venue's burst (one step's books of 150 symbols)
#: would otherwise all be parsed before any consumer (the event-driven ticks) sees the first of them. The reader
#: yields to the event loop once it has read for ``_YIELD_FRESH`` seconds (since it last yielded or waited for a
#: frame) while a book gave a consumer something new to take (a book for one that takes every book; for a
#: conflating one, a book of a symbol whose previous book it has taken), and after ``_YIELD_AFTER`` seconds in any
#: case (other tasks run too). A pass of the loop costs as much as parsing a frame or two, so the budget is in time,
#: not frames: a venue whose frames parse fast (Binance) is not charged a pass per few frames, and a burst of one
#: symbol's updates to a conflating consumer (each replacing the one before) costs a pass per millisecond.
_YIELD_FRESH = 0.00025
_YIELD_AFTER = 0.001

_REST = 0  # the "connection" REST fallback books arrive on
#: the connection whose reader is running (set in each reader task's own context), so a rollover a venue's parse
#: asks for knows which connection announced the disconnect
_READING: contextvars.ContextVar[int] = contextvars.ContextVar("arbframe_stream_reading", default=-1)


class BookInfo(NamedTuple):
    """The newest book of a symbol and where it came from: ``source`` is ``"stream"`` (a WebSocket frame) or
    ``"rest"`` (the REST fallback); ``age`` is the seconds since it arrived."""

    book: OrderBook
    source: str
    age: float


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
    #: seconds without a delivering connection before books come from REST polling (``StreamSpec.poll``);
    #: ``None``: never
    fallback_after: float | None = 2.0
    #: seconds from the start of one REST polling round to the start of the next (at least)
    fallback_interval: float = 1.0

    def __post_init__(self) -> None:
        if self.idle_timeout <= 0:
            raise ValueError("stream idle_timeout must be positive")
        if self.fallback_after is not None and self.fallback_after < 0:
            raise ValueError("stream fallback_after must not be negative")
        if self.fallback_interval <= 0:
            raise ValueError("stream fallback_interval must be positive")
        if self.ping_interval is not None and not 0 < self.ping_interval < self.idle_timeout:
            raise ValueError(
                f"stream ping_interval ({self.ping_interval:g}s) must be positive and shorter than idle_timeout "
                f"({self.idle_timeout:g}s): the idle watchdog must never fire before a keepalive"
            )


@dataclass(frozen=True)
class StreamSpec:
    """What a venue's stream looks like; plain callables, no base class.

    ``poll(symbols, depth)``: the REST fallback, an async iterator of the symbols' books fetched from the venue's
    REST API (through its rate limiter; yield each book as it arrives). Errors it raises end that polling round
    (logged; the next round starts after a backoff). ``None``: no fallback."""

    url: Callable[[list[str], int], str]
    parse: Callable[[Any], Iterable[OrderBook]]
    subscribe: Callable[[list[str], int], list[str]] = lambda symbols, depth: []
    ping_text: str | None = None
    poll: Callable[[list[str], int], AsyncIterable[OrderBook]] | None = None


class _Consumer:
    __slots__ = ("books", "newest", "waiter")

    def __init__(self, size: int, conflate: bool = False) -> None:
        self.books: deque[OrderBook] = deque(maxlen=max(1, size))
        self.newest: dict[str, OrderBook] = {}  # conflating consumers: the newest book per symbol
        self.waiter: asyncio.Future[None] | None = None

    def wake(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class BookStream:
    """One subscription (symbols at one depth) over one WebSocket connection at a time (two during a rollover)."""

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
        self._conflating: list[_Consumer] = []
        self._task: asyncio.Task[None] | None = None
        self._fallback_task: asyncio.Task[None] | None = None
        self._session: Any = None
        self._stopping = False
        self._roll = asyncio.Event() if _has_loop() else None
        self._roll_future: asyncio.Future[bool] | None = None
        self._rolling = False  # a replacement connection is being opened / awaited
        self._candidate = 0  # the replacement connection's number while rolling
        self._again = False  # roll over once more after the one under way (asked while it ran)
        self._live: set[int] = set()  # connection numbers currently up
        self._serving: set[int] = set()  # connections up that delivered a frame
        self._up: asyncio.Event | None = None  # set while a connection delivers
        self._down: asyncio.Event | None = None  # set while none does
        self._conn_seq = 0
        self._fresh = 0  # books that gave a consumer something new since a reader last yielded (see _YIELD_FRESH)
        self.connected = asyncio.Event() if _has_loop() else None
        self.reconnects = 0
        self.rollovers = 0
        self.connections_opened = 0
        self.fallback_active = False  # books come from REST polling now
        self.fallback_since: float | None = None  # monotonic time polling started (the last time)
        self.fallback_rounds = 0  # REST polling rounds completed
        self.fallback_books = 0  # books the REST fallback delivered
        self.fallback_failures = 0  # REST polling rounds that failed
        self._fallback_counted = 0.0  # monotonic time up to which REST polling time is in the metric

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
        if self._up is None or self._down is None:
            self._up, self._down = asyncio.Event(), asyncio.Event()
        if not self._serving:
            self._up.clear()
            self._down.set()
        self._stopping = False
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._supervise(), name=f"{self.exchange}-stream")
        if self.spec.poll is not None and self.settings.fallback_after is not None:
            self._fallback_task = loop.create_task(self._fallback(), name=f"{self.exchange}-stream-fallback")

    async def stop(self) -> None:
        """Close the connection; consumers' iterators end after draining. Safe to call twice."""
        self._stopping = True
        for task in (self._fallback_task, self._task):
            if task is not None:
                task.cancel()
        tasks, self._task, self._fallback_task = (self._fallback_task, self._task), None, None
        for task in tasks:
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        session, self._session = self._session, None
        if session is not None:
            with contextlib.suppress(Exception):
                await session.close()
        self._live.clear()
        self._serving.clear()
        self.fallback_active = False
        self._finish_roll(False)
        if self.connected is not None:
            self.connected.clear()
        for consumer in self._consumers + self._conflating:
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
            if self._rolling:
                self._again = True  # the replacement under way was opened with the old subscription
            else:
                self._roll.set()

    def rollover(self) -> asyncio.Future[bool]:
        """Replace the connection without a gap: open a new one and subscribe while the current one keeps
        delivering, switch the readers over once the new one delivered, then close the old one. For a venue that
        announces a disconnect (Binance's ``serverShutdown``: its ``parse`` calls this) and for callers that want a
        fresh connection. Returns a future: ``True`` once the new connection took over, ``False`` if there was
        none to replace or the old one ended first (an ordinary reconnect follows). A rollover whose new
        connection fails is tried again with backoff while the old one lasts. Asking while one is under way joins
        it (asked by the replacement connection itself, it runs once more afterwards). Needs a running loop;
        callers need not await the future."""
        fut = self._roll_future
        if fut is None or fut.done():
            fut = self._roll_future = asyncio.get_running_loop().create_future()
        if not self.running or self._roll is None or not self._live:
            self._finish_roll(False)
            return fut
        if self._rolling:
            if _READING.get() == self._candidate:
                self._again = True
        else:
            self._roll.set()
        return fut

    def _finish_roll(self, result: bool) -> None:
        fut, self._roll_future = self._roll_future, None
        if fut is not None and not fut.done():
            fut.set_result(result)

    # ------------------------------------------------------------------------------------------ consuming
    def latest(self, symbol: str, max_age: float | None = None) -> OrderBook | None:
        """The newest book of ``symbol`` if it is at most ``max_age`` seconds old (default: ``idle_timeout``) and
        the connection it came on is up (or it came from the REST fallback); ``None`` otherwise."""
        entry = self._latest.get(symbol.upper())
        if entry is None or (entry[2] != _REST and entry[2] not in self._live):
            return None
        age = time.monotonic() - entry[1]
        if age > (self.settings.idle_timeout if max_age is None else max_age):
            return None
        return entry[0]

    def book_info(self, symbol: str) -> BookInfo | None:
        """The newest book of ``symbol`` whatever its age, with its source (``"stream"``/``"rest"``) and age;
        ``None`` if none arrived."""
        entry = self._latest.get(symbol.upper())
        if entry is None:
            return None
        return BookInfo(entry[0], "rest" if entry[2] == _REST else "stream", time.monotonic() - entry[1])

    async def books(self, symbols: Iterable[str] | None = None, depth: int | None = None, *,
                    conflate: bool = False) -> AsyncIterator[OrderBook]:
        """Every book as it arrives, streamed or from the REST fallback (``symbols`` filters, ``depth`` trims);
        starts the stream; ends on stop. ``conflate``: only the newest book of each symbol (a slow consumer skips
        superseded books instead of working through a backlog)."""
        wanted = {s.upper() for s in symbols} if symbols is not None else None
        if wanted:
            self.update(wanted, depth)
        consumer = _Consumer(self.settings.queue_size)
        group = self._conflating if conflate else self._consumers
        group.append(consumer)
        self.start()
        queue, newest = consumer.books, consumer.newest
        try:
            while True:
                while queue or newest:
                    book = newest.pop(next(iter(newest))) if conflate else queue.popleft()
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
                group.remove(consumer)

    def _publish(self, book: OrderBook, conn: int, now: float | None = None) -> None:
        """Hand ``book`` to :meth:`latest` and every consumer (``now``: its arrival, ``time.monotonic()``). Runs for
        every book of every frame, so waiting consumers are woken inline (no method call per consumer) and the
        message-age metric is computed only when the metrics are bound."""
        self._latest[book.symbol] = (book, time.monotonic() if now is None else now, conn)
        if conn != _REST and book.ts is not None and self.metrics.families is not None:
            self.metrics.message_age(time.time() - book.ts.timestamp())
        fresh = False
        for consumer in self._consumers:
            consumer.books.append(book)
            fresh = True
            waiter = consumer.waiter
            if waiter is not None:
                consumer.waiter = None
                if not waiter.done():
                    waiter.set_result(None)
        for consumer in self._conflating:
            newest = consumer.newest
            if book.symbol not in newest:
                fresh = True
            newest[book.symbol] = book
            waiter = consumer.waiter
            if waiter is not None:
                consumer.waiter = None
                if not waiter.done():
                    waiter.set_result(None)
        if fresh:
            self._fresh += 1

    # ----------------------------------------------------------------------------------------- connection
    async def _open(self) -> tuple[Any, int]:
        import aiohttp

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        url = self.spec.url(self.symbols, self.depth)
        kw: dict[str, Any] = {}
        if hasattr(aiohttp, "ClientWSTimeout"):
            kw["timeout"] = aiohttp.ClientWSTimeout(ws_close=self.settings.close_timeout)
        ws = await _bounded(self._session.ws_connect(url, autoping=False, max_msg_size=16 * 1024 * 1024, **kw),
                            self.settings.connect_timeout)
        try:
            for message in self.spec.subscribe(self.symbols, self.depth):
                await ws.send_str(message)
        except BaseException:
            with contextlib.suppress(Exception):
                await ws.close()
            raise
        self._conn_seq += 1
        self.connections_opened += 1
        return ws, self._conn_seq

    async def _supervise(self) -> None:
        failures = 0
        first = True
        while not self._stopping:
            assert self._roll is not None
            self._roll.clear()  # a new connection takes the subscription as it is now
            self._again = False
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
            if self._stopping:  # stopped while connecting (a cancellation the connect timeout swallowed)
                with contextlib.suppress(Exception):
                    await ws.close()
                return
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
        """Pump ``ws``, rolling over to fresh connections when asked or as they age; True if any book arrived.

        :meth:`stop` cancels the task running this and sets ``_stopping``, checked after every step: a cancellation
        an await swallowed (``asyncio.wait_for`` before Python 3.12) cannot keep the loop going."""
        loop = asyncio.get_running_loop()
        got = asyncio.Event()
        reader = loop.create_task(self._read(ws, conn, got))
        delivered = False
        opened = time.monotonic()
        retry_at: float | None = None  # a rollover that failed is tried again then
        failures = 0
        assert self._roll is not None
        try:
            while not self._stopping:
                max_age = self.settings.max_age
                until = None if max_age is None else max(0.0, max_age - (time.monotonic() - opened))
                if retry_at is not None:
                    left = max(0.0, retry_at - time.monotonic())
                    until = left if until is None else min(until, left)
                notice = loop.create_task(self._roll.wait())
                try:
                    done, _ = await asyncio.wait({reader, notice}, timeout=until, return_when=asyncio.FIRST_COMPLETED)
                finally:  # also when stop() cancels us here: never leave the waiter pending
                    notice.cancel()
                delivered = delivered or got.is_set()
                if reader in done:
                    return delivered
                self._roll.clear()
                replaced = await self._replace(conn)
                if replaced is None:  # keep the old connection; try again with backoff while it lasts
                    failures += 1
                    retry_at = time.monotonic() + self.settings.backoff.delay(failures - 1, self._rng)
                    continue
                new_ws, new_conn, new_reader, new_got = replaced
                self._retag(conn, new_conn)
                await _retire(ws, reader)
                self._retag(conn, new_conn)  # what the old reader published while it was being closed
                ws, conn, reader, got = new_ws, new_conn, new_reader, new_got
                opened, retry_at, failures = time.monotonic(), None, 0
                self.rollovers += 1
                delivered = True
                self._finish_roll(True)
                if self._again:
                    self._again = False
                    self._roll.set()
            return delivered
        finally:
            await _retire(ws, reader)
            self._finish_roll(False)

    async def _replace(self, old: int) -> tuple[Any, int, asyncio.Task[None], asyncio.Event] | None:
        """A new connection that delivered a frame, reading; None (logged) if it could not be had."""
        self._rolling = True
        new_ws: Any = None
        new_reader: asyncio.Task[None] | None = None
        ok = False
        try:
            try:
                new_ws, new_conn = await self._open()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s stream: rollover connect failed (%s: %s); keeping the old connection", self.exchange,
                            type(exc).__name__, exc)
                return None
            self._candidate = new_conn
            loop = asyncio.get_running_loop()
            new_got = asyncio.Event()
            new_reader = loop.create_task(self._read(new_ws, new_conn, new_got))
            first = loop.create_task(new_got.wait())
            try:
                await asyncio.wait({first, new_reader}, timeout=self.settings.rollover_timeout,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                first.cancel()
            if not new_got.is_set():
                log.warning("%s stream: replacement connection %s; keeping the old one", self.exchange,
                            "closed" if new_reader.done() else "sent nothing")
                return None
            ok = True
            log.info("%s stream: rolled over from connection %d to %d", self.exchange, old, new_conn)
            return new_ws, new_conn, new_reader, new_got
        finally:
            self._rolling = False
            self._candidate = 0
            if not ok and new_ws is not None:
                if new_reader is None:
                    with contextlib.suppress(Exception):
                        await new_ws.close()
                else:
                    await _retire(new_ws, new_reader)

    def _retag(self, old: int, new: int) -> None:
        """Books that came on ``old`` stay current on ``new`` (subscribed to the same symbols, or more)."""
        latest = self._latest
        for symbol, (book, at, conn) in list(latest.items()):
            if conn == old:
                latest[symbol] = (book, at, new)

    async def _read(self, ws: Any, conn: int, got: asyncio.Event) -> None:
        import aiohttp

        kinds = aiohttp.WSMsgType
        ends = (kinds.CLOSE, kinds.CLOSING, kinds.CLOSED, kinds.ERROR)
        seen = [time.monotonic()]
        loop = asyncio.get_running_loop()
        _READING.set(conn)  # this task's own context: a rollover asked from parse knows who asked
        keepalive = loop.create_task(self._keepalive(ws, seen))
        self._live.add(conn)
        if self.connected is not None:
            self.connected.set()
        serving = False
        resumed = time.monotonic()  # when this reader last came back from the event loop (yielded or waited)
        looped = [False]  # set by a callback on the event loop's next pass: the reader yielded or waited meanwhile
        mark = looped.__setitem__
        loop.call_soon(mark, 0, True)
        receive, parse, publish, monotonic = ws.receive, self.spec.parse, self._publish, time.monotonic
        text, binary, ping = kinds.TEXT, kinds.BINARY, kinds.PING
        try:
            while True:
                msg = await receive()
                now = seen[0] = monotonic()
                if looped[0]:  # the loop ran since the last frame: time without yielding counts from here
                    looped[0] = False
                    resumed = now
                    loop.call_soon(mark, 0, True)
                kind = msg.type
                if kind is text or kind is binary:
                    try:
                        books = parse(msg.data)
                        if books.__class__ is not tuple and books.__class__ is not list:
                            books = list(books)  # a generator's error drops the whole frame, as with any other
                    except Exception as exc:  # one bad frame never kills the stream
                        log.warning("%s stream: dropped a message: %s", self.exchange, exc)
                        continue
                    for book in books:
                        publish(book, conn, now)
                    if not serving:  # a frame the venue's parse accepted (it may drop updates already delivered)
                        serving = True
                        got.set()
                        self._serve(conn, True)
                    busy = now - resumed
                    if busy >= _YIELD_FRESH and (self._fresh or busy >= _YIELD_AFTER):  # see _YIELD_FRESH
                        self._fresh = 0
                        await asyncio.sleep(0)
                elif kind is ping:
                    await ws.pong(msg.data)
                elif kind in ends:
                    return
        finally:
            keepalive.cancel()
            self._live.discard(conn)
            self._serve(conn, False)
            if not self._live and self.connected is not None:
                self.connected.clear()

    def _serve(self, conn: int, delivering: bool) -> None:
        """Keep ``_up``/``_down`` (the REST fallback's cue) in step with the connections that deliver."""
        if delivering:
            self._serving.add(conn)
        else:
            self._serving.discard(conn)
        if self._up is None or self._down is None:
            return
        if self._serving:
            self._up.set()
            self._down.clear()
        else:
            self._up.clear()
            self._down.set()

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

    # ------------------------------------------------------------------------------------- REST fallback
    async def _fallback(self) -> None:
        """While no connection delivers for ``fallback_after`` seconds, poll REST (:meth:`_poll`) until one does."""
        assert self._up is not None and self._down is not None and self.settings.fallback_after is not None
        up, down, grace = self._up, self._down, self.settings.fallback_after
        while True:
            await down.wait()
            if await _wait_event(up, grace) or self._stopping:
                continue
            self.fallback_active = True
            self.fallback_since = self._fallback_counted = time.monotonic()
            self.metrics.rest_fallback(True)
            log.warning("%s stream: no connection has delivered for %.1fs; books come from REST polling until one "
                        "does", self.exchange, grace)
            poller = asyncio.get_running_loop().create_task(self._poll(), name=f"{self.exchange}-stream-poll")
            try:
                await up.wait()
            finally:
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await poller
                self.fallback_active = False
                self.metrics.rest_fallback(False, self._fallback_time())
            log.info("%s stream: a connection delivers again; REST polling stopped after %d round(s)", self.exchange,
                     self.fallback_rounds)

    async def _poll(self) -> None:
        """Rounds of ``spec.poll`` at most every ``fallback_interval`` seconds; a failed round backs off."""
        assert self.spec.poll is not None
        s = self.settings
        failures = 0
        while True:
            started = time.monotonic()
            books = self.spec.poll(list(self.symbols), self.depth)
            delivered = 0
            try:
                async for book in books:
                    self._publish(book, _REST)
                    self.fallback_books += 1
                    delivered += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                self.fallback_failures += 1
                if failures == 1 or failures % 10 == 0:
                    log.warning("%s stream: REST fallback failed (%s: %s; %d in a row)", self.exchange,
                                type(exc).__name__, exc, failures)
                delay = max(s.fallback_interval, s.backoff.delay(failures - 1, self._rng))
            else:
                failures = 0
                self.fallback_rounds += 1
                delay = s.fallback_interval - (time.monotonic() - started)
            finally:
                self.metrics.rest_fallback_books(delivered)
                close = getattr(books, "aclose", None)
                if close is not None:
                    with contextlib.suppress(Exception):
                        await close()
            self.metrics.rest_fallback(True, self._fallback_time())  # the time so far, while it lasts
            await asyncio.sleep(max(0.0, delay))

    def _fallback_time(self) -> float:
        """Seconds of REST polling since they were last counted (``arbframe_exchange_ws_rest_fallback_seconds``)."""
        now = time.monotonic()
        spent, self._fallback_counted = now - self._fallback_counted, now
        return spent


async def _bounded(coro: Any, timeout: float) -> Any:
    """``await coro`` for at most ``timeout`` seconds (``asyncio.TimeoutError`` after). Unlike ``asyncio.wait_for``
    on Python < 3.12, a cancellation that arrives as ``coro`` finishes is never swallowed (a connection it opened
    is closed instead)."""
    task = asyncio.ensure_future(coro)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except BaseException:
        if not task.done():
            task.cancel()
        elif not task.cancelled() and task.exception() is None:
            with contextlib.suppress(Exception):
                await task.result().close()
        raise
    if not done:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise asyncio.TimeoutError(f"no connection within {timeout:g}s")
    return task.result()


async def _wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Whether ``event`` is set within ``timeout`` seconds. Not ``asyncio.wait_for``: on Python < 3.12 it swallows
    a cancellation that arrives as the event is set (the caller then runs on after ``stop()``)."""
    if event.is_set():
        return True
    waiter = asyncio.get_running_loop().create_task(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=timeout)
    finally:
        waiter.cancel()
    return event.is_set()


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
