"""Pure units: signing, filters and order preparation, error classification, payload parsing, limiter windows."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from arbframe_exchange_binance import errors as E
from arbframe_exchange_binance.parsing import book_ticker_to_book, depth_to_book, parse_order, utc_now
from arbframe_exchange_binance.ratelimit import RateLimiter
from arbframe_exchange_binance.rules import fmt, parse_exchange_info, parse_symbol, prepare_order
from arbframe_exchange_binance.signing import Signer, encode_params, verify
from arbframe_exchange_binance.testing.fake_server import FakeBinance
from hypothesis import given, settings
from hypothesis import strategies as st

from arbframe import OrderRequest, OrderStatus, OrderType, Side

D = Decimal


# ------------------------------------------------------------------------------------------ signing
def test_signature_matches_the_documented_example():
    # Binance's "SIGNED Endpoint Examples for POST /api/v3/order" (HMAC key example).
    secret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
    payload = ("symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000"
               "&timestamp=1499827319559")
    assert Signer(secret).sign(payload) == "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
    # mixed query string + body: totalParams is the plain concatenation (no '&' in between)
    mixed = ("symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC"
             "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559")
    assert Signer(secret).sign(mixed) == "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77"


def test_signed_payload_appends_window_timestamp_and_signature_last():
    signer = Signer("s3cret")
    out = signer.signed_payload({"symbol": "BTCUSDT", "newClientOrderId": "a:b/c_d-e.f", "skip": None},
                                timestamp=1700000000000, recv_window=5000)
    assert out.startswith("symbol=BTCUSDT&newClientOrderId=a%3Ab%2Fc_d-e.f&recvWindow=5000&timestamp=1700000000000&")
    assert out.rsplit("&", 1)[1].startswith("signature=")
    assert verify("s3cret", out)
    assert not verify("other", out)
    assert not verify("s3cret", out.replace("BTCUSDT", "ETHUSDT"))
    assert "s3cret" not in repr(signer)


def test_encode_params_keeps_order_and_encodes_json_arrays():
    assert encode_params([("b", 1), ("a", True)]) == "b=1&a=true"
    assert encode_params({"symbols": '["BTCUSDT","ETHUSDT"]'}) == "symbols=%5B%22BTCUSDT%22%2C%22ETHUSDT%22%5D"


# -------------------------------------------------------------------------------------------- rules
@pytest.fixture
def info():
    fake = FakeBinance(push_interval=None)
    entries = [fake._symbol_entry(m) for m in fake.markets]
    return {"symbols": entries, "rateLimits": [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
        {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
        {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000}]}


def test_exchange_info_filters_are_exact(info):
    rules, limits = parse_exchange_info(info)
    btc = rules["BTCUSDT"]
    assert (btc.base, btc.quote, btc.status) == ("BTC", "USDT", "TRADING")
    assert btc.tick_size == D("0.01") and str(btc.tick_size) == "0.01"
    assert btc.step_size == D("0.00001") and btc.min_qty == D("0.00001") and btc.max_qty == D("9000")
    assert btc.min_notional == D("5") and btc.max_notional == D("9000000")
    assert btc.min_notional_applies_to_market and not btc.max_notional_applies_to_market
    assert btc.market_max_qty == D("100") and btc.market_step_size == 0
    legacy = rules["ETHBTC"]  # MIN_NOTIONAL (older filter) is understood too
    assert legacy.min_notional == D("0.0001")
    assert limits == {"weight_per_minute": 6000, "orders_per_10s": 100, "orders_per_day": 200000}
    mr = btc.market_rules("BTC")
    assert (mr.symbol, mr.tick_size, mr.step_size, mr.min_qty, mr.min_notional) == (
        "BTC", D("0.01"), D("0.00001"), D("0.00001"), D("5"))


def _req(side, otype, qty=None, price=None, quote=None):
    return OrderRequest(symbol="BTC", side=side, order_type=otype, client_order_id="cid-1", qty=qty, price=price,
                        quote_amount=quote)


def test_limit_orders_round_to_tick_and_step_keeping_the_limit(info):
    rules = parse_exchange_info(info)[0]["BTCUSDT"]
    buy = prepare_order(_req(Side.BUY, OrderType.LIMIT, D("0.0012345"), D("60000.129")), rules)
    assert buy.params == {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                          "quantity": "0.00123", "price": "60000.12", "newClientOrderId": "cid-1"}
    sell = prepare_order(_req(Side.SELL, OrderType.LIMIT, D("0.0012345"), D("60000.121")), rules)
    assert sell.params["price"] == "60000.13"  # a sell never asks less than the caller's limit
    on_grid = prepare_order(_req(Side.BUY, OrderType.LIMIT, D("1"), D("60000")), rules)
    assert on_grid.params["price"] == "60000" and on_grid.params["quantity"] == "1"


@pytest.mark.parametrize(("qty", "price", "filter_type"), [
    (D("0.000001"), D("60000"), "LOT_SIZE"),      # below minQty after rounding
    (D("9001"), D("60000"), "LOT_SIZE"),           # above maxQty
    (D("0.00005"), D("60000"), "NOTIONAL"),        # 3 USDT < 5 USDT
    (D("1"), D("0.001"), "PRICE_FILTER"),          # rounds to 0
    (D("1"), D("2000000"), "PRICE_FILTER"),        # above maxPrice
])
def test_invalid_limit_orders_are_refused_before_sending(info, qty, price, filter_type):
    rules = parse_exchange_info(info)[0]["BTCUSDT"]
    with pytest.raises(E.BinanceFilterError) as caught:
        prepare_order(_req(Side.BUY, OrderType.LIMIT, qty, price), rules)
    assert caught.value.filter_type == filter_type


def test_market_orders(info):
    rules = parse_exchange_info(info)[0]["BTCUSDT"]
    by_quote = prepare_order(_req(Side.BUY, OrderType.MARKET, quote=D("100.123456789")), rules)
    assert by_quote.params == {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quoteOrderQty": "100.12345678",
                               "newClientOrderId": "cid-1"}
    by_qty = prepare_order(_req(Side.SELL, OrderType.MARKET, qty=D("0.0123456")), rules, reference_price=D("60000"))
    assert by_qty.params["quantity"] == "0.01234" and "price" not in by_qty.params
    with pytest.raises(E.BinanceFilterError):  # min notional applies to market orders (applyMinToMarket)
        prepare_order(_req(Side.SELL, OrderType.MARKET, qty=D("0.00005")), rules, reference_price=D("60000"))
    with pytest.raises(E.BinanceFilterError):
        prepare_order(_req(Side.BUY, OrderType.MARKET, quote=D("4")), rules)
    with pytest.raises(E.BinanceFilterError):  # MARKET_LOT_SIZE maxQty
        prepare_order(_req(Side.SELL, OrderType.MARKET, qty=D("150")), rules)


def test_symbol_not_trading_is_refused(info):
    entry = dict(info["symbols"][0], status="HALT")
    with pytest.raises(E.BinanceFilterError):
        prepare_order(_req(Side.BUY, OrderType.LIMIT, D("1"), D("60000")), parse_symbol(entry))


def test_fmt_never_uses_exponents():
    assert fmt(D("1E-8")) == "0.00000001"
    assert fmt(D("1E+3")) == "1000"
    assert fmt(D("0.10000")) == "0.1"


# --------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(("code", "msg", "status", "cls"), [
    (-1021, "Timestamp for this request is outside of the recvWindow.", 400, E.BinanceTimestampError),
    (-1013, "Filter failure: LOT_SIZE", 400, E.BinanceFilterError),
    (-2010, "Account has insufficient balance for requested action.", 400, E.BinanceInsufficientBalance),
    (-2010, "Duplicate order sent.", 400, E.BinanceDuplicateOrder),
    (-2010, "Market is closed.", 400, E.BinanceOrderRejected),
    (-2011, "Unknown order sent.", 400, E.BinanceUnknownOrder),
    (-2013, "Order does not exist.", 400, E.BinanceUnknownOrder),
    (-1022, "Signature for this request is not valid.", 400, E.BinanceAuthError),
    (-2015, "Invalid API-key, IP, or permissions for action.", 401, E.BinanceAuthError),
    (-1003, "Too much request weight used", 429, E.BinanceRateLimited),
    (-1003, "IP banned", 418, E.BinanceBanned),
    (-1007, "Timeout waiting for response from backend server.", 500, E.BinanceServerError),
    (None, "Internal Server Error", 502, E.BinanceServerError),
    (-1121, "Invalid symbol.", 400, E.BinanceAPIError),
])
def test_error_classification(code, msg, status, cls):
    err = E.classify(code, msg, status=status, endpoint="/api/v3/order", retry_after=3.0)
    assert type(err) is cls
    assert err.code == code and err.status == status
    if isinstance(err, E.BinanceRateLimited):
        assert err.retry_after == 3.0
    if isinstance(err, E.BinanceFilterError) and code == -1013:
        assert err.filter_type == "LOT_SIZE"


# -------------------------------------------------------------------------------------------- parsing
def test_depth_and_book_ticker_parse_to_exact_decimals():
    payload = {"lastUpdateId": 9, "bids": [["60000.01000000", "0.10000000"], ["60000.00", "2"]],
               "asks": [["60000.02000000", "0.3"], ["60000.1", "1.5"]]}
    book = depth_to_book(payload, "BTC", utc_now(), depth=1)
    assert book.bids[0].price == D("60000.01") and type(book.bids[0].qty) is Decimal
    assert len(book.bids) == 1 and len(book.asks) == 1 and book.exchange == "binance"
    rest = book_ticker_to_book({"symbol": "BTCUSDT", "bidPrice": "4.00000000", "bidQty": "431.00000000",
                                "askPrice": "4.00000200", "askQty": "9.00000000"}, "BTC", utc_now())
    ws = book_ticker_to_book({"u": 400900217, "s": "BNBUSDT", "b": "25.35190000", "B": "31.21000000",
                              "a": "25.36520000", "A": "40.66000000"}, "BNB", utc_now())
    assert rest.best_ask == D("4.000002") and ws.best_bid == D("25.3519") and ws.asks[0].qty == D("40.66")
    assert rest.quote().bid == D("4")


def test_order_parsing():
    order = parse_order({
        "symbol": "BTCUSDT", "orderId": 28, "orderListId": -1, "clientOrderId": "6gCrw2kRUAF9CvJDGP16IP",
        "transactTime": 1507725176595, "price": "0.00000000", "origQty": "10.00000000",
        "executedQty": "10.00000000", "cummulativeQuoteQty": "10.00000000", "status": "FILLED",
        "timeInForce": "GTC", "type": "MARKET", "side": "SELL",
        "fills": [{"price": "4000.00000000", "qty": "1.00000000", "commission": "4.00000000",
                   "commissionAsset": "USDT", "tradeId": 56},
                  {"price": "3999.00000000", "qty": "5.00000000", "commission": "19.99500000",
                   "commissionAsset": "USDT", "tradeId": 57}]}, "BTC")
    assert order.status is OrderStatus.FILLED and order.side is Side.SELL and order.order_type is OrderType.MARKET
    assert order.id == order.client_order_id == "6gCrw2kRUAF9CvJDGP16IP" and order.exchange_order_id == "28"
    assert order.fee == D("23.995") and order.fee_currency == "USDT"
    assert order.avg_price == D("1") and order.price is None
    assert order.ts.tzinfo is not None
    cancelled = parse_order({"symbol": "BTCUSDT", "origClientOrderId": "myOrder1", "clientOrderId": "cancelMyOrder1",
                             "orderId": 4, "price": "2.00", "origQty": "1.0", "executedQty": "0.0",
                             "cummulativeQuoteQty": "0.0", "status": "CANCELED", "type": "LIMIT", "side": "BUY"},
                            "BTC")
    assert cancelled.id == "myOrder1" and cancelled.status is OrderStatus.CANCELED and cancelled.avg_price is None
    new = parse_order({"status": "NEW", "side": "BUY", "type": "LIMIT", "orderId": 1}, "BTC")
    assert new.status is OrderStatus.OPEN
    assert parse_order({"status": "EXPIRED", "side": "BUY", "type": "LIMIT"}, "BTC").status is OrderStatus.CANCELED


# --------------------------------------------------------------------------------------------- limiter
async def test_weight_window_waits_for_the_next_minute(monkeypatch):
    now = [120.0]
    waits: list[tuple[str, float]] = []
    limiter = RateLimiter(requests_per_second=0, weight_per_minute=100, safety=1.0, clock=lambda: now[0],
                          on_wait=lambda g, s: waits.append((g, s)))
    slept: list[float] = []

    async def fake_sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    for _ in range(4):
        await limiter.acquire(25)
    assert limiter.used_weight == 100 and not waits
    now[0] = 150.0
    await limiter.acquire(5)  # would cross 100 in this minute -> waits until 180
    assert waits and waits[0][0] == "weight" and 29.9 < waits[0][1] < 30.1
    assert limiter.used_weight == 5
    # the server's figure wins when higher (other clients on the same IP)
    limiter.observe_headers({"X-MBX-USED-WEIGHT-1M": "90"})
    assert limiter.used_weight == 90


async def test_requests_per_second_and_retry_after(monkeypatch):
    limiter = RateLimiter(requests_per_second=5, weight_per_minute=10**6)
    waits: list[str] = []
    limiter.on_wait = lambda g, s: waits.append(g)
    real_sleep = asyncio.sleep

    async def quick_sleep(seconds):
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", quick_sleep)
    for _ in range(5):
        await limiter.acquire(1)
    assert waits == []
    await limiter.acquire(1)
    assert waits == ["requests"]
    limiter.block(2.0)
    assert 1.9 < limiter.blocked_for() <= 2.0
    await limiter.acquire(1)
    assert "retry_after" in waits


_num = st.decimals(min_value=D("0.00000001"), max_value=D("1000000"), places=8, allow_nan=False,
                   allow_infinity=False).map(lambda d: f"{d:f}")


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.lists(st.tuples(_num, _num), max_size=25), min_size=1, max_size=6))
def test_interned_levels_equal_a_fresh_parse(snapshots):
    from arbframe_exchange_binance.parsing import clear_level_cache, levels

    from arbframe.core.models import BookLevel

    clear_level_cache()
    for rows in snapshots:  # repeated prices/sizes across snapshots hit the intern cache
        got = levels([list(r) for r in rows])
        assert got == tuple(BookLevel(D(p), D(q)) for p, q in rows)
        assert all(type(lvl.price) is Decimal and type(lvl.qty) is Decimal for lvl in got)


@pytest.mark.parametrize(("field", "value"), [
    ("executedQty", [1]), ("origQty", "abc"), ("price", True), ("transactTime", "soon"), ("price", "NaN"),
    ("fills", "none"), ("side", 1),
])
def test_order_fields_of_the_wrong_type_raise_a_parse_error_naming_them(field, value):
    from arbframe_exchange_binance.parsing import parse_order

    payload = {"symbol": "BTCUSDT", "orderId": 7, "clientOrderId": "cid-9", "price": "1", "origQty": "1",
               "executedQty": "0", "cummulativeQuoteQty": "0", "status": "NEW", "type": "LIMIT", "side": "BUY",
               "transactTime": 1_700_000_000_000, field: value}
    with pytest.raises(E.BinanceParseError) as caught:
        parse_order(payload, "BTC")
    assert repr(field) in str(caught.value) and "cid-9" in str(caught.value)


def test_order_numbers_may_be_json_numbers_or_strings():
    from arbframe_exchange_binance.parsing import parse_order

    order = parse_order({"orderId": 7, "clientOrderId": "c", "price": 0.1, "origQty": 3, "executedQty": "3",
                         "cummulativeQuoteQty": 0.3, "transactTime": "1700000000000", "side": "SELL",
                         "status": "FILLED", "type": "MARKET"}, "BTC")
    assert order.price == D("0.1") and order.qty == D("3") and order.avg_price == D("0.1")
    assert order.ts.year == 2023
