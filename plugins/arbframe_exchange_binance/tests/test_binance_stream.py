"""WebSocket market streams against the fake Binance: single/combined, pings, reconnect, rollover, fallback."""

from __future__ import annotations

import asyncio
import itertools
import time
from decimal import Decimal

from arbframe_exchange_binance.stream import stream_name, stream_url
from prometheus_client import generate_latest

D = Decimal


async def _until(predicate, timeout=5.0, step=0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(step)
    return predicate()


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
        "wss://stream.binance.com:9443/ws/btcusdt@bookTicker"
    assert stream_url("wss://x/", ["a@bookTicker", "b@bookTicker"]) == "wss://x/stream?streams=a@bookTicker/b@bookTicker"


async def test_single_raw_book_ticker_stream(fake, make_binance):
    ex = await make_binance(mode="paper", symbols=["BTC"])
    agen = ex.stream_order_books(["BTC"], depth=1)
    books = await _take(agen, 3)
    await agen.aclose()
    assert all(b.symbol == "BTC" and len(b.bids) == 1 and len(b.asks) == 1 for b in books)
    assert type(books[0].bids[0].price) is Decimal and books[0].best_bid < books[0].best_ask
    conn = fake.connections[0]
    assert conn.streams == ["btcusdt@bookTicker"] and not conn.combined


async def test_combined_partial_depth_streams(fake, make_binance):
    ex = await make_binance(mode="paper", symbols=["BTC", "ETH"])
    agen = ex.stream_order_books(["BTC", "ETH"], depth=5)
    books = await _take(agen, 10)
    await agen.aclose()
    assert {b.symbol for b in books} == {"BTC", "ETH"}
    assert all(len(b.bids) == 5 and len(b.asks) == 5 for b in books)
    conn = fake.connections[0]
    assert conn.combined and conn.streams == ["btcusdt@depth5@100ms", "ethusdt@depth5@100ms"]
    eth = next(b for b in books if b.symbol == "ETH")
    mid = fake.books["ETHUSDT"]["mid"]
    assert abs(eth.best_bid - mid) < D(1)


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


async def test_dropped_connection_reconnects_and_resubscribes(fake, make_binance):
    ex = await make_binance(mode="paper", symbols=["BTC", "ETH"])
    agen = ex.stream_order_books(["BTC", "ETH"], depth=5)
    await _take(agen, 2)
    assert await fake.drop_ws() == 1
    books = await _take(agen, 6)
    assert len(fake.connections) >= 2
    assert fake.connections[-1].streams == fake.connections[0].streams
    assert {b.symbol for b in books} == {"BTC", "ETH"}
    await agen.aclose()
    text = generate_latest(ex.context.registry).decode()
    assert 'arbframe_exchange_ws_reconnects_total{exchange="binance"} 1.0' in text


async def test_silent_stream_is_treated_as_dead(fake, make_binance):
    ex = await make_binance(mode="paper", symbols=["BTC"], ws_silence_timeout_seconds=0.3,
                            rest_poll_interval_seconds=10)
    agen = ex.stream_order_books(["BTC"], depth=1)
    await _take(agen, 1)
    fake.silent = True
    assert await _until(lambda: len(fake.connections) >= 2, timeout=3)
    fake.silent = False
    books = await _take(agen, 3)
    assert books
    await agen.aclose()


async def test_rest_polling_fallback_while_the_stream_is_down(fake, make_binance):
    ex = await make_binance(mode="paper", symbols=["BTC"], rest_poll_interval_seconds=0.05)
    agen = ex.stream_order_books(["BTC"], depth=5)
    await _take(agen, 1)
    fake.refuse_ws = True
    await fake.drop_ws()
    depth_before = sum(1 for r in fake.requests if r["path"] == "/api/v3/depth")
    books = await _take(agen, 3)
    assert books and all(b.symbol == "BTC" for b in books)
    assert sum(1 for r in fake.requests if r["path"] == "/api/v3/depth") > depth_before
    assert ex.stream.latest["BTC"][2] == "rest"
    poller = ex.stream._poller
    assert poller is not None and not poller.done()
    fake.refuse_ws = False  # back up: polling stops
    assert await _until(lambda: ex.stream.connected, timeout=5)
    assert await _until(poller.done, timeout=5), "the poller is cancelled when the stream is back"
    await _take(agen, 3)  # a request the poller had in flight has landed by now
    polled = sum(1 for r in fake.requests if r["path"] == "/api/v3/depth")
    books = await _take(agen, 8)  # 8 pushes at 20 ms: several poll intervals (50 ms) pass
    assert sum(1 for r in fake.requests if r["path"] == "/api/v3/depth") == polled
    assert len(books) == 8 and ex.stream.latest["BTC"][2] == "ws"
    await agen.aclose()


async def test_rollover_opens_the_new_connection_before_closing_the_old(fake, make_binance):
    fake.push_interval = 0.01
    ex = await make_binance(mode="paper", symbols=["BTC"], ws_max_connection_age_seconds=0.3)
    agen = ex.stream_order_books(["BTC"], depth=1)
    await _take(agen, 1)
    stream = ex.stream
    seen: list[int] = []  # update id of every book the stream publishes
    publish = stream._publish

    def recording(symbol, book, source):
        if source == "ws":
            seen.append(stream._ids[symbol])
        publish(symbol, book, source)

    stream._publish = recording
    deadline = time.monotonic() + 1.4
    async for _book in agen:
        if time.monotonic() > deadline:
            break
    await agen.aclose()
    assert stream.rollovers >= 2 and stream.reconnects == 0
    conns = fake.connections
    assert len(conns) >= 3
    for old, new in itertools.pairwise(conns):
        assert old.closed_at is None or old.closed_at >= new.opened_at, "old closed before the new one opened"
    # every update id delivered once, in order, no gap across the rollovers
    assert seen == sorted(set(seen))
    assert seen[-1] - seen[0] + 1 == len(seen), "an update was lost during a rollover"


async def test_server_shutdown_event_triggers_a_rollover(fake, make_binance):
    ex = await make_binance(mode="paper", symbols=["BTC", "ETH"])
    agen = ex.stream_order_books(["BTC", "ETH"], depth=5)
    await _take(agen, 2)
    await fake.server_shutdown()
    assert await _until(lambda: ex.stream.rollovers == 1, timeout=3)
    assert len(fake.open_connections()) == 1 and ex.stream.reconnects == 0
    await agen.aclose()


async def test_fetch_order_book_serves_the_stream_when_fresh(fake, make_binance):
    ex = await make_binance(mode="paper", symbols=["BTC"], use_websocket=True, stream_max_age_seconds=0.5)
    assert await _until(lambda: ex.stream is not None and "BTC" in ex.stream.latest, timeout=3)
    depth_before = sum(1 for r in fake.requests if r["path"] == "/api/v3/depth")
    book = await ex.fetch_order_book("BTC", 5)
    assert len(book.bids) == 5
    assert sum(1 for r in fake.requests if r["path"] == "/api/v3/depth") == depth_before, "served from the stream"
    text = generate_latest(ex.context.registry).decode()
    assert "arbframe_exchange_ws_message_age_seconds" in text
    fake.silent = True  # stale stream -> REST
    assert await _until(lambda: ex.stream.fresh("BTC", 0.5) is None, timeout=3)
    book = await ex.fetch_order_book("BTC", 5)
    assert sum(1 for r in fake.requests if r["path"] == "/api/v3/depth") == depth_before + 1
    deep = await ex.fetch_order_book("BTC", 50)  # deeper than a partial depth stream: REST
    assert len(deep.bids) == 50


async def test_new_symbols_widen_the_running_stream_in_place(fake, make_binance):
    ex = await make_binance(mode="paper", symbols=["BTC"], use_websocket=True, stream_max_age_seconds=1.0,
                            connect=False)
    await ex.rest.open()
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
    assert await _until(lambda: "XRP" in stream.latest, timeout=3)
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
    rest = await asyncio.wait_for(task, 3)
    assert isinstance(rest, list)


async def test_stream_decodes_with_the_stdlib_json_too(fake, make_binance, monkeypatch):
    import json

    import arbframe_exchange_binance.stream as stream_mod

    monkeypatch.setattr(stream_mod, "_loads", json.loads)  # as without the optional orjson extra
    ex = await make_binance(mode="paper", symbols=["BTC", "ETH"])
    agen = ex.stream_order_books(["BTC", "ETH"], depth=5)
    books = await _take(agen, 6)
    await agen.aclose()
    assert {b.symbol for b in books} == {"BTC", "ETH"} and all(len(b.bids) == 5 for b in books)
