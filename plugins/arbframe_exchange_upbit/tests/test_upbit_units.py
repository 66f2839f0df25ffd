"""Pure units: JWT and query hashing, parsing (REST, WebSocket DEFAULT and SIMPLE), price units, rounding."""

from __future__ import annotations

import hashlib
import hmac
import json
from decimal import Decimal

import pytest
from arbframe_exchange_upbit import UpbitExchange
from arbframe_exchange_upbit.auth import (
    JwtError,
    TokenMaker,
    decode_token,
    encode_query,
    hash_query,
    make_token,
    query_pairs,
    raw_query,
)
from arbframe_exchange_upbit.parsing import (
    loads,
    market_for,
    parse_accounts,
    parse_order,
    parse_rest_orderbook,
    parse_ws_message,
    symbol_for,
    ws_count,
)
from arbframe_exchange_upbit.rest import classify, parse_remaining_req, rate_limits
from arbframe_exchange_upbit.ticks import KRW_PRICE_UNITS, build_table, price_unit

from arbframe import (
    AuthenticationError,
    HttpAnswer,
    InsufficientFunds,
    InvalidRequest,
    OrderRejected,
    OrderStatus,
    OrderType,
    ProtocolError,
    RateLimiter,
    Side,
    UnknownOrder,
    VenueUnavailable,
)

D = Decimal


# ----------------------------------------------------------------------------------------------- auth
def test_query_string_is_unencoded_in_order_and_repeats_array_keys() -> None:
    pairs = query_pairs([("market", "KRW-BTC"), ("states[]", ["wait", "watch"]), ("page", 1), ("x", None)])
    assert raw_query(pairs) == "market=KRW-BTC&states[]=wait&states[]=watch&page=1"
    assert encode_query(pairs) == "market=KRW-BTC&states[]=wait&states[]=watch&page=1"
    spaced = query_pairs({"identifier": "a b/ü"})
    assert raw_query(spaced) == "identifier=a b/ü"
    assert encode_query(spaced) == "identifier=a%20b%2F%C3%BC"


def test_token_claims_and_signature() -> None:
    raw = "market=KRW-BTC&side=bid&volume=0.01&price=100000000&ord_type=limit"
    token = make_token("ak", "sk", raw, nonce="n-1")
    head, _body, _sig = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    import base64

    assert json.loads(base64.urlsafe_b64decode(pad(head))) == {"alg": "HS512", "typ": "JWT"}
    signing_input = token.rsplit(".", 1)[0].encode()
    expected = hmac.new(b"sk", signing_input, hashlib.sha512).digest()
    assert base64.urlsafe_b64decode(pad(_sig)) == expected
    payload = decode_token(token, {"ak": "sk"}.get)
    assert payload == {"access_key": "ak", "nonce": "n-1", "query_hash": hashlib.sha512(raw.encode()).hexdigest(),
                       "query_hash_alg": "SHA512"}
    assert hash_query(raw) == payload["query_hash"]
    # no parameters: no query_hash claim
    assert "query_hash" not in decode_token(make_token("ak", "sk"), {"ak": "sk"}.get)
    # fresh nonce per token
    assert decode_token(make_token("ak", "sk"), {"ak": "sk"}.get)["nonce"] != \
        decode_token(make_token("ak", "sk"), {"ak": "sk"}.get)["nonce"]


@pytest.mark.parametrize("raw", ["", "market=KRW-BTC&side=bid&volume=0.01&price=100000000&ord_type=limit",
                                 "states[]=wait&states[]=watch&identifier=\u00e9-\"q\""])
def test_the_rest_clients_token_maker_makes_make_tokens_tokens(raw: str) -> None:
    """The REST client signs with TokenMaker (the per-key work done once): byte for byte make_token's tokens."""
    maker = TokenMaker('a"k', "sk")
    assert maker.token(raw, nonce="n-1") == make_token('a"k', "sk", raw, nonce="n-1")
    assert "sk" not in repr(maker)
    assert decode_token(maker.token(raw), {'a"k': "sk"}.get)["nonce"] != \
        decode_token(maker.token(raw), {'a"k': "sk"}.get)["nonce"]


@pytest.mark.parametrize("mangle", ["secret", "payload", "garbage", "key"])
def test_bad_tokens_are_rejected(mangle: str) -> None:
    token = make_token("ak", "sk", "a=1")
    if mangle == "secret":
        token = make_token("ak", "other", "a=1")
    elif mangle == "payload":
        head, _body, sig = token.split(".")
        body = make_token("ak", "sk", "a=2").split(".")[1]
        token = f"{head}.{body}.{sig}"
    elif mangle == "garbage":
        token = "not-a-jwt"
    else:
        token = make_token("someone-else", "sk", "a=1")
    with pytest.raises(JwtError):
        decode_token(token, {"ak": "sk"}.get)


