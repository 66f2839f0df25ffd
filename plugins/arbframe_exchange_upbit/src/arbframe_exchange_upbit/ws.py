"""Upbit WebSocket market data (``orderbook`` and ``ticker``) on arbframe's :class:`~arbframe.BookStream`.

The kernel's supervisor connects, reconnects with backoff and jitter, rolls over, runs the idle watchdog and
sends the keepalive; this module says what is Upbit's:

* the request (:func:`request_message`): a ticket, one object per data type with its codes (``KRW-BTC.15`` asks for
  15 orderbook units), and the format (``SIMPLE`` by default; DEFAULT is parsed too);
* the keepalive text ``PING`` (Upbit answers ``{"status":"UP"}``; idle connections are closed by the server after
  about two minutes);
* :meth:`UpbitStream._parse`: every message into books (the hot path builds an ``OrderBook`` straight from the
  SIMPLE units); tickers and Upbit's error messages are kept beside the books.

Books are consumed through the kernel's ``books()``: conflating by default (the newest book per symbol; a slow
consumer skips superseded books instead of working through a backlog) or every book in order. ``poll`` (the
driver's ``GET /v1/orderbook`` for every symbol in one request) is the kernel's REST fallback while no connection
delivers. ``latest(symbol, max_age)``: the book of a live connection that was heard from (data, or a PING's
answer) within ``max_age`` seconds - Upbit sends a book on every change, so a live connection's last book is
current however old it is - or a REST fallback book at most ``max_age`` seconds old.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from decimal import Decimal
from typing import Any

from arbframe import BookStream, OrderBook, ProtocolError, StreamSettings, StreamSpec, VenueMetrics

from .parsing import book_from_units, loads, market_for, parse_ws_message, symbol_for, ts_ms, ws_count

__all__ = ["UpbitStream", "request_message"]

_STOP = object()


def request_message(symbols: Iterable[str], depth: int, fmt: str = "SIMPLE") -> str:
    """Upbit's subscription: orderbook (``ws_count(depth)`` units) and ticker for every symbol, one format."""
    codes = sorted({s.upper() for s in symbols})
    count = ws_count(depth)
    return json.dumps([
        {"ticket": str(uuid.uuid4())},
        {"type": "orderbook", "codes": [f"{market_for(s)}.{count}" for s in codes]},
        {"type": "ticker", "codes": [market_for(s) for s in codes]},
        {"format": fmt},
    ], separators=(",", ":"))


class _Latest:
    """A conflating mailbox: the newest item per key, one waiter."""

    __slots__ = ("items", "key", "waiter")

    def __init__(self, key: Callable[[Any], str]) -> None:
        self.items: dict[str, Any] = {}
        self.key = key
        self.waiter: asyncio.Future[None] | None = None

    def put(self, item: Any) -> None:
        self.items["" if item is _STOP else self.key(item)] = item
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def take(self) -> Any:
        items = self.items
        return items.pop("") if "" in items else items.pop(next(iter(items)))

    async def drain(self) -> AsyncIterator[Any]:
        """Items as they come (the newest per key), until :data:`_STOP`."""
        items = self.items
        while True:
            while not items:
                self.waiter = asyncio.get_running_loop().create_future()
                await self.waiter
            item = self.take()
            if item is _STOP:
                return
            yield item


def _tick_symbol(tick: tuple[str, Decimal, Any]) -> str:
    return tick[0]


