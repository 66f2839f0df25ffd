"""Pure units: signing, filters and order preparation, error classification, payload parsing, limiter windows."""

from __future__ import annotations

from decimal import Decimal

import pytest
from arbframe_exchange_binance.errors import error_for
from arbframe_exchange_binance.exchange import SCHEMA
from arbframe_exchange_binance.parsing import book_ticker_to_book, depth_to_book, parse_order, utc_now
from arbframe_exchange_binance.rest import SIGNED, depth_endpoint, rate_limits
from arbframe_exchange_binance.rules import fmt, parse_exchange_info, parse_symbol, prepare_order
from arbframe_exchange_binance.signing import Signer, encode_params, verify
from arbframe_exchange_binance.testing.fake_server import FakeBinance
from hypothesis import given, settings
from hypothesis import strategies as st

from arbframe import (
    EXCHANGE_ERROR_KINDS,
    AuthenticationError,
    Banned,
    InsufficientFunds,
    InvalidRequest,
    OrderRejected,
    OrderRequest,
    OrderStatus,
    OrderType,
    ProtocolError,
    RateLimited,
    RateLimiter,
    Side,
    UnknownOrder,
    VenueUnavailable,
    schema_defaults,
)

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


@pytest.mark.parametrize("value", ["BTCUSDT", "0.00100000", "my-id_1.x~", "a b", "é", "ß1", "x/y:z", "", "%", "+1",
                                   Decimal("1E+3"), 1700000000000, False])
def test_encode_params_skips_quote_only_where_quote_changes_nothing(value):
    from urllib.parse import quote

    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    assert encode_params({"k": value}) == f"k={quote(text, safe='-_.~')}"


# -------------------------------------------------------------------------------------------- rules
@pytest.fixture
def info():
    fake = FakeBinance(push_interval=None)
    legacy = {"symbol": "ETHBTC", "status": "TRADING", "baseAsset": "ETH", "quoteAsset": "BTC", "filters": [
        {"filterType": "MIN_NOTIONAL", "minNotional": "0.00010000", "applyToMarket": True, "avgPriceMins": 5}]}
    entries = [fake._symbol_entry(m) for m in fake.markets] + [legacy]
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
    with pytest.raises(OrderRejected) as caught:
        prepare_order(_req(Side.BUY, OrderType.LIMIT, qty, price), rules)
    assert caught.value.filter_type == filter_type


def test_market_orders(info):
    rules = parse_exchange_info(info)[0]["BTCUSDT"]
    by_quote = prepare_order(_req(Side.BUY, OrderType.MARKET, quote=D("100.123456789")), rules)
    assert by_quote.params == {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quoteOrderQty": "100.12345678",
                               "newClientOrderId": "cid-1"}
    by_qty = prepare_order(_req(Side.SELL, OrderType.MARKET, qty=D("0.0123456")), rules, reference_price=D("60000"))
    assert by_qty.params["quantity"] == "0.01234" and "price" not in by_qty.params
    with pytest.raises(OrderRejected):  # min notional applies to market orders (applyMinToMarket)
        prepare_order(_req(Side.SELL, OrderType.MARKET, qty=D("0.00005")), rules, reference_price=D("60000"))
    with pytest.raises(OrderRejected):
        prepare_order(_req(Side.BUY, OrderType.MARKET, quote=D("4")), rules)
    with pytest.raises(OrderRejected):  # MARKET_LOT_SIZE maxQty
        prepare_order(_req(Side.SELL, OrderType.MARKET, qty=D("150")), rules)


def test_symbol_not_trading_is_refused(info):
    entry = dict(info["symbols"][0], status="HALT")
    with pytest.raises(OrderRejected):
        prepare_order(_req(Side.BUY, OrderType.LIMIT, D("1"), D("60000")), parse_symbol(entry))


def test_fmt_never_uses_exponents():
    assert fmt(D("1E-8")) == "0.00000001"
    assert fmt(D("1E+3")) == "1000"
    assert fmt(D("0.10000")) == "0.1"


# --------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(("code", "msg", "status", "cls"), [
    (-1021, "Timestamp for this request is outside of the recvWindow.", 400, InvalidRequest),
    (-1013, "Filter failure: LOT_SIZE", 400, OrderRejected),
    (-1014, "Unsupported order combination.", 400, OrderRejected),
    (-2010, "Account has insufficient balance for requested action.", 400, InsufficientFunds),
    (-2010, "Duplicate order sent.", 400, OrderRejected),
    (-2010, "Order would immediately match and take.", 400, OrderRejected),
    (-2011, "Unknown order sent.", 400, UnknownOrder),
    (-2011, "Order was canceled or expired.", 400, InvalidRequest),
    (-2013, "Order does not exist.", 400, UnknownOrder),
    (-2026, "Order was canceled or expired, and too old to query.", 400, UnknownOrder),
    (-1002, "You are not authorized to execute this request.", 401, AuthenticationError),
    (-1022, "Signature for this request is not valid.", 400, AuthenticationError),
    (-2014, "API-key format invalid.", 400, AuthenticationError),
    (-2015, "Invalid API-key, IP, or permissions for action.", 401, AuthenticationError),
    (-1003, "Too much request weight used", 429, RateLimited),
    (-1015, "Too many new orders.", 400, RateLimited),
    (None, "WAF limit violated", 403, Banned),
    (-1000, "An unknown error occurred while processing the request.", 400, VenueUnavailable),
    (-1006, "An unexpected response was received from the message bus. Execution status unknown.", 500,
     VenueUnavailable),
    (-1007, "Timeout waiting for response from backend server.", 500, VenueUnavailable),
    (-1008, "Server is currently overloaded with other requests.", 503, VenueUnavailable),
    (None, "Internal Server Error", 502, VenueUnavailable),
    (-1121, "Invalid symbol.", 400, InvalidRequest),
    (-1102, "Mandatory parameter 'timeInForce' was not sent.", 400, InvalidRequest),
])
def test_every_binance_error_is_a_taxonomy_kind(code, msg, status, cls):
    err = error_for(code, msg, status=status, endpoint="/api/v3/order", retry_after=3.0)
    assert type(err) is cls and err.kind in EXCHANGE_ERROR_KINDS
    assert err.code == code and err.status == status and err.exchange == "binance"
    assert err.retry_after == 3.0
    if code == -1013:
        assert err.filter_type == "LOT_SIZE"


