"""Private REST against the fake Binance: signing over the exact bytes, time sync, orders that never double."""

from __future__ import annotations

import hashlib
import hmac
import logging
from decimal import Decimal
from urllib.parse import parse_qsl

import pytest
from arbframe_exchange_binance import errors as E

from arbframe import OrderRequest, OrderStatus, OrderType, Side, new_id

from .conftest import API_KEY, API_SECRET

D = Decimal
PRIVATE = ("/api/v3/account", "/api/v3/order", "/api/v3/openOrders")


def _private_requests(fake):
    return [r for r in fake.requests if r["path"] in PRIVATE]


def _limit(qty="0.001", price="30000", side=Side.BUY, symbol="BTC", cid=None):
    return OrderRequest(symbol=symbol, side=side, order_type=OrderType.LIMIT, client_order_id=cid or new_id(),
                        qty=D(qty), price=D(price))


def _orders_with(fake, cid):
    return [o for o in fake.orders.values() if o["clientOrderId"] == cid]


async def test_signature_is_over_the_exact_bytes_sent(fake, make_binance):
    ex = await make_binance()
    balances = await ex.fetch_balances()
    assert balances["USDT"] == D("100000") and balances["BTC"] == D("2") and "BNB" not in balances
    req = [r for r in fake.requests if r["path"] == "/api/v3/account"][-1]
    assert req["headers"]["X-MBX-APIKEY"] == API_KEY
    query = req["query"]
    payload, _, signature = query.rpartition("&signature=")
    assert hmac.new(API_SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest() == signature
    params = dict(parse_qsl(query))
    assert params["recvWindow"] == "5000" and params["omitZeroBalances"] == "true" and int(params["timestamp"]) > 0
    # POST: everything in the form body, signature last
    order = await ex.place_order(_limit())
    post = [r for r in fake.requests if r["path"] == "/api/v3/order" and r["method"] == "POST"][-1]
    assert post["query"] == "" and post["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    body, _, sig = post["body"].rpartition("&signature=")
    assert hmac.new(API_SECRET.encode(), body.encode(), hashlib.sha256).hexdigest() == sig
    assert f"newClientOrderId={order.client_order_id}" in body


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
    # cancelling again: the order is final; it is returned as it is
    again = await ex.cancel_order("BTC", req.client_order_id)
    assert again.status is OrderStatus.CANCELED


async def test_market_orders_fill_with_fees(fake, make_binance):
    ex = await make_binance()
    fake.silent = True  # freeze the books (no pushes, no ticks)
    fake.set_book("BTCUSDT", [("59999", "1")], [("60000", "0.01"), ("60001", "1")])
    await ex.fetch_order_book("BTC", 5)
    buy = await ex.place_order(OrderRequest(symbol="BTC", side=Side.BUY, order_type=OrderType.MARKET,
                                            client_order_id=new_id(), qty=D("0.02")))
    assert buy.status is OrderStatus.FILLED and buy.filled_qty == D("0.02")
    assert buy.avg_price == (D("0.01") * 60000 + D("0.01") * 60001) / D("0.02")
    assert buy.fee == D("0.00002") and buy.fee_currency == "BTC"
    by_quote = await ex.place_order(OrderRequest(symbol="BTC", side=Side.BUY, order_type=OrderType.MARKET,
                                                 client_order_id=new_id(), quote_amount=D("120.0")))
    assert by_quote.status is OrderStatus.FILLED
    body = [r for r in fake.requests if r["path"] == "/api/v3/order" and r["method"] == "POST"][-1]["body"]
    assert "quoteOrderQty=120" in body and "quantity=" not in body


async def test_client_side_filters_refuse_before_sending(fake, make_binance):
    ex = await make_binance()
    posts = len([r for r in fake.requests if r["method"] == "POST"])
    with pytest.raises(E.BinanceFilterError) as caught:
        await ex.place_order(_limit(qty="0.0001", price="30000"))  # 3 USDT < 5 USDT NOTIONAL
    assert caught.value.filter_type == "NOTIONAL"
    with pytest.raises(E.BinanceFilterError):
        await ex.place_order(_limit(qty="0.000001"))  # below minQty
    assert len([r for r in fake.requests if r["method"] == "POST"]) == posts


async def test_server_side_errors_are_typed(fake, make_binance):
    ex = await make_binance()
    with pytest.raises(E.BinanceInsufficientBalance):
        await ex.place_order(_limit(qty="5", price="30000"))  # 150k USDT > 100k
    fake.fail("/api/v3/order", "error", method="POST", code=-1013, msg="Filter failure: PERCENT_PRICE_BY_SIDE")
    with pytest.raises(E.BinanceFilterError) as caught:
        await ex.place_order(_limit())
    assert caught.value.filter_type == "PERCENT_PRICE_BY_SIDE"
    with pytest.raises(E.BinanceUnknownOrder):
        await ex.fetch_order("BTC", "no-such-order")
    with pytest.raises(E.BinanceUnknownOrder):
        await ex.cancel_order("BTC", "123456789")


async def test_bad_key_or_secret_is_an_auth_error(fake, make_binance):
    ex = await make_binance(api_secret="wrong-secret")
    with pytest.raises(E.BinanceAuthError) as caught:
        await ex.fetch_balances()
    assert caught.value.code == -1022
    ex2 = await make_binance(api_key="wrong-key")
    with pytest.raises(E.BinanceAuthError):
        await ex2.fetch_balances()


async def test_clock_drift_refreshes_the_offset_and_retries(fake, make_binance):
    fake.clock_offset_ms = 30_000  # the exchange is 30 s ahead of us
    ex = await make_binance()
    assert abs(ex.rest.offset_ms - 30_000) < 1500  # measured at connect (half a round trip of error at most)
    await ex.fetch_balances()
    fake.clock_offset_ms = -45_000  # the exchange clock jumps: next signed call gets -1021
    syncs = sum(1 for r in fake.requests if r["path"] == "/api/v3/time")
    balances = await ex.fetch_balances()
    assert balances["USDT"] == D("100000")
    assert sum(1 for r in fake.requests if r["path"] == "/api/v3/time") == syncs + 1
    assert abs(ex.rest.offset_ms + 45_000) < 1500
    # a -1021 on an order POST: the order was not processed, so it is re-signed and sent once more
    fake.fail("/api/v3/order", "1021", method="POST")
    req = _limit()
    order = await ex.place_order(req)
    assert order.status is OrderStatus.OPEN and len(_orders_with(fake, req.client_order_id)) == 1
    gauge = ex.context.registry.get_sample_value("arbframe_exchange_clock_offset_seconds", {"exchange": "binance"})
    assert gauge is not None and abs(gauge + 45) < 1.5


@pytest.mark.parametrize("kind", ["500_after", "drop_after", "slow_after"])
async def test_lost_answer_to_an_order_is_looked_up_never_doubled(fake, make_binance, kind):
    ex = await make_binance(timeout_seconds=0.5)
    fake.fail("/api/v3/order", kind, method="POST", delay=1.5)
    req = _limit()
    order = await ex.place_order(req)
    assert order.client_order_id == req.client_order_id and order.status is OrderStatus.OPEN
    assert len(_orders_with(fake, req.client_order_id)) == 1
    posts = [r for r in fake.requests if r["path"] == "/api/v3/order" and r["method"] == "POST"]
    assert len(posts) == 1, "the order must not be re-sent once the look-up found it"
    lookups = [r for r in fake.requests if r["path"] == "/api/v3/order" and r["method"] == "GET"]
    assert lookups and f"origClientOrderId={req.client_order_id}" in lookups[0]["query"]


async def test_order_that_never_arrived_is_sent_again_after_lookups(fake, make_binance):
    ex = await make_binance()
    fake.fail("/api/v3/order", "500", method="POST")  # rejected before processing
    req = _limit()
    order = await ex.place_order(req)
    assert order.status is OrderStatus.OPEN
    assert len(_orders_with(fake, req.client_order_id)) == 1
    methods = [r["method"] for r in fake.requests if r["path"] == "/api/v3/order"]
    assert methods == ["POST", "GET", "GET", "GET", "POST"]


async def test_unsettled_order_raises_status_unknown_without_resending(fake, make_binance):
    ex = await make_binance(resend_after_lookup=False)
    fake.fail("/api/v3/order", "500", method="POST")
    req = _limit()
    with pytest.raises(E.BinanceOrderStatusUnknown) as caught:
        await ex.place_order(req)
    assert caught.value.client_order_id == req.client_order_id
    assert [r["method"] for r in fake.requests if r["path"] == "/api/v3/order"].count("POST") == 1


async def test_reused_client_order_id_returns_the_existing_order(fake, make_binance):
    ex = await make_binance()
    req = _limit()
    first = await ex.place_order(req)
    second = await ex.place_order(req)  # Binance: "Duplicate order sent." -> the open order is ours
    assert second.exchange_order_id == first.exchange_order_id
    assert len(_orders_with(fake, req.client_order_id)) == 1


async def test_order_rate_limit_429_waits_and_sends_once(fake, make_binance):
    ex = await make_binance()
    fake.fail("/api/v3/order", "429", method="POST", retry_after=1)
    req = _limit()
    await ex.place_order(req)
    assert len(_orders_with(fake, req.client_order_id)) == 1


# ---------------------------------------------------------------------------------- not live / mock
async def test_paper_mode_with_keys_never_sends_private_requests(fake, make_binance, caplog):
    caplog.set_level(logging.INFO)
    ex = await make_binance(mode="paper")
    assert not ex.live_private
    await ex.fetch_order_book("BTC", 5)
    balances = await ex.fetch_balances()
    assert balances == {"USDT": D("10000")}
    order = await ex.place_order(OrderRequest(symbol="BTC", side=Side.BUY, order_type=OrderType.MARKET,
                                              client_order_id=new_id(), qty=D("0.01")))
    assert order.status is OrderStatus.FILLED and order.simulated
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
    with pytest.raises(E.BinanceUnknownOrder):
        await ex.fetch_order("BTC", "missing")
    assert _private_requests(fake) == []


async def test_mock_mode_uses_the_simulated_exchange(fake, make_binance, caplog):
    import arbframe

    caplog.set_level(logging.INFO)
    market = arbframe.SimulatedMarket(["BTC", "ETH"], seed=3)
    from .conftest import make_context

    ctx = make_context(mode="live", mock=True)
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
    with pytest.raises(E.BinanceOrderStatusUnknown) as caught:
        await ex.place_order(req)
    message = str(caught.value)
    assert "'executedQty'" in message and req.client_order_id in message
    assert caught.value.client_order_id == req.client_order_id
    assert len(_orders_with(fake, req.client_order_id)) == 1
    assert [r["method"] for r in fake.requests if r["path"] == "/api/v3/order"] == ["POST", "GET", "GET"]
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
