"""Public REST against the fake Binance: books, rules cache, weights, 429/418/-1021/5xx/malformed/slow/drop."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from arbframe_exchange_binance import errors as E
from prometheus_client import generate_latest

D = Decimal


def _count(fake, path, method="GET"):
    return sum(1 for r in fake.requests if r["path"] == path and r["method"] == method)


async def test_books_and_ticker_are_exact_and_mapped(fake, make_binance):
    ex = await make_binance(mode="paper", api_key="", api_secret="")
    fake.silent = True  # freeze the books (no pushes, no ticks)
    fake.set_book("BTCUSDT", [("60000.01000000", "0.12345678"), ("60000.00", "1")],
                  [("60000.02", "0.5"), ("60000.50", "2")])
    book = await ex.fetch_order_book("BTC", depth=2)
    assert book.symbol == "BTC" and book.exchange == "binance" and not book.simulated
    assert book.bids[0].price == D("60000.01") and book.bids[0].qty == D("0.12345678")
    assert [lvl.price for lvl in book.asks] == [D("60000.02"), D("60000.5")]
    quote = await ex.fetch_ticker("BTC")
    assert (quote.bid, quote.ask) == (D("60000.01"), D("60000.02"))
    last = fake.requests[-1]
    assert last["path"] == "/api/v3/ticker/bookTicker" and last["query"] == "symbol=BTCUSDT"
    depth_req = [r for r in fake.requests if r["path"] == "/api/v3/depth"][-1]
    assert depth_req["query"] == "symbol=BTCUSDT&limit=2"
    assert "X-MBX-APIKEY" not in depth_req["headers"]
    assert ex.market_of("BTC") == "BTCUSDT" and ex.symbol_of("BTCUSDT") == "BTC" and ex.symbol_of("ETHUSDT") == "ETH"


async def test_symbol_map_overrides(fake, make_binance):
    ex = await make_binance(mode="paper", symbol_map={"XBT": "BTCUSDT"}, symbols=["XBT"])
    assert ex.market_of("XBT") == "BTCUSDT" and ex.symbol_of("BTCUSDT") == "XBT"
    book = await ex.fetch_order_book("XBT", 5)
    assert book.symbol == "XBT"


async def test_exchange_info_is_loaded_once_and_cached(fake, make_binance):
    ex = await make_binance(mode="paper")
    info_requests = [r for r in fake.requests if r["path"] == "/api/v3/exchangeInfo"]
    assert len(info_requests) == 1
    assert info_requests[0]["query"] == "symbols=%5B%22BTCUSDT%22%2C%22ETHUSDT%22%5D"
    for _ in range(5):
        await ex.fetch_order_book("BTC", 5)
        await ex.fetch_order_book("ETH", 5)
    assert _count(fake, "/api/v3/exchangeInfo") == 1
    rules = ex.market_rules("BTC")
    assert rules.tick_size == D("0.01") and rules.step_size == D("0.00001") and rules.min_notional == D("5")
    await ex.fetch_order_book("XRP", 5)  # an unknown symbol loads its rules on first use
    assert ex.market_rules("XRP").step_size == D("0.1")
    assert _count(fake, "/api/v3/exchangeInfo") == 2


async def test_weights_are_tracked_client_side_and_from_the_header(fake, make_binance):
    ex = await make_binance(mode="paper")
    before = ex.limiter.used_weight
    await ex.fetch_order_book("BTC", 5)  # depth limit 5 -> weight 5
    assert ex.limiter.used_weight == before + 5
    fake.weight_used[int(fake.now_ms() // 60000)] += 1000  # another client on the same IP
    await ex.fetch_order_book("BTC", 1)
    assert ex.limiter.used_weight >= 1000 + before + 5 + 2
    assert ex.limiter.used_weight == fake.used_weight


async def test_429_waits_retry_after_then_succeeds(fake, make_binance):
    ex = await make_binance(mode="paper")
    fake.fail("/api/v3/depth", "429", retry_after=1)
    started = time.monotonic()
    book = await ex.fetch_order_book("BTC", 5)
    assert time.monotonic() - started >= 0.95
    assert book.bids
    assert _count(fake, "/api/v3/depth") == 2
    text = generate_latest(ex.context.registry).decode()
    assert 'arbframe_exchange_rate_limit_waits_total{exchange="binance",group="retry_after"} 1.0' in text
    assert 'arbframe_exchange_requests_total{endpoint="/api/v3/depth",exchange="binance",status="429"} 1.0' in text


async def test_429_with_too_long_retry_after_raises(fake, make_binance):
    ex = await make_binance(mode="paper", max_retry_after_seconds=5)
    fake.fail("/api/v3/depth", "429", retry_after=30)
    with pytest.raises(E.BinanceRateLimited) as caught:
        await ex.fetch_order_book("BTC", 5)
    assert caught.value.retry_after == 30


async def test_418_stops_every_request_and_reports(fake, make_binance, caplog):
    ex = await make_binance(mode="paper")
    fake.fail("/api/v3/depth", "418", retry_after=120)
    with pytest.raises(E.BinanceBanned):
        await ex.fetch_order_book("BTC", 5)
    sent = len(fake.requests)
    with pytest.raises(E.BinanceBanned):
        await ex.fetch_order_book("ETH", 5)
    with pytest.raises(E.BinanceBanned):
        await ex.fetch_ticker("BTC")
    assert len(fake.requests) == sent, "nothing may be sent while banned"
    assert any("banned" in r.getMessage().lower() for r in caplog.records)
    health = await ex.health_probe()
    assert health.status.value == "ERROR" and "418" in health.message
    text = generate_latest(ex.context.registry).decode()
    assert 'arbframe_exchange_errors_total{exchange="binance",kind="banned"} 1.0' in text


@pytest.mark.parametrize("kind", ["500", "malformed", "drop"])
async def test_gets_are_retried_after_server_errors(fake, make_binance, kind):
    ex = await make_binance(mode="paper")
    fake.fail("/api/v3/depth", kind, times=2)
    book = await ex.fetch_order_book("BTC", 5)
    assert book.bids and _count(fake, "/api/v3/depth") == 3


async def test_slow_answer_times_out_and_is_retried(fake, make_binance):
    ex = await make_binance(mode="paper", timeout_seconds=0.3)
    fake.fail("/api/v3/ticker/bookTicker", "slow", delay=1.0)
    quote = await ex.fetch_ticker("BTC")
    assert quote.bid > 0
    text = generate_latest(ex.context.registry).decode()
    assert 'status="timeout"' in text


async def test_retries_are_bounded(fake, make_binance):
    ex = await make_binance(mode="paper", max_retries=2)
    fake.fail("/api/v3/depth", "500", times=10)
    with pytest.raises(E.BinanceServerError):
        await ex.fetch_order_book("BTC", 5)
    assert _count(fake, "/api/v3/depth") == 3


async def test_api_errors_are_typed_and_not_retried(fake, make_binance):
    ex = await make_binance(mode="paper")
    fake.fail("/api/v3/depth", "error", status=400, code=-1121, msg="Invalid symbol.")
    with pytest.raises(E.BinanceAPIError) as caught:
        await ex.fetch_order_book("BTC", 5)
    assert caught.value.code == -1121
    assert _count(fake, "/api/v3/depth") == 1


async def test_rate_limit_setting_spaces_requests(fake, make_binance):
    ex = await make_binance(mode="paper", rate_limit=20)
    await ex.fetch_ticker("BTC")  # warm up
    started = time.monotonic()
    for _ in range(30):
        await ex.fetch_ticker("BTC")
    elapsed = time.monotonic() - started
    assert elapsed >= 0.5, f"30 requests at 20/s (bucket of 20) took only {elapsed:.3f}s"
    text = generate_latest(ex.context.registry).decode()
    assert 'group="requests"' in text


async def test_testnet_switch_uses_testnet_urls():
    from arbframe_exchange_binance.exchange import TESTNET_BASE_URL, TESTNET_WS_URL, BinanceExchange

    ex = BinanceExchange({"testnet": True}, None)
    assert ex.config["base_url"] == TESTNET_BASE_URL and ex.config["ws_url"] == TESTNET_WS_URL
    custom = BinanceExchange({"testnet": True, "base_url": "http://127.0.0.1:1"}, None)
    assert custom.config["base_url"] == "http://127.0.0.1:1"


async def test_unknown_symbol_is_remembered_and_does_not_spoil_the_others(fake, make_binance):
    ex = await make_binance(mode="paper")
    before = _count(fake, "/api/v3/exchangeInfo")
    with pytest.raises(E.BinanceAPIError):
        await ex.fetch_order_book("FOO", 5)  # the depth request itself says "Invalid symbol."
    with pytest.raises(E.BinanceFilterError):
        await ex.symbol_rules("FOO")
    asked = _count(fake, "/api/v3/exchangeInfo")
    assert asked > before
    with pytest.raises(E.BinanceFilterError):
        await ex.symbol_rules("FOO")
    assert _count(fake, "/api/v3/exchangeInfo") == asked, "an unknown market is not asked for again"
    await ex.fetch_order_book("XRP", 5)  # a real one still loads
    assert ex.market_rules("XRP").step_size == D("0.1")


async def test_429_with_too_long_retry_after_still_blocks_the_limiter(fake, make_binance):
    ex = await make_binance(mode="paper", max_retry_after_seconds=5)
    fake.fail("/api/v3/depth", "429", retry_after=30)
    with pytest.raises(E.BinanceRateLimited):
        await ex.fetch_order_book("BTC", 5)
    assert ex.limiter.blocked_for() > 29, "the next request must wait out Retry-After, not go out at once"


async def test_429_that_exhausts_retries_still_blocks_the_limiter(fake, make_binance):
    ex = await make_binance(mode="paper", max_retries=0)
    fake.fail("/api/v3/depth", "429", retry_after=7)
    with pytest.raises(E.BinanceRateLimited):
        await ex.fetch_order_book("BTC", 5)
    assert _count(fake, "/api/v3/depth") == 1
    assert 6 < ex.limiter.blocked_for() <= 7