def test_a_2xx_body_that_is_not_json_is_a_protocol_error():
    from arbframe_exchange_binance.errors import classify

    from arbframe import HttpAnswer

    assert classify(HttpAnswer(200, {}, b'{"serverTime": 1}', "/api/v3/time")) is None
    assert classify(HttpAnswer(200, {}, b"[]", "/api/v3/openOrders")) is None
    for body in (b"<html>busy</html>", b'{"lastUpdateId": 1, "bids": [["1.0", ', b""):
        assert type(classify(HttpAnswer(200, {}, body, "/api/v3/depth"))) is ProtocolError
    err = classify(HttpAnswer(400, {"Retry-After": "2"}, b'{"code": -1121, "msg": "Invalid symbol."}', "/x"))
    assert type(err) is InvalidRequest and err.code == -1121 and err.retry_after == 2.0


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
async def test_binance_limits_as_data_weight_window_waits_for_the_next_minute():
    now = [120.0]
    waits: list[tuple[str, float]] = []

    async def sleep(seconds):
        now[0] += seconds

    cfg = schema_defaults(SCHEMA, {"rate_limit": 1000, "weight_limit_per_minute": 100, "rate_limit_safety": 1.0})
    limiter = RateLimiter(rate_limits(cfg), clock=lambda: now[0], sleep=sleep,
                          on_wait=lambda g, s: waits.append((g, s)))
    for _ in range(4):
        await limiter.acquire("/api/v3/exchangeInfo")  # weight 20 each
    await limiter.acquire("/api/v3/account")  # 20: exactly 100
    assert limiter.used("weight") == 100 and not waits
    now[0] = 150.0
    await limiter.acquire(depth_endpoint(5))  # 5 more would cross 100 in this minute -> waits until 180
    assert waits and waits[0][0] == "weight" and 29.9 < waits[0][1] < 30.1
    assert limiter.used("weight") == 5
    limiter.observe({"X-MBX-USED-WEIGHT-1M": "90"})  # the server's figure wins when higher (same IP)
    assert limiter.used("weight") == 90
    await limiter.acquire("/api/v3/order")  # an order counts in the 10 s order window, weight 1
    assert limiter.used("orders") == 1 and limiter.used("weight") == 91


def test_endpoint_labels_and_weights():
    assert [depth_endpoint(n) for n in (5, 100, 101, 500, 1000, 5000)] == [
        "/api/v3/depth", "/api/v3/depth", "/api/v3/depth:500", "/api/v3/depth:500", "/api/v3/depth:1000",
        "/api/v3/depth:5000"]
    limits = rate_limits(schema_defaults(SCHEMA, {}))
    assert limits.cost("/api/v3/order:GET") == {"requests": 1, "weight": 4}
    assert limits.cost("/api/v3/order") == {"requests": 1, "weight": 1, "orders": 1}
    assert limits.cost("/api/v3/depth:5000")["weight"] == 250
    assert "/api/v3/depth" not in SIGNED and "/api/v3/order/test" in SIGNED


_num = st.decimals(min_value=D("0.00000001"), max_value=D("1000000"), places=8, allow_nan=False,
                   allow_infinity=False).map(lambda d: f"{d:f}")


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.lists(st.tuples(_num, _num), max_size=25), min_size=1, max_size=6))
def test_interned_levels_equal_a_fresh_parse(snapshots):
    from arbframe_exchange_binance.parsing import clear_level_cache, levels

    from arbframe import BookLevel

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
    with pytest.raises(ProtocolError) as caught:
        parse_order(payload, "BTC")
    assert repr(field) in str(caught.value) and "cid-9" in str(caught.value)


def test_order_numbers_may_be_json_numbers_or_strings():
    from arbframe_exchange_binance.parsing import parse_order

    order = parse_order({"orderId": 7, "clientOrderId": "c", "price": 0.1, "origQty": 3, "executedQty": "3",
                         "cummulativeQuoteQty": 0.3, "transactTime": "1700000000000", "side": "SELL",
                         "status": "FILLED", "type": "MARKET"}, "BTC")
    assert order.price == D("0.1") and order.qty == D("3") and order.avg_price == D("0.1")
    assert order.ts.year == 2023
