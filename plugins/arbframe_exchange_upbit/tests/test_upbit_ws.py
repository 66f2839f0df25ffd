"""WebSocket on the kernel's stream supervisor: subscription format, DEFAULT and SIMPLE streams, reconnect and
resubscribe after drops, silence -> dead, keepalive PING, conflation, and the engine-facing ``fresh_order_book``
and the stream iterator itself falling back to REST while the stream is down."""

from __future__ import annotations

import asyncio
import contextlib
import json
from decimal import Decimal

import pytest
from arbframe_exchange_upbit.exchange import SCHEMA, UpbitExchange
from arbframe_exchange_upbit.ws import request_message

from arbframe import ConfigError, StreamSettings, schema_defaults


async def _take(agen, n: int, timeout: float = 5.0) -> list:
    out = []

    async def run():
        async for item in agen:
            out.append(item)
            if len(out) >= n:
                return

    await asyncio.wait_for(run(), timeout)
    return out


@pytest.mark.parametrize("fmt", ["SIMPLE", "DEFAULT"])
async def test_stream_books_in_both_formats(make_upbit, fake, sample, fmt: str) -> None:
    ex = await make_upbit(ws_format=fmt)
    books = await _take(ex.stream_order_books(["BTC", "XRP"], depth=5), 10)
    assert {b.symbol for b in books} == {"BTC", "XRP"}
    for book in books:
        assert len(book.bids) == 5 and book.best_bid < book.best_ask and not book.simulated
    sub = fake.ws_requests[0]
    assert sub["format"] == fmt
    assert sorted(sub["orderbook"]) == [("BTC", 5), ("XRP", 5)]
    assert sorted(sub["ticker"]) == [("BTC", 30), ("XRP", 30)]
    ticks = await _take(ex.stream_tickers(["BTC"]), 2)
    assert all(t[0] == "BTC" and type(t[1]) is Decimal and t[1] > 0 for t in ticks)
    assert ex.context.registry.get_sample_value("arbframe_exchange_ws_message_age_seconds",
                                                {"exchange": "upbit"}) is not None


def test_request_message_shape() -> None:
    msg = json.loads(request_message(["btc", "ETH"], 10, "SIMPLE"))
    assert set(msg[0]) == {"ticket"}
    assert msg[1] == {"type": "orderbook", "codes": ["KRW-BTC.15", "KRW-ETH.15"]}  # 15 units cover depth 10
    assert msg[2] == {"type": "ticker", "codes": ["KRW-BTC", "KRW-ETH"]}
    assert msg[3] == {"format": "SIMPLE"}


async def test_reconnects_and_resubscribes_after_a_drop(make_upbit, fake, until) -> None:
    ex = await make_upbit()
    agen = ex.stream_order_books(["ETH"], depth=5)
    await _take(agen, 3)
    assert await fake.drop_ws() == 1
    await until(lambda: fake.ws_connections >= 2)
    assert len(await _take(agen, 5)) == 5
    assert len(fake.ws_requests) >= 2 and fake.ws_requests[-1]["orderbook"] == [("ETH", 5)]
    assert ex.stream.reconnects >= 1
    fake.inject("ws_drop")  # the scripted form: the next request drops every WebSocket client first
    await ex.rest_order_book("ETH")
    await until(lambda: fake.ws_connections >= 3)
    assert len(await _take(agen, 3)) == 3
    assert ex.context.registry.get_sample_value("arbframe_exchange_ws_reconnects_total", {"exchange": "upbit"}) >= 1
    await agen.aclose()


async def test_silent_stream_is_treated_as_dead_and_reopened(make_upbit, fake, until) -> None:
    ex = await make_upbit(ws_silence_timeout_seconds=0.3, ws_ping_interval_seconds=0.1)
    agen = ex.stream_order_books(["BTC"], depth=5)
    await _take(agen, 2)
    fake.ws_silent = True  # a hung server: no data, no PING answer
    await until(lambda: fake.ws_connections >= 2)
    fake.ws_silent = False
    await _take(agen, 2)
    await agen.aclose()
    assert ex.stream.reconnects >= 1


async def test_keepalive_pings(make_upbit, fake, until) -> None:
    ex = await make_upbit(ws_ping_interval_seconds=0.05, ws_silence_timeout_seconds=1.0)
    await _take(ex.stream_order_books(["BTC"]), 1)
    await until(lambda: fake.ws_pings >= 2)
    assert ex.stream.connected