# -------------------------------------------------------------------------------------------- parsing
REST_BOOK = b"""[{"market":"KRW-BTC","timestamp":1764028800123,"total_ask_size":1.5,"total_bid_size":2.5,
"orderbook_units":[{"ask_price":148001000.0,"bid_price":148000000.0,"ask_size":0.12345678,"bid_size":0.3},
{"ask_price":148002000.0,"bid_price":147999000.0,"ask_size":0.1,"bid_size":0},
{"ask_price":148003000,"bid_price":147998000.0,"ask_size":1.00000001,"bid_size":2.2}],"level":0}]"""


def test_rest_orderbook_exact_decimals_sorted_and_zero_levels_dropped() -> None:
    book = parse_rest_orderbook(loads(REST_BOOK)[0], "upbit", 15)
    assert book.symbol == "BTC" and book.exchange == "upbit"
    assert [lvl.price for lvl in book.bids] == [D("148000000.0"), D("147998000.0")]
    assert [lvl.qty for lvl in book.asks] == [D("0.12345678"), D("0.1"), D("1.00000001")]
    assert all(type(lvl.price) is Decimal and type(lvl.qty) is Decimal for lvl in book.bids + book.asks)
    assert book.ts.tzinfo is not None and book.ts.utcoffset().total_seconds() == 0
    assert book.ts.timestamp() == pytest.approx(1764028800.123)
    assert parse_rest_orderbook(loads(REST_BOOK)[0], "upbit", 1).asks == book.asks[:1]


def test_ws_default_and_simple_give_the_same_book() -> None:
    units = [{"ask_price": 1453.5, "bid_price": 1453.0, "ask_size": 1000.5, "bid_size": 20.25},
             {"ask_price": 1454.0, "bid_price": 1452.5, "ask_size": 3.0, "bid_size": 4.0}]
    default = {"type": "orderbook", "code": "KRW-USDT", "timestamp": 1764028800000, "total_ask_size": 1003.5,
               "total_bid_size": 24.25, "orderbook_units": units, "stream_type": "REALTIME", "level": 0}
    simple = {"ty": "orderbook", "cd": "KRW-USDT", "tms": 1764028800000, "tas": 1003.5, "tbs": 24.25,
              "obu": [{"ap": u["ask_price"], "bp": u["bid_price"], "as": u["ask_size"], "bs": u["bid_size"]}
                      for u in units], "st": "SNAPSHOT", "lv": 0}
    kind_a, book_a = parse_ws_message(loads(json.dumps(default)), "upbit", 15)
    kind_b, book_b = parse_ws_message(loads(json.dumps(simple).encode()), "upbit", 15)
    assert kind_a == kind_b == "orderbook"
    assert book_a == book_b
    assert book_a.best_bid == D("1453.0") and book_a.best_ask == D("1453.5")
    tick_default = parse_ws_message({"type": "ticker", "code": "KRW-BTC", "trade_price": D("1.5E+8"),
                                     "timestamp": 1}, "upbit", 15)
    tick_simple = parse_ws_message({"ty": "ticker", "cd": "KRW-BTC", "tp": D("150000000"), "tms": 1}, "upbit", 15)
    assert tick_default[0] == tick_simple[0] == "ticker"
    assert tick_default[1][:2] == ("BTC", D("1.5E+8")) and tick_simple[1][1] == D("150000000")
    assert parse_ws_message({"status": "UP"}, "upbit", 15) == ("status", "UP")
    assert parse_ws_message({"ty": "trade", "cd": "KRW-BTC"}, "upbit", 15) is None
    with pytest.raises(ProtocolError):
        parse_ws_message({"ty": "orderbook", "cd": "KRW-BTC"}, "upbit", 15)
    with pytest.raises(ProtocolError):
        loads(b'{"ty": ')


