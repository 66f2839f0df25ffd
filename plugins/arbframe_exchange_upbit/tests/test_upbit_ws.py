"""WebSocket: subscription format, DEFAULT and SIMPLE streams, reconnect + resubscribe after drops, silence ->
dead, keep-alive PING, and the engine-facing ``fresh_order_book`` falling back to REST while the stream is down."""

from __future__ import annotations

import asyncio
import json

import pytest
from arbframe_exchange_upbit.ws import UpbitStream


async def _take(agen, n: int, timeout: float = 5.0) -> list:
    out = []

    async def run():
        async for item in agen:
            out.append(item)
            if len(out) >= n:
                return

    await asyncio.wait_for(run(), timeout)
    return out


async def _until(predicate, timeout: float = 5.0) -> None:
    async def wait():
        while not predicate():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(wait(), timeout)


@pytest.mark.parametrize("fmt", ["SIMPLE", "DEFAULT"])
async def test_stream_books_in_both_formats(make_upbit, fake, fmt: str) -> None:
    ex = await make_upbit(ws_format=fmt)
    books = await _take(ex.stream_order_books(["BTC", "XRP"], depth=5), 10)
    assert {b.symbol for b in books} == {"BTC", "XRP"}
    for book in books:
        assert len(book.bids) == 5 and book.best_bid < book.best_ask and not book.simulated
    sub = fake.ws_requests[0]
    assert sub["format"] == fmt
    assert sorted(sub["orderbook"]) == [("BTC", 15), ("XRP", 15)] and sorted(sub["ticker"]) == [("BTC", 30),
                                                                                               ("XRP", 30)]
    ticks = await _take(ex.stream_tickers(["BTC"]), 2)
    assert all(t[0] == "BTC" and t[1] > 0 for t in ticks)
    assert ex.context.registry.get_sample_value("arbframe_exchange_ws_message_age_seconds",
                                                {"exchange": "upbit"}) is not None


def test_request_message_shape() -> None:
    stream = UpbitStream(url="ws://x", fmt="SIMPLE", depth=15)
    stream.subscribe(["btc", "ETH"])
    msg = json.loads(stream.request_message())
    assert set(msg[0]) == {"ticket"}
    assert msg[1] == {"type": "orderbook", "codes": ["KRW-BTC.15", "KRW-ETH.15"]}
    assert msg[2] == {"type": "ticker", "codes": ["KRW-BTC", "KRW-ETH"]}
    assert msg[3] == {"format": "SIMPLE"}


async def test_reconnects_and_resubscribes_after_a_drop(make_upbit, fake) -> None:
    ex = await make_upbit()
    fake.drop_ws(after=3)
    books = await _take(ex.stream_order_books(["ETH"], depth=5), 12)
    assert len(books) == 12
    assert fake.ws_connections >= 2 and len(fake.ws_requests) >= 2
    assert fake.ws_requests[-1]["orderbook"] == [("ETH", 15)]
    assert ex.stream.reconnects >= 1
    assert ex.context.registry.get_sample_value("arbframe_exchange_ws_reconnects_total", {"exchange": "upbit"}) >= 1


async def test_silent_stream_is_treated_as_dead_and_reopened(make_upbit, fake) -> None:
    ex = await make_upbit(ws_silence_timeout_seconds=0.3, ws_ping_interval_seconds=0.1)
    agen = ex.stream_order_books(["BTC"], depth=5)
    await _take(agen, 2)
    fake.ws_silent = True
    await _until(lambda: fake.ws_connections >= 2)
    fake.ws_silent = False
    await _take(agen, 2)
    await agen.aclose()
    assert ex.stream.reconnects >= 1


async def test_keep_alive_pings(make_upbit, fake) -> None:
    ex = await make_upbit(ws_ping_interval_seconds=0.05)
    await _take(ex.stream_order_books(["BTC"]), 1)
    await _until(lambda: fake.ws_pings >= 2)
    assert ex.stream.alive(1.0)


async def test_server_error_message_is_reported(fake) -> None:
    stream = UpbitStream(url=fake.ws_url, fmt="NOPE", silence_timeout=1.0, ping_interval=0.5, backoff_initial=0.02)
    stream.subscribe(["BTC"])
    stream.start()
    try:
        await _until(lambda: stream.errors)
        assert stream.errors[0].startswith("WRONG_FORMAT")
    finally:
        await stream.stop()


