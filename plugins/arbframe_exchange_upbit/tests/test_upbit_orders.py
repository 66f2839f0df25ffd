"""Orders: rounding and minimums, live-only sending, no blind retries, reconciliation by identifier, and where
private calls go in paper / no-keys / mock mode."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest
from arbframe_exchange_upbit import UpbitOrderNotPlaced, UpbitOrderRejected, UpbitServerError

from arbframe import OrderRequest, OrderStatus, OrderType, Side, new_id

D = Decimal


def _posts(fake) -> list:
    return [r for r in fake.requests if r.path == "/v1/orders" and r.method == "POST"]


def limit(side: Side, qty: str, price: str, symbol: str = "BTC") -> OrderRequest:
    return OrderRequest(symbol, side, OrderType.LIMIT, new_id(), qty=D(qty), price=D(price))


async def test_limit_order_is_rounded_signed_and_round_trips(upbit, fake) -> None:
    best_bid = fake.books["BTC"][0][0][0]
    request = limit(Side.BUY, "0.0123456789", str(best_bid - D("50000.5")))
    order = await upbit.place_order(request)
    sent = fake.orders[order.exchange_order_id]
    assert sent["price"] == str(best_bid - D(50000)) and sent["volume"] == "0.01234567"
    assert sent["identifier"] == request.client_order_id
    assert order.status is OrderStatus.OPEN and order.qty == D("0.01234567")
    assert (await upbit.fetch_order("BTC", order.exchange_order_id)).status is OrderStatus.OPEN
    assert (await upbit.fetch_order("BTC", request.client_order_id)).exchange_order_id == order.exchange_order_id
    open_orders = await upbit.fetch_open_orders("BTC")
    assert [o.exchange_order_id for o in open_orders] == [order.exchange_order_id]
    query = next(r.query for r in fake.requests if r.path == "/v1/orders/open")
    assert "states%5B%5D" not in query and "states[]=wait&states[]=watch" in query
    balances = await upbit.fetch_balances()
    assert balances["KRW"] < D("100000000")  # funds are locked while the order rests
    details = await upbit.fetch_balance_details()
    held = (best_bid - D(50000)) * D("0.01234567")
    assert details["KRW"].locked >= held and details["KRW"].free == balances["KRW"]  # locked kept, not dropped
    assert details["KRW"].total == D("100000000")
    cancelled = await upbit.cancel_order("BTC", order.exchange_order_id)
    assert cancelled.status is OrderStatus.CANCELED
    assert await upbit.fetch_open_orders() == []
    assert (await upbit.fetch_balances())["KRW"] == D("100000000")


async def test_market_orders(upbit, fake) -> None:
    ask = fake.books["BTC"][1][0][0]
    by_amount = await upbit.place_order(OrderRequest("BTC", Side.BUY, OrderType.MARKET, new_id(),
                                                     quote_amount=D("10000.7")))
    sent = fake.orders[by_amount.exchange_order_id]
    assert (sent["ord_type"], sent["price"], sent["volume"]) == ("price", "10000", None)
    assert by_amount.status is OrderStatus.FILLED and by_amount.avg_price == ask
    by_qty = await upbit.place_order(OrderRequest("BTC", Side.BUY, OrderType.MARKET, new_id(), qty=D("0.001")))
    assert fake.orders[by_qty.exchange_order_id]["ord_type"] == "price"
    assert D(fake.orders[by_qty.exchange_order_id]["price"]) >= ask * D("0.001")
    sell = await upbit.place_order(OrderRequest("BTC", Side.SELL, OrderType.MARKET, new_id(), qty=D("0.002")))
    assert (fake.orders[sell.exchange_order_id]["ord_type"], sell.status) == ("market", OrderStatus.FILLED)
    assert sell.fee > 0 and sell.fee_currency == "KRW"


async def test_below_minimum_is_refused_before_sending(upbit, fake) -> None:
    with pytest.raises(UpbitOrderRejected) as info:
        await upbit.place_order(limit(Side.BUY, "0.00003", "148000000"))  # 4,440 KRW
    assert info.value.name == "under_min_total_bid"
    with pytest.raises(UpbitOrderRejected):
        await upbit.place_order(OrderRequest("BTC", Side.BUY, OrderType.MARKET, new_id(), quote_amount=D(4999)))
    assert _posts(fake) == []


async def test_venue_rejection_is_typed(upbit, fake) -> None:
    with pytest.raises(UpbitOrderRejected) as info:
        await upbit.place_order(limit(Side.BUY, "100", "140000000"))
    assert info.value.name == "insufficient_funds_bid" and info.value.status == 400


async def test_lost_answer_is_reconciled_not_resent(upbit, fake) -> None:
    fake.inject("/v1/orders", drop=True, after=True)
    request = limit(Side.BUY, "0.01", "140000000")
    order = await upbit.place_order(request)
    assert order.client_order_id == request.client_order_id and order.status is OrderStatus.OPEN
    assert len(_posts(fake)) == 1 and len(fake.orders) == 1


async def test_5xx_on_order_is_never_retried(upbit, fake) -> None:
    fake.inject("/v1/orders", status=500)
    with pytest.raises(UpbitOrderNotPlaced) as info:
        await upbit.place_order(limit(Side.BUY, "0.01", "140000000"))
    assert isinstance(info.value.__cause__, UpbitServerError)
    assert len(_posts(fake)) == 1 and fake.orders == {}


async def test_timeout_on_order_is_never_retried(make_upbit, fake) -> None:
    ex = await make_upbit(timeout_seconds=0.3, order_lookup_attempts=2)
    fake.inject("/v1/orders", delay=1.5)  # the order lands long after both lookups
    with pytest.raises(UpbitOrderNotPlaced):  # still in flight after both lookups
        await ex.place_order(limit(Side.BUY, "0.01", "140000000"))
    assert len(_posts(fake)) == 1


async def test_slow_order_is_found_by_a_later_lookup(make_upbit, fake) -> None:
    ex = await make_upbit(timeout_seconds=0.3, order_lookup_attempts=10, order_lookup_delay_seconds=0.1)
    fake.inject("/v1/orders", delay=0.6)
    request = limit(Side.BUY, "0.01", "140000000")
    order = await ex.place_order(request)
    assert order.client_order_id == request.client_order_id
    assert len(_posts(fake)) == 1 and len(fake.orders) == 1


async def test_429_on_order_is_retried_with_the_same_identifier(upbit, fake) -> None:
    fake.inject("/v1/orders", status=429)
    request = limit(Side.BUY, "0.01", "140000000")
    order = await upbit.place_order(request)
    assert [r.status for r in _posts(fake)] == [429, 201]
    assert len(fake.orders) == 1 and order.client_order_id == request.client_order_id


async def test_paper_mode_never_sends_private_calls(make_upbit, fake, caplog) -> None:
    caplog.set_level(logging.INFO, "arbframe.upbit")
    ex = await make_upbit(mode="paper", simulated_balances={"KRW": 50000000, "BTC": "0.5"})
    assert "balances and orders from a simulated account" in caplog.text
    assert await ex.fetch_balances() == {"KRW": D(50000000), "BTC": D("0.5")}
    order = await ex.place_order(limit(Side.BUY, "0.01", str(fake.books["BTC"][1][0][0])))
    assert order.status is OrderStatus.FILLED
    assert (await ex.fetch_balances())["BTC"] == D("0.51")
    assert await ex.fetch_open_orders() == []
    assert not [r for r in fake.requests if r.authenticated], "nothing signed may reach Upbit outside live mode"
    assert not ex.simulated  # market data is real (the fake server's)


async def test_live_mode_without_keys_warns_and_simulates(make_upbit, fake, caplog) -> None:
    caplog.set_level(logging.WARNING, "arbframe.upbit")
    ex = await make_upbit(mode="live", api_key="", api_secret="${UPBIT_SECRET}")
    assert "no API credentials" in caplog.text and "SimulatedAccount" in caplog.text
    assert not ex.live_private
    assert (await ex.fetch_balances())["KRW"] == D(10000000)
    assert not [r for r in fake.requests if r.authenticated]


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
    ex = await make_upbit(context=ctx)
    assert await ex.fetch_balances() == {"KRW": D(1234567), "ETH": D(2)}