async def test_server_error_message_is_reported(make_upbit, fake, until) -> None:
    ex = await make_upbit(ws_format="NOPE")  # not in the schema: Upbit answers WRONG_FORMAT
    ex.stream_order_books(["BTC"])
    await until(lambda: ex.stream.errors)
    assert ex.stream.errors[0].startswith("WRONG_FORMAT")


async def test_fresh_order_book_prefers_the_stream_and_falls_back_to_rest(make_upbit, fake, until) -> None:
    ex = await make_upbit(use_websocket=True, symbols=["BTC"], stream_max_age_seconds=1.0)
    await until(lambda: ex.stream.latest("BTC", 1.0) is not None)
    rest_before = fake.requests.count(("GET", "/v1/orderbook"))
    for _ in range(5):
        book = await ex.fetch_order_book("BTC", 10)
        assert len(book.bids) == 10
    assert fake.requests.count(("GET", "/v1/orderbook")) == rest_before  # all from the stream
    fake.ws_silent = True  # the stream dies (silent, then replaced): books come from REST
    await until(lambda: ex.stream.latest("BTC", 1.0) is None)
    assert (await ex.fetch_order_book("BTC", 10)).best_bid is not None
    assert fake.requests.count(("GET", "/v1/orderbook")) == rest_before + 1
    fake.ws_silent = False


async def test_quiet_but_live_stream_keeps_serving_its_last_book(make_upbit, fake, until) -> None:
    """Upbit sends a book on every change: a quiet market's last book stays current while PINGs are answered."""
    ex = await make_upbit(use_websocket=True, symbols=["BTC"], stream_max_age_seconds=0.3,
                          ws_ping_interval_seconds=0.1, ws_silence_timeout_seconds=0.5)
    await until(lambda: ex.stream.latest("BTC", 0.3) is not None)
    fake.ws_quiet = True
    pings = fake.ws_pings
    await until(lambda: fake.ws_pings >= pings + 8)  # 0.8 s without data: older than stream_max_age_seconds
    rest_before = fake.requests.count(("GET", "/v1/orderbook"))
    assert (await ex.fetch_order_book("BTC", 5)).best_bid is not None
    assert fake.requests.count(("GET", "/v1/orderbook")) == rest_before
    assert ex.stream.reconnects == 0 and fake.ws_connections == 1
    fake.ws_quiet = False


async def test_stream_that_cannot_connect_falls_back_to_rest(make_upbit, fake) -> None:
    ex = await make_upbit(use_websocket=True, ws_url="ws://127.0.0.1:9/websocket/v1")
    book = await ex.fetch_order_book("BTC", 5)
    assert book.best_bid is not None and not ex.stream.connected
    assert fake.requests.count(("GET", "/v1/orderbook")) == 1


async def test_close_ends_consumers(make_upbit) -> None:
    ex = await make_upbit()
    conflated = ex.stream_order_books(["BTC"])
    every = ex.stream_order_books(["BTC"], conflate=False)
    await _take(conflated, 1)
    await _take(every, 1)
    await ex.close()
    assert len([b async for b in conflated]) < 2
    assert len([b async for b in every]) < 1024


async def test_close_leaves_no_task_of_the_stream_behind(make_upbit) -> None:
    ex = await make_upbit()
    await _take(ex.stream_order_books(["BTC"]), 2)
    await ex.close()
    await asyncio.sleep(0)
    left = [t for t in asyncio.all_tasks() if not t.done() and "Event.wait" in repr(t.get_coro())]
    assert left == [], left  # the supervisor's rollover watch is cancelled with it


async def test_symbols_added_together_are_one_new_subscription(make_upbit, fake, until) -> None:
    ex = await make_upbit()
    await _take(ex.stream_order_books(["BTC"]), 1)
    before = len(fake.ws_requests)
    for symbol in ("ETH", "XRP", "USDT"):
        ex.stream.subscribe([symbol])
    await until(lambda: len(fake.ws_requests) > before)
    await asyncio.sleep(0.05)
    assert len(fake.ws_requests) == before + 1
    assert sorted(s for s, _ in fake.ws_requests[-1]["orderbook"]) == ["BTC", "ETH", "USDT", "XRP"]
    books = await _take(ex.stream_order_books(["USDT"]), 2)
    assert all(b.symbol == "USDT" for b in books)


