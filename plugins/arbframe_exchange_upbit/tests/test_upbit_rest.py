"""REST against the fake server: signing checked by the server, Remaining-Req, retries with backoff, 429/418/5xx,
malformed bodies, slow answers, dropped connections, error kinds, metrics."""

from __future__ import annotations

import asyncio
import random
import time
from decimal import Decimal

import aiohttp
import pytest
from arbframe_exchange_upbit.auth import make_token

from arbframe import (
    AuthenticationError,
    Banned,
    InvalidRequest,
    OrderRejected,
    ProtocolError,
    RateLimited,
    RequestTimeout,
    TransportError,
    VenueUnavailable,
)

D = Decimal


async def test_public_market_data(upbit, fake) -> None:
    assert await upbit.fetch_markets() == ["BTC", "ETH", "USDT", "XRP"]
    prices = await upbit.fetch_last_prices(["BTC", "XRP"])
    assert set(prices) == {"BTC", "XRP"} and all(type(p) is Decimal for p in prices.values())
    books = await upbit.rest_order_books(["BTC", "ETH"], depth=7)
    assert set(books) == {"BTC", "ETH"} and len(books["BTC"].bids) == 7
    bids, asks = fake.book("BTC")
    assert books["BTC"].best_bid == bids[0][0] == D(147_999_000) and books["BTC"].best_ask == asks[0][0]
    quote = await upbit.fetch_ticker("BTC")
    assert quote.bid == bids[0][0] and quote.ask == asks[0][0]
    orderbook_requests = [r for r in fake.log if r.path == "/v1/orderbook"]
    assert orderbook_requests[0].query == "markets=KRW-BTC,KRW-ETH&count=7"
    assert not any(r.authenticated for r in fake.log)


async def test_unknown_market_is_an_invalid_request(upbit, sample) -> None:
    with pytest.raises(InvalidRequest) as info:
        await upbit.rest_order_book("NOPE")
    assert info.value.status == 404 and info.value.code == "404" and "Code not found" in str(info.value)
    assert sample(upbit, "arbframe_exchange_errors_total", kind="invalid_request") == 1


async def test_private_call_is_signed_and_verified_by_the_server(upbit, fake) -> None:
    balances = await upbit.fetch_balances()
    assert balances["KRW"] == D("100000000") and balances["BTC"] == D("1")
    assert [r.status for r in fake.log if r.path == "/v1/accounts"] == [200]
    assert fake.jwt_algs == ["HS512"]  # Upbit's guide signs with HS512


async def test_wrong_secret_is_an_authentication_error_with_upbits_name(make_upbit, sample) -> None:
    ex = await make_upbit(api_secret="wrong-secret")
    with pytest.raises(AuthenticationError) as info:
        await ex.fetch_balances()
    assert info.value.status == 401 and info.value.code == "jwt_verification"
    assert "wrong-secret" not in str(info.value)
    assert sample(ex, "arbframe_exchange_errors_total", kind="authentication_error") == 1


async def test_server_rejects_a_hash_of_another_query_and_a_reused_nonce(fake) -> None:
    async with aiohttp.ClientSession() as session:
        url = f"{fake.base_url}/v1/order?uuid=abc"
        token = make_token("test-access-key", "test-secret-key", "uuid=xyz")
        async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 401 and (await resp.json())["error"]["name"] == "invalid_query_payload"
        token = make_token("test-access-key", "test-secret-key", "uuid=abc", nonce="same")
        async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 404  # accepted, the order just does not exist
        async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 401 and (await resp.json())["error"]["name"] == "nonce_used"
        async with session.get(url) as resp:
            assert resp.status == 401 and (await resp.json())["error"]["name"] == "no_authorization_token"


