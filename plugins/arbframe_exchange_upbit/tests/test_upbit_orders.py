"""Orders against the fake's matching engine: the client order id as Upbit's ``identifier``, rounding and minimums,
IOC/FOK, dry runs on ``POST /v1/orders/test``, no blind resends (a lost answer is looked up by identifier, else
``OrderStatusUnknown``), and where private calls go in paper / no-keys / mock mode."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest

from arbframe import (
    InsufficientFunds,
    OrderRejected,
    OrderRequest,
    OrderStatus,
    OrderStatusUnknown,
    OrderType,
    Side,
    UnknownOrder,
    new_id,
)

D = Decimal
FEE = D("0.0005")


def _posts(fake, path: str = "/v1/orders") -> int:
    return fake.requests.count(("POST", path))


def limit(side: Side, qty: str, price: str | Decimal, symbol: str = "BTC", tif: str = "GTC") -> OrderRequest:
    return OrderRequest(symbol, side, OrderType.LIMIT, new_id(), qty=D(qty), price=D(price), time_in_force=tif)


async def test_client_order_id_is_sent_as_identifier_and_looks_the_order_up(upbit, fake) -> None:
    request = limit(Side.BUY, "0.01", "140000000")
    order = await upbit.place_order(request)
    assert fake.placements == [request.client_order_id]  # the matching engine saw it as the client id
    assert fake.view(fake.get_order(client_id=request.client_order_id))["identifier"] == request.client_order_id
    assert (order.id, order.client_order_id) == (request.client_order_id, request.client_order_id)
    assert order.exchange_order_id == "00000000-0000-4000-8000-000000000001"
    by_identifier = await upbit.fetch_order("BTC", request.client_order_id)
    by_uuid = await upbit.fetch_order("BTC", order.exchange_order_id)
    assert by_identifier == by_uuid and by_uuid.status is OrderStatus.OPEN
    assert "identifier=" in next(r.query for r in fake.log if r.path == "/v1/order")


async def test_limit_order_is_rounded_locks_funds_and_cancels(upbit, fake) -> None:
    best_bid = fake.book("BTC")[0][0][0]
    request = limit(Side.BUY, "0.0123456789", best_bid - D("50000.5"))
    order = await upbit.place_order(request)
    price, qty = best_bid - D(50000), D("0.01234567")  # a buy rounds up to the 1,000 KRW unit; 8 decimals
    stored = fake.get_order(client_id=request.client_order_id)
    assert (stored.price, stored.qty, stored.tif) == (price, qty, "GTC")
    assert order.status is OrderStatus.OPEN and order.qty == qty and order.price == price
    open_orders = await upbit.fetch_open_orders("BTC")
    assert [o.exchange_order_id for o in open_orders] == [order.exchange_order_id]
    query = next(r.query for r in fake.log if r.path == "/v1/orders/open")
    assert "states%5B%5D" not in query and "states[]=wait&states[]=watch" in query
    held = price * qty * (1 + FEE)  # cost and fee are locked while the order rests
    details = await upbit.fetch_balance_details()
    assert details["KRW"].locked == held and details["KRW"].free == D(100_000_000) - held
    assert (await upbit.fetch_balances())["KRW"] == D(100_000_000) - held
    cancelled = await upbit.cancel_order("BTC", order.exchange_order_id)
    assert cancelled.status is OrderStatus.CANCELED
    assert await upbit.fetch_open_orders() == []
    assert (await upbit.fetch_balances())["KRW"] == D(100_000_000)


async def test_ioc_limit_fills_what_the_book_gives_and_cancels_the_rest(upbit, fake) -> None:
    fake.balances["KRW"] = D(1_000_000_000)
    asks = fake.book("BTC")[1]
    (p1, q1), (p2, q2) = asks[0], asks[1]
    request = limit(Side.BUY, str(q1 + q2 + D("0.1")), p2, tif="IOC")  # more than the levels up to p2 hold
    order = await upbit.place_order(request)
    stored = fake.get_order(client_id=request.client_order_id)
    assert stored.tif == "IOC" and fake.view(stored)["time_in_force"] == "ioc"
    assert order.status is OrderStatus.CANCELED and order.filled_qty == q1 + q2
    assert order.avg_price == (p1 * q1 + p2 * q2) / (q1 + q2)
    assert order.fee == (p1 * q1 + p2 * q2) * FEE and order.fee_currency == "KRW"
    spent = (p1 * q1 + p2 * q2) * (1 + FEE)
    assert (await upbit.fetch_balances())["KRW"] == D(1_000_000_000) - spent
    assert (await upbit.fetch_balance_details())["KRW"].locked == 0  # the canceled rest is unlocked


async def test_fok_that_cannot_fill_entirely_fills_nothing(upbit, fake) -> None:
    fake.balances["KRW"] = D(1_000_000_000)
    p1, q1 = fake.book("BTC")[1][0]
    order = await upbit.place_order(limit(Side.BUY, str(q1 * 2), p1, tif="FOK"))
    assert order.status is OrderStatus.CANCELED and order.filled_qty == 0
    assert (await upbit.fetch_balances())["KRW"] == D(1_000_000_000)


async def test_a_partial_fill_is_reported(upbit, fake) -> None:
    p1, q1 = fake.book("BTC")[1][0]
    fake.inject("partial", fraction="0.5")
    order = await upbit.place_order(limit(Side.BUY, str(q1), p1, tif="IOC"))
    assert order.status is OrderStatus.CANCELED and order.filled_qty == (q1 / 2).quantize(D("0.00000001"))


async def test_market_orders(upbit, fake) -> None:
    bids, asks = fake.book("BTC")
    by_amount = await upbit.place_order(OrderRequest("BTC", Side.BUY, OrderType.MARKET, new_id(),
                                                     quote_amount=D("10000.7")))
    view = fake.view(fake.get_order(client_id=by_amount.client_order_id))
    assert (view["ord_type"], view["price"], view["volume"]) == ("price", "10000", None)
    assert by_amount.status is OrderStatus.FILLED and by_amount.avg_price == asks[0][0]
    assert by_amount.filled_qty == D("0.00006756")  # 10,000 KRW / 148,001,000, 8 decimals down
    by_qty = await upbit.place_order(OrderRequest("BTC", Side.BUY, OrderType.MARKET, new_id(), qty=D("0.001")))
    view = fake.view(fake.get_order(client_id=by_qty.client_order_id))
    assert view["ord_type"] == "price" and D(view["price"]) == asks[0][0] * D("0.001")
    sell = await upbit.place_order(OrderRequest("BTC", Side.SELL, OrderType.MARKET, new_id(), qty=D("0.002")))
    assert fake.view(fake.get_order(client_id=sell.client_order_id))["ord_type"] == "market"
    assert sell.status is OrderStatus.FILLED and sell.avg_price == bids[0][0]
    assert sell.fee == D("0.002") * bids[0][0] * FEE and sell.fee_currency == "KRW"


async def test_below_minimum_is_refused_before_sending(upbit, fake) -> None:
    with pytest.raises(OrderRejected) as info:
        await upbit.place_order(limit(Side.BUY, "0.00003", "148000000"))  # 4,440 KRW
    assert info.value.code == "under_min_total_bid"
    with pytest.raises(OrderRejected):
        await upbit.place_order(OrderRequest("BTC", Side.BUY, OrderType.MARKET, new_id(), quote_amount=D(4999)))
    assert _posts(fake) == 0


async def test_venue_refusals_are_their_kinds(upbit, fake) -> None:
    with pytest.raises(InsufficientFunds) as info:
        await upbit.place_order(limit(Side.BUY, "100", "140000000"))
    assert info.value.code == "insufficient_funds_bid" and info.value.status == 400
    fake.inject("venue_error", path="/v1/orders", name="market_offline")
    with pytest.raises(OrderRejected, match="market_offline"):
        await upbit.place_order(limit(Side.BUY, "0.01", "140000000"))
    request = limit(Side.BUY, "0.01", "140000000")
    await upbit.place_order(request)
    with pytest.raises(OrderRejected, match="duplicate_identifier"):  # Upbit accepts an identifier once
        await upbit.place_order(request)


async def test_an_answer_lost_after_the_fill_is_settled_by_identifier(upbit, fake) -> None:
    p1, q1 = fake.book("BTC")[1][0]
    fake.inject("error_after_accept")  # the order fills, the answer is an HTTP 500
    request = limit(Side.BUY, str(q1 / 2), p1, tif="IOC")
    order = await upbit.place_order(request)
    assert order.client_order_id == request.client_order_id and order.status is OrderStatus.FILLED
    assert _posts(fake) == 1 and fake.placements == [request.client_order_id]


async def test_an_accepted_order_whose_answer_times_out_is_found(make_upbit, fake) -> None:
    ex = await make_upbit(timeout_seconds=0.3)
    fake.inject("accept_then_timeout", delay=1.0)
    request = limit(Side.BUY, "0.01", "140000000")
    order = await ex.place_order(request)
    assert order.client_order_id == request.client_order_id and order.status is OrderStatus.OPEN
    assert _posts(fake) == 1


async def test_timeout_before_the_venue_acts_is_status_unknown_and_found_later(make_upbit, fake, until,
                                                                              sample) -> None:
    """The order lands after every lookup missed it: the outcome is unknown (the connector used to say "not
    placed" although the venue then filled it); ``fetch_order`` by identifier finds it once it landed."""
    ex = await make_upbit(timeout_seconds=0.2, order_lookup_attempts=2)
    p1, q1 = fake.book("BTC")[1][0]
    fake.inject("timeout", path="/v1/orders", delay=0.8)  # the venue takes the order only after 0.8 s
    request = limit(Side.BUY, str(q1 / 2), p1, tif="IOC")
    with pytest.raises(OrderStatusUnknown) as info:
        await ex.place_order(request)
    assert info.value.client_order_id == request.client_order_id and info.value.kind == "order_status_unknown"
    assert not info.value.retry_safe and "fetch_order" in str(info.value)
    assert sample(ex, "arbframe_exchange_errors_total", kind="order_status_unknown") == 1
    await until(lambda: fake.placements)
    found = await ex.fetch_order("BTC", request.client_order_id)
    assert found.status is OrderStatus.FILLED and found.filled_qty == (q1 / 2)
    assert _posts(fake) == 1, "an order whose outcome is unknown is never sent again"


async def test_5xx_before_the_venue_acted_is_status_unknown_not_absent(upbit, fake) -> None:
    fake.inject("unavailable", path="/v1/orders")
    request = limit(Side.BUY, "0.01", "140000000")
    with pytest.raises(OrderStatusUnknown):
        await upbit.place_order(request)
    assert _posts(fake) == 1 and fake.placements == []
    with pytest.raises(UnknownOrder):
        await upbit.fetch_order("BTC", request.client_order_id)


async def test_a_delayed_fill_shows_on_the_lookup(upbit, fake) -> None:
    p1, q1 = fake.book("BTC")[1][0]
    fake.inject("delayed_fill", polls=0)
    request = limit(Side.BUY, str(q1 / 2), p1, tif="IOC")
    order = await upbit.place_order(request)
    assert order.status is OrderStatus.OPEN and order.filled_qty == 0  # Upbit's "wait"
    assert (await upbit.fetch_order("BTC", request.client_order_id)).status is OrderStatus.FILLED


async def test_429_on_an_order_is_retried_with_the_same_identifier(upbit, fake) -> None:
    fake.inject("rate_limited", path="/v1/orders")
    request = limit(Side.BUY, "0.01", "140000000")
    order = await upbit.place_order(request)
    assert _posts(fake) == 2 and fake.placements == [request.client_order_id]
    assert order.client_order_id == request.client_order_id


async def test_dry_run_goes_to_the_test_endpoint_and_never_fills(upbit, fake) -> None:
    p1, q1 = fake.book("BTC")[1][0]
    request = OrderRequest("BTC", Side.BUY, OrderType.LIMIT, new_id(), qty=q1, price=p1, time_in_force="IOC",
                           test=True)
    order = await upbit.place_order(request)
    assert order.status is OrderStatus.NEW and order.filled_qty == 0
    assert order.client_order_id == request.client_order_id
    assert _posts(fake, "/v1/orders/test") == 1 and _posts(fake) == 0 and fake.placements == []
    assert fake.test_orders[0]["identifier"] == request.client_order_id
    assert fake.test_orders[0]["time_in_force"] == "ioc"
    assert (await upbit.fetch_balances())["KRW"] == D(100_000_000)
    with pytest.raises(InsufficientFunds):  # checked by the venue like a real order
        await upbit.place_order(OrderRequest("BTC", Side.BUY, OrderType.LIMIT, new_id(), qty=D(100), price=p1,
                                             test=True))


async def test_dry_run_on_a_simulated_account_places_nothing(make_upbit) -> None:
    ex = await make_upbit(mode="paper")
    request = OrderRequest("BTC", Side.BUY, OrderType.LIMIT, new_id(), qty=D("0.01"), price=D(148_100_000), test=True)
    order = await ex.place_order(request)
    assert order.status is OrderStatus.NEW and order.filled_qty == 0 and order.simulated
    assert (await ex.fetch_balances())["KRW"] == D(10_000_000)


async def test_paper_mode_never_sends_private_calls(make_upbit, fake, caplog) -> None:
    caplog.set_level(logging.INFO, "arbframe.upbit")
    ex = await make_upbit(mode="paper", simulated_balances={"KRW": 50000000, "BTC": "0.5"})
    assert "balances and orders from a simulated account" in caplog.text
    assert await ex.fetch_balances() == {"KRW": D(50000000), "BTC": D("0.5")}
    order = await ex.place_order(limit(Side.BUY, "0.01", fake.book("BTC")[1][0][0]))
    assert order.status is OrderStatus.FILLED
    assert (await ex.fetch_balances())["BTC"] == D("0.51")
    assert await ex.fetch_open_orders() == []
    assert not [r for r in fake.log if r.authenticated], "nothing signed may reach Upbit outside live mode"
    assert not ex.simulated  # market data is real (the fake server's)


async def test_live_mode_without_keys_warns_and_simulates(make_upbit, fake, caplog) -> None:
    caplog.set_level(logging.WARNING, "arbframe.upbit")
    ex = await make_upbit(mode="live", api_key="", api_secret="${UPBIT_SECRET}")
    assert "no API credentials" in caplog.text and "SimulatedAccount" in caplog.text
    assert not ex.live_private
    assert (await ex.fetch_balances())["KRW"] == D(10000000)
    assert not [r for r in fake.log if r.authenticated]


async def test_mock_mode_uses_the_simulated_market(make_upbit, fake, caplog, context_factory) -> None:
    caplog.set_level(logging.INFO, "arbframe.upbit")
    ctx = context_factory("paper", True, {"arbitrage": {"symbols": ["BTC", "ETH"]}})
    ex = await make_upbit(context=ctx)
    assert "mock mode" in caplog.text and "SimulatedExchange" in caplog.text
    book = await ex.fetch_order_book("BTC", 5)
    assert book.simulated and ex.simulated and book.exchange == "upbit"
    assert ctx.market is not None  # shared with the other venue and the FX source
    assert ex.stream_order_books(["BTC"]) is None
    assert (await ex.fetch_balances())["KRW"] == D(10000000)
    assert fake.requests == []
    result = await ex.health_probe()
    assert result.status.value == "OK" and "mock" in result.message


async def test_simulated_account_starts_from_the_paper_wallet(make_upbit, context_factory) -> None:
    ctx = context_factory("paper", False, {"paper": {"balances": {"upbit": {"KRW": 1234567, "ETH": 2}}}})
    ex = await make_upbit(context=ctx, simulated_balances=None)
    assert await ex.fetch_balances() == {"KRW": D(1234567), "ETH": D(2)}