async def test_every_book_mode_and_conflation(make_upbit, fake, until) -> None:
    ex = await make_upbit()
    every = ex.stream_order_books(["BTC"], depth=5, conflate=False)
    stamps = [b.ts for b in await _take(every, 5)]
    assert stamps == sorted(stamps)
    await every.aclose()
    # a slow consumer of the conflating stream skips superseded books and gets the newest one
    latest = ex.stream_order_books(["BTC"], depth=5)
    first = await _take(latest, 1)
    built = ex.stream.books_built
    await until(lambda: ex.stream.books_built >= built + 5)  # several updates arrive while we do not read
    held = ex.stream.latest("BTC", 60.0)
    newest = (await _take(latest, 1))[0]
    assert held is not None and held.ts > first[0].ts
    assert newest.ts >= held.ts  # not the book right after the first one
    await latest.aclose()


async def test_quiet_subscription_is_kept_alive_by_pings(make_upbit, fake, until) -> None:
    """No market data for several silence timeouts: the PING answers keep the connection, nothing reconnects."""
    ex = await make_upbit(ws_silence_timeout_seconds=0.4, ws_ping_interval_seconds=0.1)
    agen = ex.stream_order_books(["BTC"], depth=5)
    await _take(agen, 1)
    fake.ws_quiet = True
    pings = fake.ws_pings
    await until(lambda: fake.ws_pings >= pings + 12)  # >= 1.2 s of quiet: three silence timeouts
    assert ex.stream.reconnects == 0 and fake.ws_connections == 1
    fake.ws_quiet = False
    await agen.aclose()


@pytest.mark.parametrize(("ping", "silence"), [(20.0, 10.0), (10.0, 10.0)])
def test_a_watchdog_not_longer_than_the_keepalive_is_refused_at_build(ping, silence) -> None:
    with pytest.raises(ConfigError, match=r"upbit\.ws_silence_timeout_seconds must be greater than "
                                          r"upbit\.ws_ping_interval_seconds"):
        UpbitExchange({"ws_ping_interval_seconds": ping, "ws_silence_timeout_seconds": silence}, None)


def test_default_keepalive_fits_the_watchdog() -> None:
    defaults = schema_defaults(SCHEMA, {})
    settings = StreamSettings(defaults["ws_ping_interval_seconds"], defaults["ws_silence_timeout_seconds"])
    assert settings.ping_interval * 3 == settings.idle_timeout  # two answers may be lost before it is dead


async def test_stream_iterator_falls_back_to_rest_while_the_socket_is_down(make_upbit, fake, until) -> None:
    """The WebSocket endpoint refuses connections: after the grace the iterator yields books from one
    GET /v1/orderbook per round for every symbol (Upbit's own time of the book, source "rest"); they stop once a
    connection delivers again."""
    ex = await make_upbit(ws_rest_fallback_after_seconds=0.3, ws_rest_fallback_interval_seconds=0.05)
    agen = ex.stream_order_books(["BTC", "ETH"], depth=5)
    books = []

    async def consume():
        async for book in agen:
            books.append(book)

    consumer = asyncio.ensure_future(consume())
    await until(lambda: {b.symbol for b in books} == {"BTC", "ETH"})
    stream = ex.stream.stream
    fake.refuse_ws = True
    await fake.drop_ws()
    rest = fake.requests.count(("GET", "/v1/orderbook"))
    await until(lambda: stream.fallback_active)
    mark = len(books)
    await until(lambda: len(books) >= mark + 4 and fake.requests.count(("GET", "/v1/orderbook")) >= rest + 2)
    assert {b.symbol for b in books[mark:]} == {"BTC", "ETH"} and all(len(b.bids) == 5 for b in books[mark:])
    assert stream.fallback_books >= 2 * stream.fallback_rounds - 2  # both symbols in one request per round
    info = stream.book_info("ETH")
    assert info.source == "rest" and info.age < 1.0
    assert ex.stream.latest("BTC", 1.0) is not None  # fresh fallback books serve fetch_order_book too
    fake.refuse_ws = False
    await until(lambda: not stream.fallback_active and stream.book_info("BTC").source == "stream")
    stopped = fake.requests.count(("GET", "/v1/orderbook"))
    mark = len(books)
    await until(lambda: len(books) >= mark + 5)
    assert fake.requests.count(("GET", "/v1/orderbook")) == stopped
    consumer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await consumer
    await agen.aclose()
