"""Upbit WebSocket market data: ``orderbook`` and ``ticker`` with reconnect, resubscribe and keep-alive.

One connection carries every subscribed symbol. The request is Upbit's list of objects: a ticket, one object per
data type with its codes (``KRW-BTC.15`` asks for 15 orderbook units), and the format (``SIMPLE`` by default;
DEFAULT is parsed too). The client sends ``PING`` every ``ping_interval`` seconds (Upbit answers
``{"status":"UP"}``; idle connections are closed by the server after about two minutes) and answers protocol
pings. A connection that stays silent for ``silence_timeout`` seconds is treated as dead: it is closed and
re-opened with exponential backoff, and the subscription is sent again. ``ping_interval`` must be at most half of
``silence_timeout`` (checked when built), so a quiet but healthy stream is never taken for dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterable
from decimal import Decimal
from operator import attrgetter
from typing import Any

from arbframe import OrderBook

from .errors import UpbitProtocolError
from .parsing import book_from_units, loads, market_for, parse_ws_message, symbol_for, ts_ms, ws_count

__all__ = ["UpbitStream"]

log = logging.getLogger("arbframe.upbit.ws")

_QUEUE_SIZE = 1024
_STOP = object()
_symbol_of = attrgetter("symbol")


class _Latest:
    """A conflating mailbox: the newest item per symbol. A consumer that falls behind skips superseded books
    instead of working through a stale backlog (and superseded books are freed at once)."""

    __slots__ = ("items", "key", "waiter")

    def __init__(self, key: Any) -> None:
        self.items: dict[str, Any] = {}
        self.key = key
        self.waiter: asyncio.Future | None = None

    def put(self, item: Any) -> None:
        self.items[self.key(item) if item is not _STOP else ""] = item
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def take(self) -> Any:
        items = self.items
        if "" in items:
            return items.pop("")
        return items.pop(next(iter(items)))

    async def wait(self) -> None:
        while not self.items:
            waiter = self.waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                if self.waiter is waiter:
                    self.waiter = None


class _Channel:
    """A one-consumer mailbox lighter than asyncio.Queue: a bounded deque (a full one drops its oldest item -
    consumers want the newest books) and one waiter future."""

    __slots__ = ("items", "waiter")

    def __init__(self, size: int = _QUEUE_SIZE) -> None:
        self.items: deque = deque(maxlen=size)
        self.waiter: asyncio.Future | None = None

    def take(self) -> Any:
        return self.items.popleft()

    def put(self, item: Any) -> None:
        self.items.append(item)
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self) -> None:
        while not self.items:
            waiter = self.waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                if self.waiter is waiter:
                    self.waiter = None


def check_keepalive(ping_interval: float, silence_timeout: float) -> str | None:
    """Why the pair cannot work (None when it can): the watchdog must never fire before a keep-alive's answer.

    A quiet subscription (an illiquid market) carries only the ``{"status":"UP"}`` answers to our ``PING``s, so
    at least two pings must fit in ``silence_timeout``: one answer may be slow or lost without the stream being
    declared dead and reopened for nothing."""
    if not ping_interval > 0 or not silence_timeout > 0:
        return f"ping interval ({ping_interval}s) and silence timeout ({silence_timeout}s) must be positive"
    if ping_interval * 2 > silence_timeout:
        return (f"ping interval ({ping_interval:g}s) must be at most half the silence timeout "
                f"({silence_timeout:g}s), or a quiet stream is closed before its keep-alive is answered")
    return None


class UpbitStream:
    def __init__(self, *, url: str, exchange: str = "upbit", fmt: str = "SIMPLE", ping_interval: float = 5.0,
                 silence_timeout: float = 15.0, backoff_initial: float = 0.5, backoff_max: float = 30.0,
                 depth: int = 15, observer: Any = None, jitter: float = 0.2, seed: int | None = None) -> None:
        problem = check_keepalive(ping_interval, silence_timeout)
        if problem is not None:
            raise ValueError(f"upbit ws: {problem}")
        self.url = url
        self.exchange = exchange
        self.fmt = fmt.upper()
        self.ping_interval = ping_interval
        self.silence_timeout = silence_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.depth = depth
        self.observer = observer
        self.jitter = jitter
        self._rng = random.Random(seed)
        self.symbols: set[str] = set()
        self._latest: dict[str, tuple[OrderBook, int]] = {}
        self._tickers: dict[str, tuple[Decimal, Any]] = {}
        self._book_queues: list[_Channel | _Latest] = []
        self._ticker_queues: list[_Channel] = []
        self._task: asyncio.Task | None = None
        self._ws: Any = None
        self._session: Any = None
        self._stopping = False
        self._conn_id = 0
        self.connected = False
        self.reconnects = 0
        self.messages = 0
        self.books_built = 0  # orderbook messages turned into OrderBooks
        self.errors: list[str] = []
        self.last_message = 0.0  # time.monotonic() of the last message of any kind
        self.connected_event: asyncio.Event | None = None
        self._resubscribe_pending = False
        self._side_tasks: set[asyncio.Task] = set()

    # ------------------------------------------------------------------------------------------ control
    def subscribe(self, symbols: Iterable[str], depth: int | None = None) -> None:
        new = {s.upper() for s in symbols} - self.symbols
        deeper = depth is not None and ws_count(depth) > ws_count(self.depth)
        if deeper:
            self.depth = depth
        if not new and not deeper:
            return
        self.symbols |= new
        if self._ws is not None and self.connected and not self._resubscribe_pending:
            # one new request for everything added in this loop iteration (Upbit limits data requests to 5/s)
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().call_soon(self._resubscribe)
                self._resubscribe_pending = True

    def _resubscribe(self) -> None:
        self._resubscribe_pending = False
        ws = self._ws
        if ws is not None and self.connected:
            task = asyncio.get_running_loop().create_task(self._send_request(ws))
            self._side_tasks.add(task)
            task.add_done_callback(self._side_tasks.discard)

    def start(self) -> None:
        """Start the connection task (needs a running loop; a no-op while it runs)."""
        if self._task is not None and not self._task.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # started by the first consumer instead
        self._stopping = False
        if self.connected_event is None:
            self.connected_event = asyncio.Event()
        self._task = loop.create_task(self._run(), name=f"{self.exchange}-ws")

    async def stop(self) -> None:
        self._stopping = True
        task, self._task = self._task, None
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        self.connected = False
        for q in self._book_queues + self._ticker_queues:
            q.put(_STOP)

    # ----------------------------------------------------------------------------------------- reading
    def alive(self, max_silence: float) -> bool:
        return self.connected and (time.monotonic() - self.last_message) <= max_silence

    def latest(self, symbol: str, max_age: float) -> OrderBook | None:
        """The streamed book of ``symbol`` when the connection it came on is up and has been heard from within
        ``max_age`` seconds (Upbit sends a book on every change, so a live connection's last book is current)."""
        entry = self._latest.get(symbol)
        if entry is None or entry[1] != self._conn_id or not self.alive(max_age):
            return None
        return entry[0]

    def last_price(self, symbol: str) -> tuple[Decimal, Any] | None:
        return self._tickers.get(symbol)

    async def books(self, symbols: set[str] | None = None, depth: int | None = None, *,
                    conflate: bool = True) -> AsyncIterator[OrderBook]:
        """Books received for ``symbols`` (all when None), trimmed to ``depth``; ends when stopped.

        ``conflate`` (default): a consumer gets the newest book of each symbol; when it falls behind, superseded
        books are skipped (every message is still parsed into a book, see :meth:`latest`). ``conflate=False``:
        every book, in order, through a 1024-book buffer that drops its oldest when full."""
        if depth is not None:
            self.subscribe(symbols or (), depth)
        self.start()
        channel: _Latest | _Channel = _Latest(_symbol_of) if conflate else _Channel()
        items = channel.items
        take = channel.take
        self._book_queues.append(channel)
        try:
            while True:
                if not items:
                    await channel.wait()
                book = take()
                if book is _STOP:
                    return
                if symbols is not None and book.symbol not in symbols:
                    continue
                if depth is not None and (len(book.bids) > depth or len(book.asks) > depth):
                    book = OrderBook(book.exchange, book.symbol, book.bids[:depth], book.asks[:depth], book.ts,
                                     book.simulated)
                yield book
        finally:
            self._book_queues.remove(channel)

    async def tickers(self, symbols: set[str] | None = None) -> AsyncIterator[tuple[str, Decimal, Any]]:
        self.start()
        channel = _Channel()
        items = channel.items
        self._ticker_queues.append(channel)
        try:
            while True:
                if not items:
                    await channel.wait()
                item = channel.take()
                if item is _STOP:
                    return
                if symbols is None or item[0] in symbols:
                    yield item
        finally:
            self._ticker_queues.remove(channel)

    # ------------------------------------------------------------------------------------------ internals
    def request_message(self) -> str:
        codes = sorted(self.symbols)
        count = ws_count(self.depth)
        return json.dumps([
            {"ticket": str(uuid.uuid4())},
            {"type": "orderbook", "codes": [f"{market_for(s)}.{count}" for s in codes]},
            {"type": "ticker", "codes": [market_for(s) for s in codes]},
            {"format": self.fmt},
        ], separators=(",", ":"))

    async def _send_request(self, ws: Any) -> None:
        if self.symbols:
            await ws.send_str(self.request_message())

    async def _watchdog(self, ws: Any) -> None:
        """Close a connection nothing arrived on for ``silence_timeout`` seconds (no per-message timer)."""
        step = max(0.01, self.silence_timeout / 4)
        while True:
            await asyncio.sleep(step)
            if time.monotonic() - self.last_message > self.silence_timeout:
                await ws.close()
                return

    async def _pinger(self, ws: Any) -> None:
        while True:
            await asyncio.sleep(self.ping_interval)
            await ws.send_str("PING")

    def _handle(self, data: Any) -> None:
        self.last_message = time.monotonic()
        self.messages += 1
        obj = loads(data)
        if obj.__class__ is not dict:
            return
        if obj.get("ty") == "orderbook":  # the hot path: SIMPLE orderbook
            try:
                book = book_from_units(self.exchange, symbol_for(obj["cd"]), obj["obu"], ts_ms(obj["tms"]),
                                       self.depth, "ap", "as", "bp", "bs")
            except (KeyError, TypeError, AttributeError) as exc:
                raise UpbitProtocolError(f"unexpected orderbook message: missing {exc}") from None
            parsed: tuple[str, Any] | None = ("orderbook", book)
        elif "error" in obj:
            err = obj["error"] if isinstance(obj["error"], dict) else {"message": obj["error"]}
            text = f"{err.get('name')}: {err.get('message')}"
            self.errors.append(text)
            log.warning("upbit ws: server error %s", text)
            return
        else:
            parsed = parse_ws_message(obj, self.exchange, self.depth)
            if parsed is None:
                return
        kind, value = parsed
        if kind == "orderbook":
            self.books_built += 1
            self._latest[value.symbol] = (value, self._conn_id)
            if self.observer is not None:
                self.observer.ws_age(max(0.0, time.time() - value.ts.timestamp()))
            for q in self._book_queues:
                q.put(value)
        elif kind == "ticker":
            self._tickers[value[0]] = (value[1], value[2])
            for q in self._ticker_queues:
                q.put(value)

    async def _run(self) -> None:
        import aiohttp

        backoff = self.backoff_initial
        first = True
        while not self._stopping:
            try:
                if self._session is None or self._session.closed:
                    self._session = aiohttp.ClientSession()
                async with self._session.ws_connect(self.url, autoping=True, max_msg_size=8 * 1024 * 1024,
                                                    timeout=aiohttp.ClientWSTimeout(ws_close=2.0)) as ws:
                    self._conn_id += 1
                    self._ws = ws
                    self.connected = True
                    self.last_message = time.monotonic()
                    if not first:
                        self.reconnects += 1
                        if self.observer is not None:
                            self.observer.ws_reconnect()
                        log.info("upbit ws: reconnected (%d so far), resubscribing %d symbols", self.reconnects,
                                 len(self.symbols))
                    first = False
                    if self.connected_event is not None:
                        self.connected_event.set()
                    await self._send_request(ws)
                    loop = asyncio.get_running_loop()
                    pinger = loop.create_task(self._pinger(ws))
                    watchdog = loop.create_task(self._watchdog(ws))
                    try:
                        got_data = False
                        receive = ws.receive
                        data_types = (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT)
                        while True:
                            msg = await receive()
                            if msg.type in data_types:
                                try:
                                    self._handle(msg.data)
                                except UpbitProtocolError as exc:
                                    log.warning("upbit ws: dropped a message: %s", exc)
                                    continue
                                if not got_data:
                                    got_data = True
                                    backoff = self.backoff_initial
                            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING,
                                              aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                                if watchdog.done() and not self._stopping:
                                    log.warning("upbit ws: silent for %.1fs, treating the stream as dead",
                                                self.silence_timeout)
                                elif not self._stopping:
                                    log.warning("upbit ws: connection closed (%s)", msg.type.name)
                                break
                    finally:
                        pinger.cancel()
                        watchdog.cancel()
                        self.connected = False
                        self._ws = None
                        if self.connected_event is not None:
                            self.connected_event.clear()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self._stopping:
                    log.warning("upbit ws: %s: %s", type(exc).__name__, exc)
            self.connected = False
            if self._stopping:
                break
            delay = backoff * (1 + self.jitter * self._rng.random())
            await asyncio.sleep(delay)
            backoff = min(backoff * 2, self.backoff_max)