def test_order_parsing_states_and_average_price() -> None:
    base = {"uuid": "9ca023a5-851b-4fec-9f0a-48cd83c2eaae", "side": "bid", "ord_type": "limit",
            "price": "148000000", "state": "wait", "market": "KRW-BTC", "created_at": "2026-11-25T10:00:00+09:00",
            "volume": "0.01", "remaining_volume": "0.01", "paid_fee": "0", "executed_volume": "0",
            "identifier": "cid-1"}
    order = parse_order(base, "upbit")
    assert (order.id, order.client_order_id, order.exchange_order_id) == ("cid-1", "cid-1", base["uuid"])
    assert order.status is OrderStatus.OPEN and order.side is Side.BUY and order.order_type is OrderType.LIMIT
    assert order.ts.isoformat() == "2026-11-25T01:00:00+00:00"
    assert order.price == D("148000000") and order.qty == D("0.01") and order.fee_currency == "KRW"
    part = parse_order({**base, "executed_volume": "0.004", "executed_funds": "592000"}, "upbit")
    assert part.status is OrderStatus.PARTIALLY_FILLED and part.avg_price == D("148000000")
    done = parse_order({**base, "state": "done", "executed_volume": "0.01", "paid_fee": "740",
                        "trades": [{"funds": "740000", "volume": "0.005"}, {"funds": "740010", "volume": "0.005"}]},
                       "upbit")
    assert done.status is OrderStatus.FILLED and done.avg_price == D("148001000") and done.fee == D("740")
    cancelled = parse_order({**base, "state": "cancel"}, "upbit")
    assert cancelled.status is OrderStatus.CANCELED
    market_buy = parse_order({**base, "ord_type": "price", "price": "10000", "volume": None, "identifier": None},
                             "upbit")
    assert market_buy.order_type is OrderType.MARKET and market_buy.price is None and market_buy.qty == 0
    assert market_buy.id == base["uuid"]
    with pytest.raises(ProtocolError):
        parse_order({"side": "bid"}, "upbit")


def test_accounts_and_market_names() -> None:
    rows = [{"currency": "KRW", "balance": "1000000.0", "locked": "5000"}, {"currency": "btc", "balance": "0.5"}]
    assert parse_accounts(rows) == {"KRW": D("1000000.0"), "BTC": D("0.5")}
    with pytest.raises(ProtocolError):
        parse_accounts({"error": {}})
    assert market_for("BTC") == "KRW-BTC" and market_for("KRW-ETH") == "KRW-ETH"
    assert symbol_for("KRW-BTC") == "BTC" and symbol_for("BTC") == "BTC"
    assert [ws_count(d) for d in (1, 2, 5, 10, 15, 20, 30, 50)] == [1, 5, 5, 15, 15, 30, 30, 30]


def _answer(status: int, endpoint: str, name: str = "", message: str = "x") -> HttpAnswer:
    body = json.dumps({"error": {"name": name, "message": message}}).encode() if name else b"<html>oops"
    return HttpAnswer(status, {}, body, endpoint)


@pytest.mark.parametrize(("status", "endpoint", "name", "kind"), [
    (400, "/v1/orders", "under_min_total_bid", OrderRejected),
    (400, "/v1/orders", "invalid_price_ask", OrderRejected),
    (400, "/v1/orders/test", "market_offline", OrderRejected),
    (400, "/v1/orders", "insufficient_funds_bid", InsufficientFunds),
    (400, "/v1/orderbook", "validation_error", InvalidRequest),
    (400, "/v1/order", "order_not_cancellable", InvalidRequest),
    (401, "/v1/accounts", "jwt_verification", AuthenticationError),
    (401, "/v1/accounts", "nonce_used", AuthenticationError),
    (403, "/v1/orders", "out_of_scope", AuthenticationError),
    (404, "/v1/order", "order_not_found", UnknownOrder),
    (404, "/v1/orderbook", "404", InvalidRequest),
    (500, "/v1/orders", "", VenueUnavailable),
    (503, "/v1/ticker", "server_error", VenueUnavailable),
])
def test_every_upbit_error_maps_to_a_taxonomy_kind(status, endpoint, name, kind) -> None:
    err = classify(_answer(status, endpoint, name, "최소주문금액 이상으로 주문해주세요"))
    assert type(err) is kind and err.code == (name or None)
    assert (name or "oops") in str(err) and endpoint in str(err)


def test_a_2xx_answer_is_decoded_once_with_exact_decimals_or_is_a_protocol_error() -> None:
    answer = HttpAnswer(200, {}, b'[{"trade_price": 0.1}]', "/v1/ticker")
    assert classify(answer) is None and answer.decoded == [{"trade_price": D("0.1")}]
    assert type(classify(HttpAnswer(200, {}, b'[{"market": ', "/v1/orderbook"))) is ProtocolError