async def test_fresh_order_book_prefers_the_stream_and_falls_back_to_rest(make_upbit, fake) -> None:
    ex = await make_upbit(use_websocket=True, symbols=["BTC"], stream_max_age_seconds=1.0)
    await _until(lambda: ex.stream.latest("BTC", 1.0) is not None)
    rest_before = len([r for r in fake.requests if r.path == "/v1/orderbook"])
    for _ in range(5):
        book = await ex.fetch_order_book("BTC", 10)
        assert len(book.bids) == 10
    assert len([r for r in fake.requests if r.path == "/v1/orderbook"]) == rest_before  # all from the stream
    # the stream dies (server silent, then dropped): books come from REST
    fake.ws_silent = True
    await _until(lambda: ex.stream.latest("BTC", 1.0) is None)
    book = await ex.fetch_order_book("BTC", 10)
    assert book.best_bid is not None
    assert len([r for r in fake.requests if r.path == "/v1/orderbook"]) == rest_before + 1
    fake.ws_silent = False


async def test_stream_that_cannot_connect_falls_back_to_rest(make_upbit, fake) -> None:
    ex = await make_upbit(use_websocket=True, ws_url="ws://127.0.0.1:9/websocket/v1")
    book = await ex.fetch_order_book("BTC", 5)
    assert book.best_bid is not None and not ex.stream.connected
    assert [r.path for r in fake.requests].count("/v1/orderbook") == 1


async def test_stop_ends_consumers(make_upbit) -> None:
    ex = await make_upbit()
    agen = ex.stream_order_books(["BTC"])
    await _take(agen, 1)
    await ex.close()
    rest = [b async for b in agen]
    assert len(rest) < 1024


async def test_symbols_added_together_are_one_new_request(make_upbit, fake) -> None:
    ex = await make_upbit()
    await _take(ex.stream_order_books(["BTC"]), 1)
    before = len(fake.ws_requests)
    for symbol in ("ETH", "XRP", "USDT"):
        ex.stream.subscribe([symbol])
    await _until(lambda: len(fake.ws_requests) > before)
    await asyncio.sleep(0.05)
    assert len(fake.ws_requests) == before + 1
    assert sorted(s for s, _ in fake.ws_requests[-1]["orderbook"]) == ["BTC", "ETH", "USDT", "XRP"]
    books = await _take(ex.stream_order_books(["USDT"]), 2)
    assert all(b.symbol == "USDT" for b in books)


async def test_every_book_mode_and_conflation(make_upbit, fake) -> None:
    ex = await make_upbit()
    every = ex.stream_order_books(["BTC"], depth=5, conflate=False)
    books = await _take(every, 5)
    stamps = [b.ts for b in books]
    assert stamps == sorted(stamps)
    await every.aclose()
    # a slow consumer of the conflating stream skips superseded books and gets the newest one
    latest = ex.stream_order_books(["BTC"], depth=5)
    first = await _take(latest, 1)
    built = ex.stream.books_built
    await _until(lambda: ex.stream.books_built >= built + 5)  # several updates arrive while we do not read
    held = ex.stream.latest("BTC", 60.0)
    newest = (await _take(latest, 1))[0]
    # conflated: the next book read is the newest one (or newer), not the one right after the first
    assert held is not None and held.ts > first[0].ts
    assert newest.ts >= held.ts
    await latest.aclose()


async def test_quiet_subscription_is_kept_alive_by_pings(make_upbit, fake) -> None:
    """No market data for several silence timeouts: the PING answers keep the connection, nothing reconnects."""
    ex = await make_upbit(ws_silence_timeout_seconds=0.4, ws_ping_interval_seconds=0.1)
    agen = ex.stream_order_books(["BTC"], depth=5)
    await _take(agen, 1)
    fake.ws_quiet = True
    pings = fake.ws_pings
    await _until(lambda: fake.ws_pings >= pings + 12)  # >= 1.2 s of quiet: three silence timeouts
    assert ex.stream.reconnects == 0 and fake.ws_connections == 1
    fake.ws_quiet = False
    await agen.aclose()


@pytest.mark.parametrize(("ping", "silence"), [(20.0, 10.0), (10.0, 10.0), (6.0, 10.0)])
async def test_keepalive_slower_than_the_watchdog_is_refused(fake, ping, silence) -> None:
    from arbframe_exchange_upbit.exchange import UpbitExchange

    from arbframe import ConfigError

    with pytest.raises(ConfigError, match="ws_ping_interval_seconds"):
        UpbitExchange({"ws_ping_interval_seconds": ping, "ws_silence_timeout_seconds": silence}, None)
    with pytest.raises(ValueError, match="at most half"):
        UpbitStream(url=fake.ws_url, ping_interval=ping, silence_timeout=silence)


def test_default_keepalive_fits_the_watchdog() -> None:
    from arbframe_exchange_upbit.exchange import DEFAULTS

    assert DEFAULTS["ws_ping_interval_seconds"] * 2 <= DEFAULTS["ws_silence_timeout_seconds"]
    stream = UpbitStream(url="ws://127.0.0.1:9")
    assert stream.ping_interval * 2 <= stream.silence_timeout
