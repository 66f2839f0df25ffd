"""WebSocket market streams against the fake Binance (arbframe.BookStream supervising): combined streams, pings,
reconnect, rollover without a gap or a duplicate (by age, on request, on serverShutdown), the REST fallback of
fetch_order_book and of the stream iterator itself, no task left behind."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from arbframe_exchange_binance.stream import stream_name, stream_url
from prometheus_client import generate_latest

from .conftest import sent

D = Decimal


async def _until(predicate, timeout=5.0, step=0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(step)
    return predicate()


def _collect(agen):
    """(the books so far, the task appending every book ``agen`` yields to it)."""
    out = []

    async def run():
        async for book in agen:
            out.append(book)

    return out, asyncio.ensure_future(run())


async def _stop(consumer, agen):
    consumer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await consumer
    await agen.aclose()


async def _take(agen, n, timeout=5.0):
    out = []

    async def run():
        async for book in agen:
            out.append(book)
            if len(out) >= n:
                return

    await asyncio.wait_for(run(), timeout)
    return out


def test_stream_names_and_urls():
    assert stream_name("BTCUSDT", 1) == "btcusdt@bookTicker"
    assert stream_name("BTCUSDT", 5) == "btcusdt@depth5@100ms"
    assert stream_name("BTCUSDT", 7, "1000ms") == "btcusdt@depth10"
    assert stream_name("BTCUSDT", 50) == "btcusdt@depth20@100ms"
    assert stream_url("wss://stream.binance.com:9443", ["btcusdt@bookTicker"]) == \
        "wss://stream.binance.com:9443/stream?streams=btcusdt@bookTicker"
    assert stream_url("wss://x/", ["a@bookTicker", "b@bookTicker"]) == "wss://x/stream?streams=a@bookTicker/b@bookTicker"


async def test_book_ticker_stream(fake, make_binance):
    ex = await make_binance(mode="paper", symbols=["BTC"])
    agen = ex.stream_order_books(["BTC"], depth=1)
    books = await _take(agen, 3)
    await agen.aclose()
    assert all(b.symbol == "BTC" and len(b.bids) == 1 and len(b.asks) == 1 for b in books)
    assert type(books[0].bids[0].price) is Decimal and books[0].best_bid < books[0].best_ask
    assert fake.connections[0].streams == ["btcusdt@bookTicker"]


async def test_combined_partial_depth_streams(fake, make_binance):
    ex = await make_binance(mode="paper", symbols=["BTC", "ETH"])
    agen = ex.stream_order_books(["BTC", "ETH"], depth=5)
    books = await _take(agen, 10)
    await agen.aclose()
    assert {b.symbol for b in books} == {"BTC", "ETH"}
    assert all(len(b.bids) == 5 and len(b.asks) == 5 for b in books)
    assert fake.connections[0].streams == ["btcusdt@depth5@100ms", "ethusdt@depth5@100ms"]
    eth = next(b for b in books if b.symbol == "ETH")
    assert abs(eth.best_bid - fake.mids["ETH"]) < D(1)


async def test_server_pings_are_answered_with_their_payload(fake, make_binance):
    fake.ping_interval, fake.pong_timeout = 0.05, 2.0
    ex = await make_binance(mode="paper", symbols=["BTC"])
    agen = ex.stream_order_books(["BTC"], depth=1)
    await _take(agen, 1)
    conn = fake.connections[0]
    assert await _until(lambda: len(conn.pongs) >= 3, timeout=5)
    assert conn.closed_at is None, "a connection that answers pings stays open"
    assert conn.pongs[:3] == [b"p1", b"p2", b"p3"]
    await agen.aclose()


@pytest.mark.parametrize("how", ["drop_ws", "ws_drop_fault"])
async def test_dropped_connection_reconnects_and_resubscribes(fake, make_binance, how):
    ex = await make_binance(mode="paper", symbols=["BTC", "ETH"])
    agen = ex.stream_order_books(["BTC", "ETH"], depth=5)
    await _take(agen, 2)
    if how == "drop_ws":
        assert await fake.drop_ws() == 1
    else:  # the shared fault vocabulary: the next request closes every WebSocket client, then is served
        fake.inject("ws_drop")
        await ex.rest_order_book("BTC", 5)
    books = await _take(agen, 6)
    assert len(fake.connections) >= 2
    assert fake.connections[-1].streams == fake.connections[0].streams
    assert {b.symbol for b in books} == {"BTC", "ETH"}
    await agen.aclose()
    text = generate_latest(ex.context.registry).decode()
    assert 'arbframe_exchange_ws_reconnects_total{exchange="binance"} 1.0' in text


async def test_silent_stream_is_treated_as_dead(fake, make_binance):
    ex = await make_binance(mode="paper", symbols=["BTC"], ws_silence_timeout_seconds=0.3)
    agen = ex.stream_order_books(["BTC"], depth=1)
    await _take(agen, 1)
    fake.silent = True
    assert await _until(lambda: len(fake.connections) >= 2, timeout=3)
    fake.silent = False
    assert await _take(agen, 3)
    await agen.aclose()


async def test_fetch_order_book_falls_back_to_rest_while_the_stream_is_down(fake, make_binance):
    ex = await make_binance(mode="paper", symbols=["BTC"], use_websocket=True, stream_max_age_seconds=0.5)
    assert await _until(lambda: ex.stream is not None and ex.stream.latest("BTC") is not None, timeout=3)
    fake.refuse_ws = True
    await fake.drop_ws()
    assert await _until(lambda: ex.stream.latest("BTC") is None, timeout=3)  # its connection is down
    before = [p for _, p in fake.requests].count("/api/v3/depth")
    book = await ex.fetch_order_book("BTC", 5)
    assert book.symbol == "BTC" and [p for _, p in fake.requests].count("/api/v3/depth") == before + 1
    fake.refuse_ws = False  # back up: books come from the stream again
    assert await _until(lambda: ex.stream.latest("BTC") is not None, timeout=5)
    await ex.fetch_order_book("BTC", 5)
    assert [p for _, p in fake.requests].count("/api/v3/depth") == before + 1


async def test_rollover_opens_the_new_connection_before_closing_the_old(fake, make_binance):
    fake.push_interval = 0.01
    ex = await make_binance(mode="paper", symbols=["BTC"], ws_max_connection_age_seconds=0.3)
    seen: list[int] = []  # update id of every book the parser delivers
    parse = ex.stream_parser.parse

    def recording(text):
        books = parse(text)
        if books:
            seen.append(ex.stream_parser.last_ids["BTC"])
        return books

    ex.stream_parser.parse = recording  # before the stream is built: its spec takes this parse
    agen = ex.stream_order_books(["BTC"], depth=1)
    deadline = time.monotonic() + 1.4
    async for _book in agen:
        if time.monotonic() > deadline:
            break
    await agen.aclose()
    stream = ex.stream
    assert stream.rollovers >= 2 and stream.reconnects == 0
    conns = fake.connections
    assert len(conns) >= 3
    for old, new in itertools.pairwise(conns):
        assert old.closed_at is None or old.closed_at >= new.opened_at, "old closed before the new one opened"
    assert seen == sorted(set(seen)), "an update was delivered twice during a rollover"
    assert len(seen) > 20


async def test_fetch_order_book_serves_the_stream_when_fresh(fake, make_binance):
    ex = await make_binance(mode="paper", symbols=["BTC"], use_websocket=True, stream_max_age_seconds=0.5)
    assert await _until(lambda: ex.stream is not None and ex.stream.latest("BTC") is not None, timeout=3)
    depth_before = [p for _, p in fake.requests].count("/api/v3/depth")
    book = await ex.fetch_order_book("BTC", 5)
    assert len(book.bids) == 5
    assert [p for _, p in fake.requests].count("/api/v3/depth") == depth_before, "served from the stream"
    assert "arbframe_exchange_ws_message_age_seconds" in generate_latest(ex.context.registry).decode()
    fake.silent = True  # stale stream -> REST
    assert await _until(lambda: ex.stream.latest("BTC", 0.5) is None, timeout=3)
    await ex.fetch_order_book("BTC", 5)
    assert [p for _, p in fake.requests].count("/api/v3/depth") == depth_before + 1
    deep = await ex.fetch_order_book("BTC", 50)  # deeper than a partial depth stream: REST
    assert len(deep.bids) == 50


async def test_new_symbols_widen_the_running_stream_in_place(fake, make_binance):
    ex = await make_binance(mode="paper", symbols=["BTC"], use_websocket=True, stream_max_age_seconds=1.0,
                            connect=False)
    agen = ex.stream_order_books(["BTC"], depth=5)
    await _take(agen, 2)
    stream = ex.stream
    assert fake.open_connections()[-1].streams == ["btcusdt@depth5@100ms"]
    await ex.fetch_order_book("XRP", 10)  # not streamed yet: REST now, and the stream widens to XRP, depth 10
    assert ex.stream is stream and set(stream.symbols) == {"BTC", "XRP"} and stream.depth == 10
    assert await _until(lambda: stream.rollovers == 1, timeout=3)
    books = await _take(agen, 6)  # the BTC iterator keeps flowing across the change (5 of the 10 levels)
    assert all(b.symbol == "BTC" and len(b.bids) == 5 for b in books)
    assert fake.open_connections()[-1].streams == ["btcusdt@depth10@100ms", "xrpusdt@depth10@100ms"]
    assert await _until(lambda: stream.latest("XRP") is not None, timeout=3)
    xrp = await ex.fetch_order_book("XRP", 10)
    assert len(xrp.bids) == 10 and xrp.best_bid < xrp.best_ask
    await agen.aclose()


async def test_close_ends_running_iterators(fake, make_binance):
    ex = await make_binance(mode="paper", symbols=["BTC"])
    agen = ex.stream_order_books(["BTC"], depth=1)
    await _take(agen, 1)
    got = []

    async def drain():
        async for book in agen:
            got.append(book)
        return got

    task = asyncio.ensure_future(drain())
    assert await _until(lambda: got, timeout=3)  # the consumer is inside its loop when the driver closes
    await ex.close()
    assert isinstance(await asyncio.wait_for(task, 3), list)


@pytest.mark.parametrize("state", ["streaming", "connection_down"])
async def test_close_leaves_no_task_behind(fake, make_binance, state):
    """Closing the combined stream (while it streams, or while its connection is down and it reconnects) must
    not leave a pending task behind (a leaked task is destroyed pending when the loop closes)."""
    ex = await make_binance(mode="paper", symbols=["BTC", "ETH"])
    before = asyncio.all_tasks()
    agen = ex.stream_order_books(["BTC", "ETH"], depth=5)
    await _take(agen, 2)
    if state == "connection_down":
        fake.refuse_ws = True
        await fake.drop_ws()
        assert await _until(lambda: not ex.stream.connected.is_set(), timeout=3)
    await agen.aclose()
    await ex.close()
    await fake.drop_ws()  # the fake's own connection handlers end too

    def leftover():
        return [t for t in asyncio.all_tasks() - before if not t.done() and t is not asyncio.current_task()]

    await _until(lambda: not leftover(), timeout=2)
    assert leftover() == []


async def test_stream_decodes_with_the_stdlib_json_too(fake, make_binance, monkeypatch):
    import json

    import arbframe_exchange_binance.stream as stream_mod

    monkeypatch.setattr(stream_mod, "_loads", json.loads)  # as without the optional orjson extra
    ex = await make_binance(mode="paper", symbols=["BTC", "ETH"])
    agen = ex.stream_order_books(["BTC", "ETH"], depth=5)
    books = await _take(agen, 6)
    await agen.aclose()
    assert {b.symbol for b in books} == {"BTC", "ETH"} and all(len(b.bids) == 5 for b in books)


def _record_update_ids(ex) -> list[int]:
    """Every update id the parser delivers (wrap it before the stream is built: its spec takes this parse)."""
    seen: list[int] = []
    parse = ex.stream_parser.parse

    def recording(text):
        books = parse(text)
        if books:
            seen.append(ex.stream_parser.last_ids["BTC"])
        return books

    ex.stream_parser.parse = recording
    return seen


def test_server_shutdown_events_ask_for_a_rollover():
    from arbframe_exchange_binance.stream import BookParser

    asked = []
    parser = BookParser(lambda market: market[:-4], on_shutdown=lambda: asked.append(1))
    assert parser.parse('{"e": "serverShutdown", "E": 1770123456789}') == []
    assert parser.parse('{"event": {"e": "serverShutdown", "E": 1770123456789}}') == []  # the WS API's wrapping
    assert parser.parse('{"e": "floodEnd"}') == [] and parser.parse('{"result": null, "id": 1}') == []
    assert len(asked) == 2 and parser.shutdowns == 2


@pytest.mark.parametrize("close_after", [None, 0.3], ids=["announced", "announced_then_closed"])
async def test_server_shutdown_rolls_over_without_a_gap(fake, make_binance, close_after):
    """Binance announces a disconnect with serverShutdown: the stream opens a new connection, switches over once it
    delivers and closes the old one itself -- every update id arrives once, in order, none missing, and no
    ordinary reconnect happens (also when the server closes the old connection soon after the notice)."""
    fake.push_interval = 0.01
    ex = await make_binance(mode="paper", symbols=["BTC"])
    seen = _record_update_ids(ex)
    before = asyncio.all_tasks()
    agen = ex.stream_order_books(["BTC"], depth=1)
    got, consumer = _collect(agen)
    assert await _until(lambda: len(seen) >= 5)
    stream = ex.stream
    old = fake.open_connections()
    assert len(old) == 1
    assert await fake.server_shutdown(close_after=close_after) == old
    assert await _until(lambda: stream.rollovers == 1)
    assert await _until(lambda: old[0].closed_at is not None)  # the announced connection is gone
    new = fake.connections[-1]
    assert new is not old[0] and new.opened_at < old[0].closed_at, "the new connection came before the old went"
    mark = len(seen)
    assert await _until(lambda: len(seen) >= mark + 10)  # books keep flowing on the new connection
    await _stop(consumer, agen)
    assert ex.stream_parser.shutdowns == 1 and stream.reconnects == 0 and len(fake.connections) == 2
    assert seen == list(range(seen[0], seen[0] + len(seen))), "an update was missed or repeated across the rollover"
    assert len(got) == len(seen), "every update reached the consumer"
    await ex.close()
    await fake.drop_ws()

    def leftover():
        return [t for t in asyncio.all_tasks() - before if not t.done() and t is not asyncio.current_task()]

    await _until(lambda: not leftover(), timeout=2)
    assert leftover() == []


async def test_rollover_on_request_and_without_a_connection(fake, make_binance):
    ex = await make_binance(mode="paper", symbols=["BTC"])
    agen = ex.stream_order_books(["BTC"], depth=1)
    await _take(agen, 2)
    stream = ex.stream
    assert await asyncio.wait_for(stream.rollover(), 5) is True
    assert stream.rollovers == 1 and stream.reconnects == 0
    assert len(fake.open_connections()) == 1 and fake.connections[0].closed_at is not None
    fake.refuse_ws = True
    await fake.drop_ws()
    assert await _until(lambda: not stream.connected.is_set())
    assert await asyncio.wait_for(stream.rollover(), 1) is False  # nothing to replace: the reconnect does it
    await agen.aclose()


async def test_stream_iterator_falls_back_to_rest_while_the_socket_is_down(fake, make_binance):
    """No connection for longer than the grace: the iterator keeps yielding books, polled from REST and stamped
    with the time of their answer (source "rest" in book_info); fetch_order_book is served from them; polling
    stops once a connection delivers again."""
    ex = await make_binance(mode="paper", symbols=["BTC"], ws_rest_fallback_after_seconds=0.3,
                            ws_rest_fallback_interval_seconds=0.05)
    agen = ex.stream_order_books(["BTC"], depth=5)
    books, consumer = _collect(agen)
    assert await _until(lambda: len(books) >= 3)
    stream = ex.stream
    assert stream.book_info("BTC").source == "stream" and not stream.fallback_active
    fake.refuse_ws = True
    dropped = time.monotonic()
    await fake.drop_ws()
    polls = sent(fake, "/api/v3/depth")
    assert await _until(lambda: stream.fallback_active, timeout=3)
    assert stream.fallback_since - dropped >= 0.3 - 0.02, "REST polling started before the grace had passed"
    mark = len(books)
    assert await _until(lambda: len(books) >= mark + 3 and sent(fake, "/api/v3/depth") >= polls + 3, timeout=3)
    info = stream.book_info("BTC")
    assert info.source == "rest" and info.age < 1.0 and len(info.book.bids) == 5
    assert (datetime.now(timezone.utc) - books[-1].ts).total_seconds() < 1.0  # its age is the REST answer's
    served = sent(fake, "/api/v3/depth")
    book = await ex.fresh_order_book("BTC", 5)  # the fallback's book is fresh: no request of its own
    assert book.best_bid is not None and sent(fake, "/api/v3/depth") <= served + 1
    fake.refuse_ws = False
    assert await _until(lambda: not stream.fallback_active and stream.book_info("BTC").source == "stream", timeout=5)
    stopped = sent(fake, "/api/v3/depth")
    mark = len(books)
    assert await _until(lambda: len(books) >= mark + 5)
    assert sent(fake, "/api/v3/depth") == stopped, "REST polling goes on while the socket delivers"
    assert stream.fallback_rounds >= 3 and stream.fallback_books >= 3
    await _stop(consumer, agen)


async def test_rest_fallback_polls_within_the_rate_limiter_and_stays_honest_when_rest_fails(fake, make_binance):
    """The fallback takes only room the limiter has to spare (here 4 requests/s, a fifth kept back), and when REST
    fails too it yields nothing: the last book ages, as the engine's staleness checks must see it."""
    ex = await make_binance(mode="paper", symbols=["BTC"], rate_limit=4, ws_rest_fallback_after_seconds=0.1,
                            ws_rest_fallback_interval_seconds=0.01)
    agen = ex.stream_order_books(["BTC"], depth=5)
    await _take(agen, 1)
    stream = ex.stream
    fake.refuse_ws = True
    await fake.drop_ws()
    assert await _until(lambda: stream.fallback_books >= 1, timeout=3)
    start, first = time.monotonic(), sent(fake, "/api/v3/depth")
    await asyncio.sleep(1.5)  # a window of time is what is measured here
    rate = (sent(fake, "/api/v3/depth") - first) / (time.monotonic() - start)
    assert 1.0 <= rate <= 4.0 * 0.8 + 0.5, f"{rate:.1f} polls/s"
    fake.inject("unavailable", 1000, path="/api/v3/depth")
    failures = stream.fallback_failures
    assert await _until(lambda: stream.fallback_failures >= failures + 2, timeout=5)
    info = stream.book_info("BTC")
    assert info.source == "rest" and info.age > 0.1
    assert stream.latest("BTC", 0.1) is None  # too old for a 0.1 s limit: nobody gets it as fresh
    fake.clear()
    await agen.aclose()
