"""Public REST against the fake Binance: books, rules cache, weights, 429/418/-1021/5xx/malformed/slow/drop."""

from __future__ import annotations

import logging
import time
from decimal import Decimal

import pytest
from arbframe_exchange_binance.exchange import TESTNET_BASE_URL, TESTNET_WS_URL, BinanceExchange
from prometheus_client import generate_latest

from arbframe import Banned, InvalidRequest, RateLimited, VenueUnavailable

from .conftest import sent

D = Decimal


async def test_books_and_ticker_are_exact_and_mapped(fake, make_binance):
    ex = await make_binance(mode="paper", api_key="", api_secret="")
    fake.silent = True  # freeze the books (no pushes, no steps)
    fake.set_book("BTCUSDT", [("60000.01000000", "0.12345678"), ("60000.00", "1")],
                  [("60000.02", "0.5"), ("60000.50", "2")])
    book = await ex.fetch_order_book("BTC", depth=2)
    assert book.symbol == "BTC" and book.exchange == "binance" and not book.simulated
    assert book.bids[0].price == D("60000.01") and book.bids[0].qty == D("0.12345678")
    assert [lvl.price for lvl in book.asks] == [D("60000.02"), D("60000.5")]
    quote = await ex.fetch_ticker("BTC")
    assert (quote.bid, quote.ask) == (D("60000.01"), D("60000.02"))
    last = fake.received[-1]
    assert last.path == "/api/v3/ticker/bookTicker" and last.query == "symbol=BTCUSDT"
    depth_req = [r for r in fake.received if r.path == "/api/v3/depth"][-1]
    assert depth_req.query == "symbol=BTCUSDT&limit=2"
    assert "X-MBX-APIKEY" not in depth_req.headers
    assert ex.market_of("BTC") == "BTCUSDT" and ex.symbol_of("BTCUSDT") == "BTC" and ex.symbol_of("ETHUSDT") == "ETH"


async def test_symbol_map_overrides(fake, make_binance):
    ex = await make_binance(mode="paper", symbol_map={"XBT": "BTCUSDT"}, symbols=["XBT"])
    assert ex.market_of("XBT") == "BTCUSDT" and ex.symbol_of("BTCUSDT") == "XBT"
    assert (await ex.fetch_order_book("XBT", 5)).symbol == "XBT"


async def test_exchange_info_is_loaded_once_and_cached(fake, make_binance):
    ex = await make_binance(mode="paper")
    info_requests = [r for r in fake.received if r.path == "/api/v3/exchangeInfo"]
    assert len(info_requests) == 1
    assert info_requests[0].query == "symbols=%5B%22BTCUSDT%22%2C%22ETHUSDT%22%5D"
    for _ in range(5):
        await ex.fetch_order_book("BTC", 5)
        await ex.fetch_order_book("ETH", 5)
    assert sent(fake, "/api/v3/exchangeInfo") == 1
    rules = ex.market_rules("BTC")
    assert rules.tick_size == D("0.01") and rules.step_size == D("0.00001") and rules.min_notional == D("5")
    await ex.fetch_order_book("XRP", 5)  # an unknown symbol loads its rules on first use
    assert ex.market_rules("XRP").step_size == D("0.1")
    assert sent(fake, "/api/v3/exchangeInfo") == 2


