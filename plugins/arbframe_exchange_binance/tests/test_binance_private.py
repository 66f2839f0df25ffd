"""Private REST against the fake Binance: signing over the exact bytes, time sync, orders that never double."""

from __future__ import annotations

import hashlib
import hmac
import logging
from decimal import Decimal
from urllib.parse import parse_qsl

import pytest

from arbframe import (
    AuthenticationError,
    Banned,
    InsufficientFunds,
    OrderRejected,
    OrderRequest,
    OrderStatus,
    OrderStatusUnknown,
    OrderType,
    Side,
    SimulatedMarket,
    UnknownOrder,
    new_id,
)

from .conftest import API_KEY, API_SECRET

D = Decimal
PRIVATE = ("/api/v3/account", "/api/v3/order", "/api/v3/order/test", "/api/v3/openOrders")


def _private_requests(fake):
    return [p for _, p in fake.requests if p in PRIVATE]


def _limit(qty="0.001", price="30000", side=Side.BUY, symbol="BTC", cid=None, tif="GTC", test=False):
    return OrderRequest(symbol=symbol, side=side, order_type=OrderType.LIMIT, client_order_id=cid or new_id(),
                        qty=D(qty), price=D(price), time_in_force=tif, test=test)


def _order_calls(fake):
    return [m for m, p in fake.requests if p == "/api/v3/order"]


