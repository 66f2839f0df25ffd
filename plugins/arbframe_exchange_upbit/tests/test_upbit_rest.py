"""REST against the fake server: signing checked by the server, Remaining-Req, retries, 429/418/5xx, malformed
bodies, slow answers, dropped connections, typed errors, metrics."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import aiohttp
import pytest
from arbframe_exchange_upbit import (
    UpbitAuthError,
    UpbitBanned,
    UpbitNetworkError,
    UpbitNotFound,
    UpbitOrderRejected,
    UpbitProtocolError,
    UpbitRateLimited,
    UpbitServerError,
)
from arbframe_exchange_upbit.auth import make_token
from arbframe_exchange_upbit.ratelimit import RateLimiter, parse_remaining_req
from arbframe_exchange_upbit.rest import UpbitRest

D = Decimal


def _sample(ex, name: str, **labels: str) -> float:
    value = ex.context.registry.get_sample_value(name, {"exchange": "upbit", **labels})
    return 0.0 if value is None else value


async def test_public_market_data(upbit, fake) -> None:
    assert await upbit.fetch_markets() == ["BTC", "ETH", "USDT", "XRP"]
    prices = await upbit.fetch_last_prices(["BTC", "XRP"])
    assert set(prices) == {"BTC", "XRP"} and all(type(p) is Decimal for p in prices.values())
    books = await upbit.rest_order_books(["BTC", "ETH"], depth=7)
    assert set(books) == {"BTC", "ETH"} and len(books["BTC"].bids) == 7
    expected = fake.books["BTC"][0][0][0]
    assert books["BTC"].best_bid == expected
    quote = await upbit.fetch_ticker("BTC")
    assert quote.bid == expected and quote.ask > quote.bid
    orderbook_requests = [r for r in fake.requests if r.path == "/v1/orderbook"]
    assert orderbook_requests[0].query == "markets=KRW-BTC,KRW-ETH&count=7"
    assert not any(r.authenticated for r in fake.requests if r.path != "/v1/accounts")


async def test_unknown_market_is_a_typed_error(upbit) -> None:
    with pytest.raises(UpbitNotFound) as info:
        await upbit.rest_order_book("NOPE")
    assert info.value.status == 404 and info.value.name == "404" and info.value.message == "Code not found"


async def test_private_call_is_signed_and_verified_by_the_server(upbit, fake) -> None:
    balances = await upbit.fetch_balances()
    assert balances["KRW"] == D("100000000") and balances["BTC"] == D("1")
    assert [r.status for r in fake.requests if r.path == "/v1/accounts"] == [200]
    assert fake.jwt_algs == ["HS512"]  # Upbit's guide signs with HS512


async def test_wrong_secret_is_rejected_with_upbit_error_name(make_upbit) -> None:
    ex = await make_upbit(api_secret="wrong-secret")
    with pytest.raises(UpbitAuthError) as info:
        await ex.fetch_balances()
    assert info.value.status == 401 and info.value.name == "jwt_verification"
    assert "wrong-secret" not in str(info.value)


async def test_server_rejects_a_hash_of_another_query_and_a_reused_nonce(fake) -> None:
    async with aiohttp.ClientSession() as session:
        url = f"{fake.base_url}/v1/order?uuid=abc"
        token = make_token("test-access-key", "test-secret-key", "uuid=xyz")
        async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
            body = await resp.json()
            assert resp.status == 401 and body["error"]["name"] == "invalid_query_payload"
        token = make_token("test-access-key", "test-secret-key", "uuid=abc", nonce="same")
        async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 404  # accepted, the order just does not exist
        async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 401 and (await resp.json())["error"]["name"] == "nonce_used"
        async with session.get(url) as resp:
            assert resp.status == 401 and (await resp.json())["error"]["name"] == "no_authorization_token"


async def test_remaining_req_header_is_sent_and_followed(make_upbit, fake) -> None:
    fake.group_limits["orderbook"] = 2
    ex = await make_upbit()
    await ex.rest_order_book("BTC")
    await ex.rest_order_book("BTC")
    header = None
    async with aiohttp.ClientSession() as session, session.get(f"{fake.base_url}/v1/market/all") as resp:
        header = resp.headers["Remaining-Req"]
    assert parse_remaining_req(header)[0] == "market"
    # the server said sec=0 for the orderbook group: the limiter holds the next request back
    assert ex.rest.limiter.delay("orderbook") > 0.3
    started = time.monotonic()
    await ex.rest_order_book("BTC")
    assert time.monotonic() - started > 0.3
    assert _sample(ex, "arbframe_exchange_rate_limit_waits_total", group="orderbook") == 1


def test_limiter_window_and_server_sync() -> None:
    now = [100.0]
    lim = RateLimiter(rate_limit=10, group_limits={"order": 3}, clock=lambda: now[0])
    for _ in range(3):
        assert lim.delay("order") == 0
        lim._window("order").sent.append(now[0])
        lim._global.sent.append(now[0])
    assert lim.delay("order") == pytest.approx(1.0)
    now[0] += 1.01
    assert lim.delay("order") == 0
    # the server counts 7 requests we did not see (another process): only 3 are left
    lim.observe("group=default; min=1800; sec=3")
    assert len(lim._window("default").sent) == lim.limit("default") - 3
    lim.observe("group=ticker; min=1800; sec=0")
    assert lim.delay("ticker") == pytest.approx(1.0)
    assert lim.limit("default") == 10  # the seed's overall rate_limit caps every group
    assert parse_remaining_req("group=default; min=1800; sec=29") == ("default", 29)
    assert parse_remaining_req("garbage") is None and parse_remaining_req(None) is None


async def test_limiter_paces_requests_in_real_time() -> None:
    waits = []
    lim = RateLimiter(rate_limit=20, on_wait=lambda g, s: waits.append(s))
    started = time.monotonic()
    for _ in range(25):
        await lim.acquire("ticker")
    assert time.monotonic() - started >= 0.9  # 10/s for the ticker group
    assert waits


async def test_429_backs_off_and_retries(upbit, fake) -> None:
    fake.inject("/v1/orderbook", status=429, times=2)
    book = await upbit.rest_order_book("BTC")
    assert book.best_bid is not None
    assert [r.status for r in fake.requests if r.path == "/v1/orderbook"] == [429, 429, 200]
    assert _sample(upbit, "arbframe_exchange_requests_total", endpoint="/v1/orderbook", status="429") == 2
    assert _sample(upbit, "arbframe_exchange_errors_total", kind="rate_limited") == 2


async def test_persistent_429_raises_rate_limited(upbit, fake) -> None:
    fake.inject("/v1/ticker", status=429, times=10)
    with pytest.raises(UpbitRateLimited) as info:
        await upbit.fetch_last_prices(["BTC"])
    assert info.value.name == "too_many_requests"
    assert len([r for r in fake.requests if r.path == "/v1/ticker"]) == 4  # 1 + max_retries


async def test_418_stops_all_calls_and_reports(upbit, fake) -> None:
    fake.inject("/v1/orderbook", status=418, headers={"Retry-After": "30"},
                body={"error": {"name": "blocked", "message": "IP blocked for 30 seconds"}})
    with pytest.raises(UpbitBanned) as info:
        await upbit.rest_order_book("BTC")
    assert info.value.until is not None
    sent = len(fake.requests)
    with pytest.raises(UpbitBanned):
        await upbit.fetch_markets()
    with pytest.raises(UpbitBanned):
        await upbit.fetch_balances()
    assert len(fake.requests) == sent, "nothing may be sent while banned"
    result = await upbit.health_probe()
    assert result.status.value == "ERROR" and "418" in result.message
    assert _sample(upbit, "arbframe_exchange_errors_total", kind="banned") >= 3


async def test_5xx_and_malformed_and_dropped_get_are_retried(upbit, fake) -> None:
    fake.inject("/v1/orderbook", status=500)
    fake.inject("/v1/ticker", malformed=True)
    fake.inject("/v1/market/all", drop=True)
    assert (await upbit.rest_order_book("BTC")).best_ask is not None
    assert (await upbit.fetch_last_prices(["BTC"]))["BTC"] > 0
    assert await upbit.fetch_markets()
    statuses = {p: [r.status for r in fake.requests if r.path == p] for p in
                ("/v1/orderbook", "/v1/ticker")}
    assert statuses == {"/v1/orderbook": [500, 200], "/v1/ticker": [200, 200]}
    assert _sample(upbit, "arbframe_exchange_errors_total", kind="parse") == 1
    assert _sample(upbit, "arbframe_exchange_errors_total", kind="http") == 1


async def test_persistent_failures_raise_typed_errors(upbit, fake) -> None:
    fake.inject("/v1/orderbook", status=503, times=10)
    with pytest.raises(UpbitServerError) as info:
        await upbit.rest_order_book("BTC")
    assert info.value.status == 503
    fake.inject("/v1/ticker", malformed=True, times=10)
    with pytest.raises(UpbitProtocolError):
        await upbit.fetch_last_prices(["BTC"])


async def test_slow_answer_times_out_and_get_is_retried(make_upbit, fake) -> None:
    ex = await make_upbit(timeout_seconds=0.2)
    fake.inject("/v1/orderbook", delay=1.0)
    book = await ex.rest_order_book("BTC")
    assert book.best_bid is not None
    assert _sample(ex, "arbframe_exchange_requests_total", endpoint="/v1/orderbook", status="timeout") >= 1
    fake.inject("/v1/orderbook", delay=1.0, times=10)
    with pytest.raises(UpbitNetworkError):
        await ex.rest_order_book("BTC")


async def test_unreachable_server_fails_fast() -> None:
    rest = UpbitRest(base_url="http://127.0.0.1:9", timeout=0.5, max_retries=1, backoff=0.01)
    started = time.monotonic()
    with pytest.raises(UpbitNetworkError):
        await rest.request("markets")
    await rest.close()
    assert time.monotonic() - started < 3


async def test_order_refused_by_server_carries_name_and_message(upbit, fake) -> None:
    with pytest.raises(UpbitOrderRejected) as info:
        await upbit.rest.request("place_order", body={"market": "KRW-BTC", "side": "bid", "volume": "0.01",
                                                      "price": "148000500", "ord_type": "limit"})
    assert info.value.name == "invalid_price_bid" and info.value.message
    assert _sample(upbit, "arbframe_exchange_requests_total", endpoint="/v1/orders", status="400") == 1


async def test_latency_histogram_is_recorded(upbit) -> None:
    await upbit.rest_order_book("BTC")
    count = upbit.context.registry.get_sample_value("arbframe_exchange_request_duration_seconds_count",
                                                    {"exchange": "upbit", "endpoint": "/v1/orderbook"})
    assert count == 1


async def test_concurrent_requests_share_one_session(upbit, fake) -> None:
    books = await asyncio.gather(*(upbit.rest_order_book("BTC") for _ in range(10)))
    assert len(books) == 10
