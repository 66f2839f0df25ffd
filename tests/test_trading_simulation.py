"""The simulated market, account and exchange (the public API exchange plugins use in mock mode)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from arbframe import (
    Exchange,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    SimulatedAccount,
    SimulatedExchange,
    SimulatedMarket,
)
from arbframe.core.errors import InsufficientFunds
from arbframe.market.simulation import krw_price_unit

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _market(seed: int = 7, **kw) -> SimulatedMarket:
    return SimulatedMarket(["BTC", "ETH"], seed=seed, start=T0, **kw)


def test_same_seed_same_books_in_any_call_order():
    a, b = _market(), _market()
    for _ in range(5):
        a.step()
        b.step()
    a_books = [a.order_book("upbit", "BTC"), a.order_book("binance", "ETH")]
    b_books = [b.order_book("binance", "ETH"), b.order_book("upbit", "BTC")]
    assert a_books == b_books[::-1]
    assert a.fx_rate().rate == b.fx_rate().rate
    assert _market(seed=8).step() == T0 + timedelta(seconds=1)
    assert _market(seed=8).order_book("upbit", "BTC") != _market(seed=9).order_book("upbit", "BTC")


def test_books_are_sorted_simulated_and_on_the_grid():
    m = _market()
    m.step()
    up = m.order_book("upbit", "BTC")
    bn = m.order_book("binance", "BTC")
    for book in (up, bn):
        assert book.simulated
        assert len(book.bids) == 15 and len(book.asks) == 15
        assert all(x.price > y.price for x, y in zip(book.bids, book.bids[1:], strict=False))
        assert all(x.price < y.price for x, y in zip(book.asks, book.asks[1:], strict=False))
        assert book.best_bid < book.best_ask
    for level in up.bids + up.asks:
        assert level.price % krw_price_unit(level.price) == 0
    rules = m.rules("binance", "BTC")
    for level in bn.bids + bn.asks:
        assert level.price % rules.tick_size == 0
        assert level.qty % rules.step_size == 0
    fx = m.fx_rate()
    assert fx.simulated and fx.source == "simulated"
    premium = up.best_bid / (bn.best_ask * fx.rate) - 1
    assert abs(premium - Decimal(str(m.premium("BTC")))) < Decimal("0.002")


def test_krw_usdt_market_and_quote_currencies():
    m = _market(venues={"upbit": "KRW", "binance": "USDT", "bithumb": "KRW"})
    book = m.order_book("upbit", "USDT")
    assert Decimal(1300) < book.best_bid < Decimal(1500)
    assert m.quote_currency("bithumb") == "KRW"
    with pytest.raises(KeyError):
        m.order_book("binance", "USDT")
    with pytest.raises(KeyError):
        m.quote_currency("kraken")


@pytest.mark.parametrize(
    ("price", "unit"),
    [("2500000", "1000"), ("1500000", "1000"), ("700000", "500"), ("150000", "100"), ("70000", "50"),
     ("20000", "10"), ("7000", "5"), ("3000", "1"), ("500", "1"), ("50", "0.1"), ("5", "0.01"),
     ("0.5", "0.001"), ("0.05", "0.0001"), ("0.00005", "0.0000001"), ("0.000005", "0.00000001")],
)
def test_krw_price_units(price, unit):
    assert krw_price_unit(Decimal(price)) == Decimal(unit)


def test_stablecoin_price_unit():
    assert krw_price_unit(Decimal("1385"), "USDT") == Decimal("0.5")
    assert krw_price_unit(Decimal("1385"), "BTC") == Decimal("1")


def test_premium_has_excursions_past_entry():
    m = _market(seed=3)
    seen = []
    for _ in range(3000):
        m.step()
        seen.append(m.premium("BTC"))
    assert max(seen) > 0.035
    assert 0.0 < sum(seen) / len(seen) < 0.04


async def test_simulated_exchange_market_and_limit_orders():
    m = _market()
    m.step()
    ex = SimulatedExchange.for_venue("binance", m, fee_rate="0.001", balances={"USDT": "20000", "BTC": "0"})
    assert isinstance(ex, Exchange)
    assert ex.simulated and ex.quote_currency == "USDT" and ex.fee_rate == Decimal("0.001")
    book = await ex.fetch_order_book("BTC")
    order = await ex.place_order(OrderRequest("BTC", Side.BUY, OrderType.MARKET, "c1", qty=Decimal("0.01")))
    assert order.status is OrderStatus.FILLED and order.simulated
    assert order.avg_price == book.vwap(Side.BUY, Decimal("0.01"))
    bal = await ex.fetch_balances()
    assert bal["BTC"] == Decimal("0.01")
    assert bal["USDT"] == Decimal(20000) - order.avg_price * Decimal("0.01") - order.fee
    # a limit far from the market rests and reserves funds
    low = (book.best_bid * Decimal("0.9")).quantize(Decimal("0.01"))
    resting = await ex.place_order(OrderRequest("BTC", Side.BUY, OrderType.LIMIT, "c2", qty=Decimal("0.1"), price=low))
    assert resting.status is OrderStatus.OPEN
    assert [o.id for o in await ex.fetch_open_orders("BTC")] == [resting.id]
    with pytest.raises(InsufficientFunds):
        await ex.place_order(OrderRequest("BTC", Side.BUY, OrderType.LIMIT, "c3", qty=Decimal("0.2"), price=low))
    canceled = await ex.cancel_order("BTC", resting.id)
    assert canceled.status is OrderStatus.CANCELED
    assert await ex.fetch_open_orders() == []
    # a marketable limit fills at once
    high = book.asks[2].price
    filled = await ex.place_order(
        OrderRequest("BTC", Side.BUY, OrderType.LIMIT, "c4", qty=Decimal("0.001"), price=high)
    )
    assert filled.status is OrderStatus.FILLED
    assert (await ex.fetch_order("BTC", filled.id)).status is OrderStatus.FILLED


async def test_resting_limit_fills_when_market_moves():
    m = _market()
    m.step()
    ex = SimulatedExchange.for_venue("upbit", m, fee_rate="0.0005", balances={"KRW": "0", "BTC": "1"})
    book = await ex.fetch_order_book("BTC")
    ask_price = book.best_ask + 20 * krw_price_unit(book.best_ask)
    order = await ex.place_order(
        OrderRequest("BTC", Side.SELL, OrderType.LIMIT, "s1", qty=Decimal("0.01"), price=ask_price)
    )
    assert order.status is OrderStatus.OPEN
    m.set_state("BTC", usd_price=m.usd_price("BTC") * 1.05)
    assert (await ex.fetch_order("BTC", order.id)).status is OrderStatus.FILLED
    bal = await ex.fetch_balances()
    assert bal["BTC"] == Decimal("0.99") and bal["KRW"] > 0


async def test_account_rules_and_quote_amount_buy():
    m = _market()
    m.step()
    acct = SimulatedAccount("upbit", "KRW", {"KRW": "1000000"}, "0.0005", m,
                            rules=lambda s: m.rules("upbit", s))
    order = await acct.place_order(
        OrderRequest("BTC", Side.BUY, OrderType.MARKET, "b1", quote_amount=Decimal("100000"))
    )
    spent = order.avg_price * order.filled_qty + order.fee
    assert Decimal("99990") < spent <= Decimal("100000")
    with pytest.raises(ValueError, match="minimum"):
        await acct.place_order(OrderRequest("BTC", Side.BUY, OrderType.MARKET, "b2", qty=Decimal("0.00001")))
    with pytest.raises(InsufficientFunds):
        await acct.place_order(OrderRequest("ETH", Side.SELL, OrderType.MARKET, "b3", qty=Decimal("1")))