async def test_signature_is_over_the_exact_bytes_sent(fake, make_binance):
    ex = await make_binance()
    balances = await ex.fetch_balances()
    assert balances["USDT"] == D("100000") and balances["BTC"] == D("2") and "BNB" not in balances
    req = [r for r in fake.received if r.path == "/api/v3/account"][-1]
    assert req.headers["X-MBX-APIKEY"] == API_KEY
    payload, _, signature = req.query.rpartition("&signature=")
    assert hmac.new(API_SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest() == signature
    params = dict(parse_qsl(req.query))
    assert params["recvWindow"] == "5000" and params["omitZeroBalances"] == "true" and int(params["timestamp"]) > 0
    # POST: everything in the form body, signature last
    order = await ex.place_order(_limit())
    post = [r for r in fake.received if r.path == "/api/v3/order" and r.method == "POST"][-1]
    assert post.query == "" and post.headers["Content-Type"] == "application/x-www-form-urlencoded"
    body, _, sig = post.body.rpartition("&signature=")
    assert hmac.new(API_SECRET.encode(), body.encode(), hashlib.sha256).hexdigest() == sig
    assert f"newClientOrderId={order.client_order_id}" in body and "newOrderRespType=FULL" in body


async def test_secrets_never_reach_logs(fake, make_binance, caplog):
    caplog.set_level(logging.DEBUG)
    ex = await make_binance()
    await ex.fetch_balances()
    await ex.place_order(_limit())
    assert API_SECRET not in caplog.text and API_KEY not in caplog.text
    assert API_SECRET not in repr(ex.rest.__dict__)


async def test_limit_order_round_trip(fake, make_binance):
    ex = await make_binance()
    req = _limit(qty="0.0012345", price="30000.129")
    order = await ex.place_order(req)
    assert order.status is OrderStatus.OPEN and order.qty == D("0.00123") and order.price == D("30000.12")
    assert order.client_order_id == req.client_order_id and order.exchange_order_id
    fetched = await ex.fetch_order("BTC", req.client_order_id)  # by client id ...
    assert fetched.exchange_order_id == order.exchange_order_id
    fetched = await ex.fetch_order("BTC", order.exchange_order_id)  # ... or by exchange id
    assert fetched.client_order_id == req.client_order_id
    assert [o.client_order_id for o in await ex.fetch_open_orders("BTC")] == [req.client_order_id]
    assert [o.symbol for o in await ex.fetch_open_orders()] == ["BTC"]
    assert (await ex.fetch_balances())["USDT"] == D("100000") - D("0.00123") * D("30000.12")
    cancelled = await ex.cancel_order("BTC", req.client_order_id)
    assert cancelled.status is OrderStatus.CANCELED and cancelled.id == req.client_order_id
    assert await ex.fetch_open_orders("BTC") == []
    again = await ex.cancel_order("BTC", req.client_order_id)  # already final: returned as it is
    assert again.status is OrderStatus.CANCELED


async def test_ioc_limit_fills_what_the_book_holds_and_expires_the_rest(fake, make_binance):
    ex = await make_binance()
    fake.silent = True
    fake.set_book("BTCUSDT", [("59999", "1")], [("60000", "0.01"), ("60001", "0.02"), ("60005", "5")])
    order = await ex.place_order(_limit(qty="0.05", price="60001", tif="IOC"))
    post = [r for r in fake.received if r.path == "/api/v3/order" and r.method == "POST"][-1]
    assert "type=LIMIT" in post.body and "timeInForce=IOC" in post.body
    # 0.01 @ 60000 + 0.02 @ 60001 fill; the remaining 0.02 expires (Binance: EXPIRED)
    assert order.status is OrderStatus.CANCELED and order.filled_qty == D("0.03")
    assert order.avg_price == (D("0.01") * 60000 + D("0.02") * 60001) / D("0.03")
    assert (order.fee, order.fee_currency) == (D("0.00003"), "BTC")  # 0.1 % of 0.03 BTC, in the coin bought
    balances = await ex.fetch_balance_details()
    assert balances["BTC"].free == D("2") + D("0.03") - D("0.00003") and balances["USDT"].locked == 0
    assert balances["USDT"].free == D("100000") - (D("0.01") * 60000 + D("0.02") * 60001)


async def test_market_orders_fill_with_fees(fake, make_binance):
    ex = await make_binance()
    fake.silent = True
    fake.set_book("BTCUSDT", [("59999", "1")], [("60000", "0.01"), ("60001", "1")])
    await ex.fetch_order_book("BTC", 5)
    buy = await ex.place_order(OrderRequest(symbol="BTC", side=Side.BUY, order_type=OrderType.MARKET,
                                            client_order_id=new_id(), qty=D("0.02")))
    assert buy.status is OrderStatus.FILLED and buy.filled_qty == D("0.02")
    assert buy.avg_price == (D("0.01") * 60000 + D("0.01") * 60001) / D("0.02")
    assert buy.fee == D("0.00002") and buy.fee_currency == "BTC"
    sell = await ex.place_order(OrderRequest(symbol="BTC", side=Side.SELL, order_type=OrderType.MARKET,
                                             client_order_id=new_id(), qty=D("0.5")))
    assert sell.status is OrderStatus.FILLED and (sell.fee, sell.fee_currency) == (D("29.9995"), "USDT")
    by_quote = await ex.place_order(OrderRequest(symbol="BTC", side=Side.BUY, order_type=OrderType.MARKET,
                                                 client_order_id=new_id(), quote_amount=D("120.0")))
    assert by_quote.status is OrderStatus.FILLED
    body = [r for r in fake.received if r.path == "/api/v3/order" and r.method == "POST"][-1].body
    assert "quoteOrderQty=120" in body and "quantity=" not in body


async def test_client_side_filters_refuse_before_sending(fake, make_binance):
    ex = await make_binance()
    with pytest.raises(OrderRejected) as caught:
        await ex.place_order(_limit(qty="0.0001", price="30000"))  # 3 USDT < 5 USDT NOTIONAL
    assert caught.value.filter_type == "NOTIONAL" and caught.value.kind == "order_rejected"
    with pytest.raises(OrderRejected):
        await ex.place_order(_limit(qty="0.000001"))  # below minQty
    with pytest.raises(OrderRejected):
        await ex.place_order(_limit(tif="GTX"))
    assert "POST" not in _order_calls(fake)


async def test_server_side_errors_are_taxonomy_kinds(fake, make_binance):
    ex = await make_binance()
    with pytest.raises(InsufficientFunds) as caught:
        await ex.place_order(_limit(qty="5", price="30000"))  # 150k USDT > 100k
    assert caught.value.code == -2010 and caught.value.kind == "insufficient_funds"
    fake.inject("venue_error", path="/api/v3/order", code=-1013, msg="Filter failure: PERCENT_PRICE_BY_SIDE")
    with pytest.raises(OrderRejected) as caught:
        await ex.place_order(_limit())
    assert caught.value.filter_type == "PERCENT_PRICE_BY_SIDE"
    fake.inject("reject", message="Order would immediately match and take.")
    with pytest.raises(OrderRejected, match="would immediately match") as caught:
        await ex.place_order(_limit())
    assert caught.value.code == -2010
    fake.inject("insufficient_balance")
    with pytest.raises(InsufficientFunds):
        await ex.place_order(_limit())
    with pytest.raises(UnknownOrder):
        await ex.fetch_order("BTC", "no-such-order")
    with pytest.raises(UnknownOrder):
        await ex.cancel_order("BTC", "123456789")


async def test_bad_key_or_secret_is_an_auth_error(fake, make_binance):
    ex = await make_binance(api_secret="wrong-secret")
    with pytest.raises(AuthenticationError) as caught:
        await ex.fetch_balances()
    assert caught.value.code == -1022
    ex2 = await make_binance(api_key="wrong-key")
    with pytest.raises(AuthenticationError):
        await ex2.fetch_balances()


async def test_clock_drift_refreshes_the_offset_and_retries(fake, make_binance):
    fake.clock_offset_ms = 30_000  # the exchange is 30 s ahead of us
    ex = await make_binance()
    assert abs(ex.rest.offset_ms - 30_000) < 1500  # measured at connect (half a round trip of error at most)
    await ex.fetch_balances()
    fake.clock_offset_ms = -45_000  # the exchange clock jumps: next signed call gets -1021
    syncs = [p for _, p in fake.requests].count("/api/v3/time")
    assert (await ex.fetch_balances())["USDT"] == D("100000")
    assert [p for _, p in fake.requests].count("/api/v3/time") == syncs + 1
    assert abs(ex.rest.offset_ms + 45_000) < 1500
    # a -1021 on an order POST: the order was not processed, so it is re-signed and sent once more
    fake.inject("venue_error", path="/api/v3/order", code=-1021,
                msg="Timestamp for this request is outside of the recvWindow.")
    req = _limit()
    order = await ex.place_order(req)
    assert order.status is OrderStatus.OPEN and len(fake.orders_with(req.client_order_id)) == 1
    gauge = ex.context.registry.get_sample_value("arbframe_exchange_clock_offset_seconds", {"exchange": "binance"})
    assert gauge is not None and abs(gauge + 45) < 1.5


@pytest.mark.parametrize(("fault", "details"), [("error_after_accept", {}), ("accept_then_timeout", {"drop": True}),
                                                ("accept_then_timeout", {"delay": 1.5})])
async def test_lost_answer_to_an_order_is_looked_up_never_doubled(fake, make_binance, fault, details):
    ex = await make_binance(timeout_seconds=0.5)
    fake.inject(fault, **details)
    req = _limit()
    order = await ex.place_order(req)
    assert order.client_order_id == req.client_order_id and order.status is OrderStatus.OPEN
    assert len(fake.orders_with(req.client_order_id)) == 1 and fake.placements.count(req.client_order_id) == 1
    assert _order_calls(fake)[:2] == ["POST", "GET"], "looked up, not re-sent"
    lookup = next(r for r in fake.received if r.path == "/api/v3/order" and r.method == "GET")
    assert f"origClientOrderId={req.client_order_id}" in lookup.query


async def test_filled_order_whose_answer_is_lost_and_not_found_is_never_resent(fake, make_binance):
    """Binance refuses a duplicate client order id only while that order is open: re-sending a filled IOC
    order (answer lost, look-ups missed it) would fill it twice. The driver raises OrderStatusUnknown instead."""
    ex = await make_binance(order_lookup_attempts=3)
    fake.silent = True
    fake.set_book("BTCUSDT", [("59999", "1")], [("60000", "1")])
    fake.inject("error_after_accept")
    fake.lookup_misses = 3
    req = _limit(qty="0.01", price="60000", tif="IOC")
    with pytest.raises(OrderStatusUnknown) as caught:
        await ex.place_order(req)
    assert caught.value.client_order_id == req.client_order_id and caught.value.kind == "order_status_unknown"
    assert _order_calls(fake) == ["POST", "GET", "GET", "GET"], "never re-sent"
    [placed] = fake.orders_with(req.client_order_id)
    assert placed.status == "filled" and placed.filled_qty == D("0.01")
    assert (await ex.fetch_order("BTC", req.client_order_id)).status is OrderStatus.FILLED  # the caller reconciles
    assert ex.context.registry.get_sample_value(
        "arbframe_exchange_errors_total", {"exchange": "binance", "kind": "order_status_unknown"}) == 1


async def test_order_refused_before_processing_is_not_resent_either(fake, make_binance):
    ex = await make_binance()
    fake.inject("unavailable", path="/api/v3/order")  # 503 before the order reached the engine
    req = _limit()
    with pytest.raises(OrderStatusUnknown):
        await ex.place_order(req)
    assert _order_calls(fake) == ["POST", "GET", "GET", "GET"] and fake.orders_with(req.client_order_id) == []


async def test_reused_client_order_id_of_an_open_order_returns_it(fake, make_binance):
    ex = await make_binance()
    req = _limit()
    first = await ex.place_order(req)
    second = await ex.place_order(req)  # Binance: "Duplicate order sent." -> the open order is ours
    assert second.exchange_order_id == first.exchange_order_id
    assert len(fake.orders_with(req.client_order_id)) == 1


async def test_delayed_fill_shows_new_then_fills_on_a_later_lookup(fake, make_binance):
    ex = await make_binance()
    fake.silent = True
    fake.set_book("BTCUSDT", [("59999", "1")], [("60000", "1")])
    fake.inject("delayed_fill", polls=1)
    req = _limit(qty="0.01", price="60000", tif="IOC")
    order = await ex.place_order(req)
    assert order.status is OrderStatus.OPEN and order.filled_qty == 0  # Binance: NEW, funds locked
    assert (await ex.fetch_balance_details())["USDT"].locked == D("600")
    assert (await ex.fetch_order("BTC", req.client_order_id)).status is OrderStatus.OPEN
    filled = await ex.fetch_order("BTC", req.client_order_id)
    assert filled.status is OrderStatus.FILLED and filled.filled_qty == D("0.01") and filled.avg_price == 60000
    assert (await ex.fetch_balance_details())["USDT"].locked == 0


async def test_partial_fill_of_an_ioc_order_expires_the_rest(fake, make_binance):
    ex = await make_binance()
    fake.silent = True
    fake.set_book("BTCUSDT", [("59999", "1")], [("60000", "1")])
    fake.inject("partial", fraction="0.5")
    req = _limit(qty="0.02", price="60000", tif="IOC")
    order = await ex.place_order(req)
    assert order.status is OrderStatus.CANCELED and order.filled_qty == D("0.01") and order.qty == D("0.02")
    [placed] = fake.orders_with(req.client_order_id)
    assert fake.order_json(placed)["status"] == "EXPIRED"  # Binance's word for an IOC's unfilled rest


async def test_order_ban_418_raises_banned_and_nothing_more_is_sent(fake, make_binance):
    ex = await make_binance()
    fake.inject("banned", path="/api/v3/order", retry_after=60)
    with pytest.raises(Banned) as caught:
        await ex.place_order(_limit())
    assert caught.value.retry_after == 60 and not caught.value.retry_safe
    count = len(fake.requests)
    with pytest.raises(Banned):
        await ex.fetch_balances()
    assert len(fake.requests) == count and fake.placements == []


async def test_order_rate_limit_429_waits_and_sends_once(fake, make_binance):
    ex = await make_binance()
    fake.inject("rate_limited", path="/api/v3/order", retry_after=0.2)
    req = _limit()
    await ex.place_order(req)
    assert _order_calls(fake) == ["POST", "POST"] and len(fake.orders_with(req.client_order_id)) == 1


async def test_dry_run_goes_to_the_test_endpoint_and_fills_nothing(fake, make_binance):
    ex = await make_binance()
    fake.silent = True
    fake.set_book("BTCUSDT", [("59999", "1")], [("60000", "1")])
    req = _limit(qty="0.01", price="60000", tif="IOC", test=True)
    order = await ex.place_order(req)
    assert order.status is OrderStatus.NEW and order.filled_qty == 0 and order.client_order_id == req.client_order_id
    [post] = [r for r in fake.received if r.method == "POST"]
    assert post.path == "/api/v3/order/test" and "timeInForce=IOC" in post.body and "signature=" in post.body
    assert fake.orders == {} and "/api/v3/order" not in [p for _, p in fake.requests]
    assert (await ex.fetch_balances())["USDT"] == D("100000")
    with pytest.raises(OrderRejected) as caught:  # Binance still checks it: a filter failure comes back
        await ex.place_order(_limit(qty="0.00001", price="600.01", test=True))
    assert caught.value.filter_type == "NOTIONAL"


# ---------------------------------------------------------------------------------- not live / mock
async def test_paper_mode_with_keys_never_sends_private_requests(fake, make_binance, caplog):
    caplog.set_level(logging.INFO)
    ex = await make_binance(mode="paper")
    assert not ex.live_private
    await ex.fetch_order_book("BTC", 5)
    assert await ex.fetch_balances() == {"USDT": D("10000")}
    order = await ex.place_order(OrderRequest(symbol="BTC", side=Side.BUY, order_type=OrderType.MARKET,
                                              client_order_id=new_id(), qty=D("0.01")))
    assert order.status is OrderStatus.FILLED and order.simulated
    dry = await ex.place_order(_limit(test=True))
    assert dry.status is OrderStatus.NEW and dry.simulated and dry.filled_qty == 0
    assert await ex.fetch_open_orders("BTC") == []
    assert _private_requests(fake) == []
    assert "only in live mode" in caplog.text


async def test_no_credentials_uses_the_simulated_account_with_a_warning(fake, make_binance, caplog):
    caplog.set_level(logging.WARNING)
    ex = await make_binance(mode="live", api_key="", api_secret="${BINANCE_API_SECRET}")
    assert not ex.has_credentials and not ex.live_private
    assert "SimulatedAccount" in caplog.text
    order = await ex.place_order(_limit(qty="0.001", price="30000"))
    assert order.simulated and order.status is OrderStatus.OPEN
    assert (await ex.fetch_order("BTC", order.id)).id == order.id
    with pytest.raises(UnknownOrder):
        await ex.fetch_order("BTC", "missing")
    assert _private_requests(fake) == []


async def test_mock_mode_uses_the_simulated_exchange(fake, make_binance, plugin_context, caplog):
    caplog.set_level(logging.INFO)
    market = SimulatedMarket(["BTC", "ETH"], seed=3)
    ctx = plugin_context(mode="live", mock=True)
    ctx.market = market
    ex = await make_binance(context=ctx)
    assert ex.simulated and "SimulatedExchange" in caplog.text
    book = await ex.fetch_order_book("BTC", 5)
    assert book.simulated and book == market.order_book("binance", "BTC", 5)
    assert ex.stream_order_books(["BTC"]) is None
    assert ex.market_rules("BTC").step_size > 0
    order = await ex.place_order(OrderRequest(symbol="BTC", side=Side.BUY, order_type=OrderType.MARKET,
                                              client_order_id=new_id(), qty=D("0.01")))
    assert order.simulated and order.status is OrderStatus.FILLED
    assert fake.requests == [], "mock mode must not touch the network"
    health = await ex.health_probe()
    assert health.status.value == "OK" and health.details["simulated"] is True


def _numbers_as_json_numbers(answer):
    """Every numeric field sent as a JSON number (or a quoted ms time), as some proxies and testnets do."""
    out = dict(answer)
    for key in ("price", "origQty", "executedQty", "cummulativeQuoteQty"):
        out[key] = float(out[key])
    out["transactTime"] = str(out.get("transactTime", 1_700_000_000_000))
    out["fills"] = [dict(f, commission=float(f["commission"]), price=float(f["price"])) for f in out.get("fills", ())]
    return out


async def test_order_answer_with_numbers_instead_of_strings_is_read(fake, make_binance):
    ex = await make_binance()
    fake.silent = True
    fake.set_book("BTCUSDT", [("59999", "1")], [("60000", "0.01"), ("60001", "1")])
    await ex.fetch_order_book("BTC", 5)
    fake.order_answer_edit = _numbers_as_json_numbers
    order = await ex.place_order(OrderRequest(symbol="BTC", side=Side.BUY, order_type=OrderType.MARKET,
                                              client_order_id=new_id(), qty=D("0.02")))
    assert order.status is OrderStatus.FILLED and order.filled_qty == D("0.02")
    assert order.fee == D("0.00002") and order.fee_currency == "BTC"
    assert order.ts.year >= 2023


async def test_unreadable_answer_after_acceptance_is_looked_up_never_resent(fake, make_binance):
    ex = await make_binance(order_lookup_attempts=2)
    fake.order_answer_edit = lambda answer: dict(answer, executedQty={"oops": 1})
    req = _limit()
    with pytest.raises(OrderStatusUnknown) as caught:
        await ex.place_order(req)
    assert "'executedQty'" in str(caught.value) and req.client_order_id in str(caught.value)
    assert caught.value.client_order_id == req.client_order_id
    assert len(fake.orders_with(req.client_order_id)) == 1
    assert _order_calls(fake) == ["POST", "GET", "GET"]
    fake.order_answer_edit = None  # readable again: the order is there, once
    assert (await ex.fetch_order("BTC", req.client_order_id)).status is OrderStatus.OPEN


async def test_fees_in_several_assets_are_all_kept(fake, make_binance):
    ex = await make_binance()
    fake.silent = True
    fake.set_book("BTCUSDT", [("59999", "1")], [("60000", "0.01"), ("60001", "1")])
    await ex.fetch_order_book("BTC", 5)

    def bnb_then_base(answer):
        fills = [dict(f) for f in answer["fills"]]
        fills[0].update(commission="0.00015000", commissionAsset="BNB")  # BNB ran out after the first fill
        return dict(answer, fills=fills)

    fake.order_answer_edit = bnb_then_base
    order = await ex.place_order(OrderRequest(symbol="BTC", side=Side.BUY, order_type=OrderType.MARKET,
                                              client_order_id=new_id(), qty=D("0.02")))
    assert (order.fee, order.fee_currency) == (D("0.00015"), "BNB")
    assert order.fees == (("BNB", D("0.00015")), ("BTC", D("0.00001")))


async def test_locked_balances_are_kept(fake, make_binance):
    ex = await make_binance()
    await ex.place_order(_limit(qty="0.001", price="30000"))  # holds 30 USDT
    details = await ex.fetch_balance_details()
    assert details["USDT"].locked == D("30") and details["USDT"].free == D("100000") - D("30")
    assert details["USDT"].total == D("100000")
    assert (await ex.fetch_balances())["USDT"] == details["USDT"].free


async def test_order_found_by_lookup_carries_its_commission(fake, make_binance):
    """``GET /api/v3/order`` has no ``fills``: an order learned by look-up (its placement answer lost) reads its
    commission from ``GET /api/v3/myTrades``; a buy's 0.1 % is taken in the coin: 0.001 BTC * 0.001."""
    ex = await make_binance(timeout_seconds=0.5)
    fake.inject("error_after_accept")
    req = _limit(qty="0.001", price="100100", tif="IOC")
    order = await ex.place_order(req)
    assert order.status is OrderStatus.FILLED and order.filled_qty == D("0.001")
    assert (order.fee, order.fee_currency) == (D("0.000001"), "BTC")
    trades = next(r for r in fake.received if r.path == "/api/v3/myTrades")
    assert f"orderId={order.exchange_order_id}" in trades.query