async def test_remaining_req_header_is_sent_and_followed(make_upbit, fake, sample) -> None:
    fake.group_limits["orderbook"] = 2
    ex = await make_upbit()
    await ex.rest_order_book("BTC")
    await ex.rest_order_book("BTC")
    async with aiohttp.ClientSession() as session, session.get(f"{fake.base_url}/v1/market/all") as resp:
        assert resp.headers["Remaining-Req"] == "group=market; min=1800; sec=8"  # connect() read the markets too
    # the server said sec=0 for the orderbook group: the limiter holds the next request back
    quota, wait = ex.rest.limiter.delay("/v1/orderbook")
    assert quota == "orderbook" and wait > 0.3
    started = time.monotonic()
    await ex.rest_order_book("BTC")
    assert time.monotonic() - started > 0.3
    assert sample(ex, "arbframe_exchange_rate_limit_waits_total", group="orderbook") == 1


async def test_group_limits_pace_requests_in_real_time(make_upbit) -> None:
    ex = await make_upbit(rate_limit=20, group_limits={})  # Upbit's 10/s for the ticker group
    started = time.monotonic()
    await asyncio.gather(*(ex.fetch_last_prices(["BTC"]) for _ in range(12)))
    assert time.monotonic() - started >= 0.9  # 12 requests at 10/s need a second window


async def test_429_is_retried_after_a_backoff(upbit, fake, sample) -> None:
    fake.inject("rate_limited", 2, path="/v1/orderbook")
    book = await upbit.rest_order_book("BTC")
    assert book.best_bid is not None
    assert fake.requests.count(("GET", "/v1/orderbook")) == 3
    assert sample(upbit, "arbframe_exchange_requests_total", endpoint="/v1/orderbook", status="429") == 2
    assert sample(upbit, "arbframe_exchange_errors_total", kind="rate_limited") == 2


async def test_429_without_retry_after_backs_off_exponentially_with_jitter(upbit, fake, sample) -> None:
    """Upbit sends no Retry-After: the waits double from ``retry_backoff_seconds`` with jitter (the connector used
    to retry after a fixed pause), and the limiter holds every other request back meanwhile."""
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    upbit.rest.retry.sleep = record
    upbit.rest.retry.rng = random.Random(5)
    fake.inject("rate_limited", 3, path="/v1/ticker")
    await upbit.fetch_last_prices(["BTC"])
    base = 0.01  # retry_backoff_seconds of the fixture
    assert len(waits) == 3
    for attempt, wait in enumerate(waits):
        nominal = base * 2 ** attempt
        assert nominal * 0.8 <= wait <= nominal * 1.2  # jitter of +/- 20 %
    assert len({round(w / (base * 2 ** i), 6) for i, w in enumerate(waits)}) == 3  # jittered, not a fixed ratio
    # the 429 held the limiter, not only the retried call: the retry itself waited there (the policy's sleep is
    # recorded above, the limiter's is real)
    assert sample(upbit, "arbframe_exchange_rate_limit_waits_total", group="retry_after") == 3


async def test_persistent_429_raises_rate_limited(upbit, fake) -> None:
    fake.inject("rate_limited", 10, path="/v1/ticker")
    with pytest.raises(RateLimited) as info:
        await upbit.fetch_last_prices(["BTC"])
    assert info.value.code is None and info.value.retry_after is None and info.value.retry_safe
    assert fake.requests.count(("GET", "/v1/ticker")) == 4  # 1 + max_retries


async def test_418_stops_all_calls_for_the_time_upbit_states(upbit, fake, sample) -> None:
    fake.inject("banned", path="/v1/orderbook", retry_after=30)  # "IP blocked for 30 seconds"
    with pytest.raises(Banned) as info:
        await upbit.rest_order_book("BTC")
    assert 29 <= info.value.retry_after <= 30
    sent = len(fake.requests)
    with pytest.raises(Banned):
        await upbit.fetch_markets()
    with pytest.raises(Banned):
        await upbit.fetch_balances()
    assert len(fake.requests) == sent, "nothing may be sent while banned"
    result = await upbit.health_probe()
    assert result.status.value == "ERROR" and "418" in result.message
    assert sample(upbit, "arbframe_exchange_errors_total", kind="banned") == 3