async def test_weights_are_tracked_client_side_and_from_the_header(fake, make_binance):
    ex = await make_binance(mode="paper")
    before = ex.limiter.used("weight")
    await ex.fetch_order_book("BTC", 5)  # depth limit 5 -> weight 5
    assert ex.limiter.used("weight") == before + 5
    await ex.fetch_order_book("BTC", 600)  # limit 600 -> weight 50
    assert ex.limiter.used("weight") == before + 5 + 50
    fake.weight_used[fake.now_ms() // 60000] += 1000  # another client on the same IP
    await ex.fetch_order_book("BTC", 1)
    assert ex.limiter.used("weight") == fake.used_weight >= 1000 + before + 5 + 50 + 2


async def test_429_waits_retry_after_then_succeeds(fake, make_binance):
    ex = await make_binance(mode="paper")
    fake.inject("rate_limited", path="/api/v3/depth", retry_after=1)
    started = time.monotonic()
    book = await ex.fetch_order_book("BTC", 5)
    assert time.monotonic() - started >= 0.95
    assert book.bids and sent(fake, "/api/v3/depth") == 2
    text = generate_latest(ex.context.registry).decode()
    assert 'arbframe_exchange_requests_total{endpoint="/api/v3/depth",exchange="binance",status="429"} 1.0' in text
    assert 'arbframe_exchange_errors_total{exchange="binance",kind="rate_limited"} 1.0' in text


async def test_429_with_too_long_retry_after_raises_and_blocks_the_limiter(fake, make_binance):
    ex = await make_binance(mode="paper", max_retry_after_seconds=5)
    fake.inject("rate_limited", path="/api/v3/depth", retry_after=30)
    with pytest.raises(RateLimited) as caught:
        await ex.fetch_order_book("BTC", 5)
    assert caught.value.retry_after == 30 and caught.value.retry_safe
    assert ex.limiter.delay("/api/v3/depth")[1] > 29, "the next request must wait out Retry-After"


async def test_429_that_exhausts_retries_still_blocks_the_limiter(fake, make_binance):
    ex = await make_binance(mode="paper", max_retries=0)
    fake.inject("rate_limited", path="/api/v3/depth", retry_after=7)
    with pytest.raises(RateLimited):
        await ex.fetch_order_book("BTC", 5)
    assert sent(fake, "/api/v3/depth") == 1
    assert 6 < ex.limiter.delay("/api/v3/depth")[1] <= 7


async def test_418_stops_every_request_and_reports(fake, make_binance, caplog):
    caplog.set_level(logging.ERROR, logger="arbframe.binance")
    ex = await make_binance(mode="paper")
    fake.inject("banned", path="/api/v3/depth", retry_after=120)
    with pytest.raises(Banned):
        await ex.fetch_order_book("BTC", 5)
    count = len(fake.requests)
    with pytest.raises(Banned):
        await ex.fetch_order_book("ETH", 5)
    with pytest.raises(Banned):
        await ex.fetch_ticker("BTC")
    assert len(fake.requests) == count, "nothing may be sent while banned"
    assert [r.getMessage() for r in caplog.records if "banned" in r.getMessage()] == [
        "binance: IP banned by the exchange (HTTP 418) for 120s; all requests stopped"]
    health = await ex.health_probe()
    assert health.status.value == "ERROR" and "418" in health.message
    assert ex.context.registry.get_sample_value("arbframe_exchange_errors_total",
                                                {"exchange": "binance", "kind": "banned"}) == 3


@pytest.mark.parametrize("kind", ["unavailable", "malformed", "drop"])
async def test_gets_are_retried_after_transient_failures(fake, make_binance, kind):
    ex = await make_binance(mode="paper")
    fake.inject(kind, 2, path="/api/v3/depth")
    book = await ex.fetch_order_book("BTC", 5)
    assert book.bids and sent(fake, "/api/v3/depth") == 3


async def test_slow_answer_times_out_and_is_retried(fake, make_binance):
    ex = await make_binance(mode="paper", timeout_seconds=0.3)
    fake.inject("timeout", path="/api/v3/ticker/bookTicker", delay=1.0)
    assert (await ex.fetch_ticker("BTC")).bid > 0
    assert 'status="timeout"' in generate_latest(ex.context.registry).decode()


async def test_retries_are_bounded(fake, make_binance):
    ex = await make_binance(mode="paper", max_retries=2)
    fake.inject("unavailable", 10, path="/api/v3/depth")
    with pytest.raises(VenueUnavailable):
        await ex.fetch_order_book("BTC", 5)
    assert sent(fake, "/api/v3/depth") == 3


async def test_api_errors_are_typed_and_not_retried(fake, make_binance):
    ex = await make_binance(mode="paper")
    fake.inject("venue_error", path="/api/v3/depth", code=-1121, msg="Invalid symbol.")
    with pytest.raises(InvalidRequest) as caught:
        await ex.fetch_order_book("BTC", 5)
    assert caught.value.code == -1121 and caught.value.kind == "invalid_request"
    assert sent(fake, "/api/v3/depth") == 1


async def test_rate_limit_setting_spaces_requests(fake, make_binance):
    ex = await make_binance(mode="paper", rate_limit=20)
    await ex.fetch_ticker("BTC")  # warm up
    started = time.monotonic()
    for _ in range(30):
        await ex.fetch_ticker("BTC")
    elapsed = time.monotonic() - started
    assert elapsed >= 0.5, f"30 requests at 20/s took only {elapsed:.3f}s"
    assert 'group="requests"' in generate_latest(ex.context.registry).decode()


def test_testnet_switch_uses_testnet_urls():
    ex = BinanceExchange({"testnet": True}, None)
    assert ex.config["base_url"] == TESTNET_BASE_URL and ex.config["ws_url"] == TESTNET_WS_URL
    custom = BinanceExchange({"testnet": True, "base_url": "http://127.0.0.1:1"}, None)
    assert custom.config["base_url"] == "http://127.0.0.1:1"


async def test_unknown_symbol_is_remembered_and_does_not_spoil_the_others(fake, make_binance):
    ex = await make_binance(mode="paper")
    before = sent(fake, "/api/v3/exchangeInfo")
    with pytest.raises(InvalidRequest):
        await ex.fetch_order_book("FOO", 5)  # the depth request itself says "Invalid symbol."
    with pytest.raises(InvalidRequest):
        await ex.symbol_rules("FOO")
    asked = sent(fake, "/api/v3/exchangeInfo")
    assert asked > before
    with pytest.raises(InvalidRequest):
        await ex.symbol_rules("FOO")
    assert sent(fake, "/api/v3/exchangeInfo") == asked, "an unknown market is not asked for again"
    await ex.fetch_order_book("XRP", 5)  # a real one still loads
    assert ex.market_rules("XRP").step_size == D("0.1")
