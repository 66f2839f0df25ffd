"""Kernel model additions for venues: locked balances (`Balance`) and fees in several assets (`Order.fees`)."""

from __future__ import annotations

from decimal import Decimal

from arbframe import (
    Balance,
    Order,
    OrderType,
    Side,
    SimulatedExchange,
    SimulatedMarket,
    columns,
    from_row,
    to_dict,
    utcnow,
)

D = Decimal


def test_order_fees_are_kept_on_the_record_but_are_no_table_column():
    order = Order("o1", utcnow(), "binance", "BTC", Side.BUY, OrderType.MARKET, D("1"), fee=D("0.1"),
                  fee_currency="BNB", fees=(("BNB", D("0.1")), ("BTC", D("0.001"))))
    assert "fees" not in columns(Order)
    row = to_dict(order)
    assert "fees" not in row
    back = from_row(Order, row)
    assert back == order and back.fees == ()  # compare=False: stored tables keep the first fee only


async def test_balance_details_default_to_free_only():
    """A venue that does not override fetch_balance_details() reports its free amounts with locked 0."""
    ex = SimulatedExchange("upbit", SimulatedMarket(["BTC"], seed=1), quote_currency="KRW",
                           balances={"KRW": "1000", "BTC": "0.5"})
    details = await ex.fetch_balance_details()
    assert details == {"KRW": Balance(D("1000")), "BTC": Balance(D("0.5"))}
    assert Balance(D("1"), D("2")).total == D("3") and Balance(D("1")).locked == 0