async def test_5xx_malformed_and_dropped_reads_are_retried(upbit, fake, sample) -> None:
    fake.inject("unavailable", path="/v1/orderbook")
    fake.inject("malformed", path="/v1/ticker")
    fake.inject("drop", 2, path="/v1/market/all")  # aiohttp itself resends once on a reused connection
    assert (await upbit.rest_order_book("BTC")).best_ask is not None
    assert (await upbit.fetch_last_prices(["BTC"]))["BTC"] > 0
    assert await upbit.fetch_markets()
    assert fake.requests.count(("GET", "/v1/orderbook")) == fake.requests.count(("GET", "/v1/ticker")) == 2
    for kind in ("venue_unavailable", "protocol_error"):
        assert sample(upbit, "arbframe_exchange_errors_total", kind=kind) == 1, kind
    assert sample(upbit, "arbframe_exchange_errors_total", kind="transport_error") >= 1


async def test_persistent_failures_raise_their_kinds(upbit, fake) -> None:
    fake.inject("unavailable", 10, path="/v1/orderbook")
    with pytest.raises(VenueUnavailable) as info:
        await upbit.rest_order_book("BTC")
    assert info.value.status == 503
    fake.inject("malformed", 10, path="/v1/ticker")
    with pytest.raises(ProtocolError):
        await upbit.fetch_last_prices(["BTC"])


async def test_slow_answer_times_out_and_a_read_is_retried(make_upbit, fake, sample) -> None:
    ex = await make_upbit(timeout_seconds=0.2)
    fake.inject("timeout", path="/v1/orderbook", delay=1.0)
    book = await ex.rest_order_book("BTC")
    assert book.best_bid is not None
    assert sample(ex, "arbframe_exchange_requests_total", endpoint="/v1/orderbook", status="timeout") == 1
    fake.inject("timeout", 10, path="/v1/orderbook", delay=1.0)
    with pytest.raises(RequestTimeout):
        await ex.rest_order_book("BTC")


async def test_unreachable_server_fails_fast(make_upbit) -> None:
    ex = await make_upbit(connect=False, base_url="http://127.0.0.1:9", timeout_seconds=0.5, max_retries=1)
    started = time.monotonic()
    with pytest.raises(TransportError):
        await ex.fetch_markets()
    assert time.monotonic() - started < 3


async def test_order_refused_by_the_venue_carries_upbits_name(upbit, fake, sample) -> None:
    with pytest.raises(OrderRejected) as info:
        await upbit.rest.call("place_order", body={"market": "KRW-BTC", "side": "bid", "volume": "0.01",
                                                   "price": "148000500", "ord_type": "limit"})
    assert info.value.code == "invalid_price_bid" and info.value.status == 400
    assert sample(upbit, "arbframe_exchange_requests_total", endpoint="/v1/orders", status="400") == 1
    assert sample(upbit, "arbframe_exchange_errors_total", kind="order_rejected") == 1


async def test_venue_error_names_map_to_kinds(upbit, fake) -> None:
    fake.inject("venue_error", path="/v1/accounts", status=403, name="out_of_scope")
    with pytest.raises(AuthenticationError, match="out_of_scope"):
        await upbit.fetch_balances()
    fake.inject("venue_error", path="/v1/orderbook", name="validation_error")
    with pytest.raises(InvalidRequest, match="validation_error"):
        await upbit.rest_order_book("BTC")


async def test_latency_histogram_is_recorded(upbit, sample) -> None:
    await upbit.rest_order_book("BTC")
    assert sample(upbit, "arbframe_exchange_request_duration_seconds_count", endpoint="/v1/orderbook") == 1


async def test_concurrent_requests_share_one_session(upbit, fake) -> None:
    books = await asyncio.gather(*(upbit.rest_order_book("BTC") for _ in range(10)))
    assert len(books) == 10 and len({b.best_bid for b in books}) == 1