async def test_rate_limits_are_upbits_groups_under_the_overall_limit() -> None:
    now = [100.0]

    async def no_sleep(seconds: float) -> None:
        now[0] += seconds

    lim = RateLimiter(rate_limits(10, {"order": 3}), clock=lambda: now[0], sleep=no_sleep)
    for _ in range(3):
        assert await lim.acquire("/v1/orders") == 0
    assert lim.delay("/v1/orders") == ("order", pytest.approx(1.0))
    assert lim.delay("/v1/accounts") == ("", 0.0)  # another group
    for _ in range(7):
        await lim.acquire("/v1/accounts")
    assert lim.delay("/v1/ticker")[0] == "requests"  # the seed's overall 10/s caps every group
    # the server counts requests we did not see (another process): only 3 of default's 30 are left
    now[0] += 1.0
    lim.observe({"Remaining-Req": "group=default; min=1800; sec=3"})
    assert lim.used("default") == 27
    lim.observe({"Remaining-Req": "group=ticker; min=1800; sec=0"})
    assert lim.delay("/v1/ticker") == ("ticker", pytest.approx(1.0))
    assert parse_remaining_req("group=default; min=1800; sec=29") == ("default", 29)
    assert parse_remaining_req("garbage") is None
    slow = rate_limits(100, {"order-cancel-all": 0.5})
    assert next(q for q in slow.quotas if q.name == "order-cancel-all").window == 2.0  # one per 2 s


# ------------------------------------------------------------------------------------ price units
@pytest.mark.parametrize(("price", "unit"), [
    ("150000000", "1000"), ("2000000", "1000"), ("1000000", "1000"), ("999999", "500"), ("500000", "500"),
    ("499999", "100"), ("100000", "100"), ("99999", "50"), ("50000", "50"), ("49999", "10"), ("10000", "10"),
    ("9999", "5"), ("5000", "5"), ("4999", "1"), ("1000", "1"), ("100", "1"), ("99.9", "0.1"), ("10", "0.1"),
    ("9.99", "0.01"), ("1", "0.01"), ("0.5", "0.001"), ("0.05", "0.0001"), ("0.005", "0.00001"),
    ("0.0005", "0.000001"), ("0.00005", "0.0000001"), ("0.000005", "0.00000001"),
])
def test_krw_price_units(price: str, unit: str) -> None:
    assert price_unit(D(price), KRW_PRICE_UNITS) == D(unit)


def test_price_unit_table_is_configurable() -> None:
    table = build_table([[0, "1"], [1000, "5"]])
    assert price_unit(D("999"), table) == 1 and price_unit(D("1000"), table) == 5
    ex = UpbitExchange({"price_units": [[0, 1], [1000, 10]], "price_unit_overrides": {"XRP": [[0, "0.5"]]}}, None)
    assert ex.price_step("BTC", D("5000")) == 10 and ex.price_step("XRP", D("5000")) == D("0.5")


def test_rounding_buys_up_sells_down_on_the_band_grid() -> None:
    ex = UpbitExchange({}, None)
    assert ex.round_price("BTC", D("148000500"), Side.BUY) == D("148001000")
    assert ex.round_price("BTC", D("148000500"), Side.SELL) == D("148000000")
    assert ex.round_price("BTC", D("148000000"), Side.BUY) == D("148000000")
    assert ex.round_price("XRP", D("3105.7"), Side.BUY) == D("3106")
    assert ex.round_price("XRP", D("3105.7"), Side.SELL) == D("3105")
    assert ex.round_price("DOGE", D("312.34"), Side.SELL) == D("312")
    assert ex.round_price("SHIB", D("0.0123456"), Side.BUY) == D("0.0124")
    # stablecoins keep the 0.5 KRW unit between 1,000 and 10,000
    assert ex.round_price("USDT", D("1452.3"), Side.BUY) == D("1452.5")
    assert ex.round_price("USDT", D("1452.3"), Side.SELL) == D("1452.0")
    assert ex.round_qty("BTC", D("0.123456789")) == D("0.12345678")
    rules = ex.market_rules("BTC")
    assert rules.min_notional == D(5000) and rules.tick_size is None and rules.step_size == D("0.00000001")


def test_numbers_stay_exact_beyond_float_precision() -> None:
    raw = b'[{"market":"KRW-XRP","timestamp":1764028800000,"orderbook_units":[{"ask_price":3101.0,' \
          b'"bid_price":3100,"ask_size":123456789.12345678,"bid_size":0.10000000000000000555}]}]'
    book = parse_rest_orderbook(loads(raw)[0], "upbit", 15)
    assert book.asks[0].qty == D("123456789.12345678")  # 17 significant digits: a float would round it
    assert book.bids[0].qty == D("0.10000000000000000555")
    assert book.bids[0].price == D(3100) and type(book.bids[0].price) is Decimal
    again = parse_rest_orderbook(loads(raw)[0], "upbit", 15)  # the decimal cache returns equal values
    assert again == book
