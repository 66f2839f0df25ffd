"""What is Binance-specific about its market-data streams; :class:`arbframe.BookStream` does the supervising.

Facts used (Binance spot "WebSocket Streams" documentation): combined streams at
``<ws_url>/stream?streams=<a>/<b>`` wrapped as ``{"stream": name, "data": payload}`` (the driver always uses
them, so every frame names its stream); stream names are lowercase; ``<symbol>@bookTicker`` sends
``{"u", "s", "b", "B", "a", "A"}``; the partial depth stream ``<symbol>@depth<5|10|20>[@100ms]`` sends
``{"lastUpdateId", "bids", "asks"}``; the server pings every 20 s (the supervisor answers with the ping's
payload) and closes a connection after 24 hours (the supervisor rolls over before). Before a planned disconnect
the server sends a ``serverShutdown`` event ("establish a new connection as soon as possible to prevent
interruption"; ``{"e": "serverShutdown", "E": <ms>}``, on the WebSocket API wrapped as ``{"event": {...}}`` --
both are recognised): the parser then asks the supervisor for a rollover (:meth:`arbframe.BookStream.rollover`),
so the new connection delivers before the old one goes, instead of a reconnect after the old one dropped.

:class:`BookParser` turns frames into books and drops the update ids it has already delivered, so the overlap of
a rollover (old and new connection both live until the new one delivered) yields every update once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from arbframe import OrderBook
from arbframe_exchange_binance.parsing import book_ticker_to_book, levels, utc_now

log = logging.getLogger("arbframe.binance.stream")

try:  # optional accelerator (extra "fast"): same results as json.loads, about twice as fast on book frames
    import orjson

    _loads = orjson.loads
    JSON_DECODER = "orjson"
except ImportError:  # pragma: no cover - depends on the environment
    _loads = json.loads
    JSON_DECODER = "json"

PARTIAL_DEPTHS = (5, 10, 20)


def stream_name(market: str, depth: int, speed: str = "100ms") -> str:
    """``btcusdt@bookTicker`` for depth 1, else the smallest partial depth stream holding ``depth`` levels."""
    m = market.lower()
    if depth <= 1:
        return f"{m}@bookTicker"
    count = next((d for d in PARTIAL_DEPTHS if d >= depth), PARTIAL_DEPTHS[-1])
    return f"{m}@depth{count}" + ("@100ms" if speed == "100ms" else "")


def stream_url(ws_url: str, streams: list[str]) -> str:
    return f"{ws_url.rstrip('/')}/stream?streams={'/'.join(streams)}"


class BookParser:
    """``parse(frame) -> [OrderBook]`` for :class:`arbframe.StreamSpec`; ``symbol_of`` maps ``BTCUSDT`` -> ``BTC``.
    ``last_ids`` holds the newest update id delivered per symbol."""

    def __init__(self, symbol_of: Callable[[str], str], exchange: str = "binance",
                 on_shutdown: Callable[[], Any] | None = None) -> None:
        self.symbol_of = symbol_of
        self.exchange = exchange
        self.on_shutdown = on_shutdown  # called on ``serverShutdown`` (the driver: its stream's rollover)
        self.shutdowns = 0  # serverShutdown events seen
        self.last_ids: dict[str, int] = {}
        self._targets: dict[str, tuple[str, int]] = {}  # stream name -> (symbol, levels; 0 = book ticker)

    def _target(self, stream: str) -> tuple[str, int]:
        found = self._targets.get(stream)
        if found is None:
            market, _, kind = stream.partition("@")
            count = 0 if kind == "bookTicker" else int(kind[5:].partition("@")[0] or 20)
            found = self._targets[stream] = (self.symbol_of(market.upper()), count)
        return found

    def parse(self, text: Any) -> list[OrderBook]:
        msg = _loads(text)
        if type(msg) is not dict or "stream" not in msg:
            if type(msg) is dict and _is_shutdown(msg):
                self.shutdowns += 1
                log.info("%s stream: serverShutdown announced; rolling over to a new connection", self.exchange)
                if self.on_shutdown is not None:
                    self.on_shutdown()
            return []  # subscription answers, serverShutdown announcements
        payload = msg["data"]
        symbol, count = self._target(msg["stream"])
        uid = payload["lastUpdateId"] if count else payload["u"]
        if type(uid) is not int:
            uid = int(uid)
        prev = self.last_ids.get(symbol)
        if prev is not None and uid <= prev:
            return []  # already delivered (the overlap of a rollover)
        if count:
            book = OrderBook(self.exchange, symbol, levels(payload["bids"], count), levels(payload["asks"], count),
                             utc_now(), False)
        else:
            book = book_ticker_to_book(payload, symbol, utc_now(), exchange=self.exchange)
        self.last_ids[symbol] = uid
        return [book]


def _is_shutdown(msg: dict[str, Any]) -> bool:
    """``{"e": "serverShutdown", ...}`` or ``{"event": {"e": "serverShutdown", ...}}``."""
    event = msg.get("event", msg)
    return type(event) is dict and event.get("e") == "serverShutdown"