class UpbitStream:
    """One Upbit subscription (every symbol on one connection) supervised by a :class:`~arbframe.BookStream`."""

    def __init__(self, url: str, *, exchange: str = "upbit", fmt: str = "SIMPLE", depth: int = 15,
                 settings: StreamSettings | None = None, metrics: VenueMetrics | None = None,
                 rng: Any = None, poll: Callable[[list[str], int], AsyncIterable[OrderBook]] | None = None) -> None:
        self.fmt = fmt.upper()
        self.exchange = exchange
        self.errors: list[str] = []  # Upbit's error messages (a bad request), newest last
        self.prices: dict[str, tuple[Decimal, Any]] = {}  # symbol -> (last trade price, ts)
        self.books_built = 0
        self.heard = 0.0  # time.monotonic() of the last message of any kind
        self._tick_boxes: list[_Latest] = []
        spec = StreamSpec(url=lambda symbols, depth: url, parse=self._parse, ping_text="PING",
                          subscribe=lambda symbols, depth: [request_message(symbols, depth, self.fmt)]
                          if symbols else [], poll=poll)
        self.stream = BookStream(exchange, spec, (), depth, settings=settings, metrics=metrics, rng=rng)

    # ------------------------------------------------------------------------------------------ control
    @property
    def symbols(self) -> list[str]:
        return self.stream.symbols

    @property
    def connected(self) -> bool:
        return self.stream.connected is not None and self.stream.connected.is_set()

    @property
    def reconnects(self) -> int:
        return self.stream.reconnects

    def subscribe(self, symbols: Iterable[str], depth: int | None = None) -> None:
        """Add symbols (or depth); a running stream rolls over to the wider subscription without a gap. Symbols
        added in one go are one new request."""
        self.stream.update(symbols, depth)

    def start(self) -> None:
        """Start supervising when a loop runs (else the first consumer starts it)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self.stream.start()

    async def stop(self) -> None:
        """Close the connection; every consumer's iterator ends. Safe to call twice."""
        await self.stream.stop()
        for box in self._tick_boxes:
            box.put(_STOP)

    # ----------------------------------------------------------------------------------------- reading
    def latest(self, symbol: str, max_age: float) -> OrderBook | None:
        """The streamed book of ``symbol`` if its connection is up and was heard from within ``max_age`` s, or
        the REST fallback's if it is at most ``max_age`` s old."""
        info = self.stream.book_info(symbol)
        if info is None:
            return None
        if info.source == "rest":
            return info.book if info.age <= max_age else None
        if time.monotonic() - self.heard > max_age:
            return None
        return self.stream.latest(symbol, math.inf)

    def books(self, symbols: Iterable[str] | None = None, depth: int | None = None, *,
              conflate: bool = True) -> AsyncIterator[OrderBook]:
        """Books for ``symbols`` (all when None), trimmed to ``depth``, streamed or from the REST fallback; ends
        when stopped. ``conflate`` (default): the newest book of each symbol; ``conflate=False``: every book in
        order (the kernel's bounded buffer). The kernel's own iterator (no wrapper per book)."""
        return self.stream.books(symbols, depth, conflate=conflate)

    async def tickers(self, symbols: Iterable[str] | None = None) -> AsyncIterator[tuple[str, Decimal, Any]]:
        """Last trades ``(symbol, price, ts)`` (the newest per symbol when the consumer is slower)."""
        wanted = {s.upper() for s in symbols} if symbols is not None else None
        box = _Latest(_tick_symbol)
        self._tick_boxes.append(box)
        self.start()
        try:
            async for tick in box.drain():
                if wanted is None or tick[0] in wanted:
                    yield tick
        finally:
            self._tick_boxes.remove(box)

    # --------------------------------------------------------------------------------------- parsing
    def _parse(self, data: Any) -> tuple[OrderBook, ...]:
        """One message -> the books in it (called by the supervisor for every data frame)."""
        self.heard = time.monotonic()
        obj = loads(data)
        if obj.__class__ is not dict:
            return ()
        if obj.get("ty") == "orderbook":  # the hot path: a SIMPLE orderbook
            try:
                book = book_from_units(self.exchange, symbol_for(obj["cd"]), obj["obu"], ts_ms(obj["tms"]),
                                       self.stream.depth, "ap", "as", "bp", "bs")
            except (KeyError, TypeError, AttributeError) as exc:
                raise ProtocolError(f"unexpected orderbook message: missing {exc}") from None
        elif "error" in obj:
            err = obj["error"] if isinstance(obj["error"], dict) else {"message": obj["error"]}
            self.errors.append(f"{err.get('name')}: {err.get('message')}")
            raise ProtocolError(f"server error {self.errors[-1]}")  # the supervisor logs it
        else:
            parsed = parse_ws_message(obj, self.exchange, self.stream.depth)
            if parsed is None or parsed[0] == "status":
                return ()
            kind, value = parsed
            if kind == "ticker":
                self.prices[value[0]] = (value[1], value[2])
                for box in self._tick_boxes:
                    box.put(value)
                return ()
            book = value
        self.books_built += 1
        return (book,)
