"""Premium math against hand-computed cases (both directions, fees, tether premium, staleness)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal as D

from arbframe import BookLevel, Direction, FxRate, IdGenerator, OrderBook
from arbframe.trading.premium import (
    PremiumCalculator,
    close_premium,
    kimchi_premium,
    reverse_premium,
    round_trip_fee,
    tether_premium,
)

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def book(exchange: str, bids, asks, ts=T0) -> OrderBook:
    return OrderBook(
        exchange, "BTC",
        tuple(BookLevel(D(p), D(q)) for p, q in bids),
        tuple(BookLevel(D(p), D(q)) for p, q in asks),
        ts,
    )


UPBIT = book("upbit", [("105000", "5"), ("104000", "10")], [("105100", "5"), ("106000", "10")])
BINANCE = book("binance", [("99.9", "4"), ("99", "10")], [("100", "4"), ("101", "10")])
FX = FxRate("fx1", T0 - timedelta(seconds=30), D("1000"), "static")


def test_formulas_at_top_of_book():
    assert kimchi_premium(D("105000"), D("100"), D("1000")) == D("0.05")
    assert reverse_premium(D("99.9"), D("1000"), D("105100")) == D("99900") / D("105100") - 1
    assert tether_premium(D("1010"), D("1000")) == D("0.01")
    assert round_trip_fee(D("0.0005"), D("0.001")) == D("0.003")


def test_kimchi_and_reverse_on_vwap_with_fees():
    calc = PremiumCalculator("upbit", "binance", D("0.0005"), D("0.001"), IdGenerator(1))
    spreads = calc.spreads("BTC", UPBIT, BINANCE, D("9.52"), FX, T0)
    kimchi, reverse = spreads
    assert kimchi.direction is Direction.KIMCHI and reverse.direction is Direction.REVERSE
    # sell 9.52 on upbit: 5 @ 105000 + 4.52 @ 104000 = 995080 KRW; buy on binance: 4 @ 100 + 5.52 @ 101 = 957.52
    assert kimchi.domestic_price == D("995080") / D("9.52")
    assert kimchi.foreign_price == D("957.52") / D("9.52")
    expected = D("995080") / D("957520") - 1  # = 0.039226...
    assert abs(kimchi.premium - expected) < D("1e-12")
    assert abs(kimchi.net_premium - (expected - D("0.003"))) < D("1e-12")
    # reverse: buy 9.52 on upbit (5 @ 105100 + 4.52 @ 106000 = 1004620), sell on binance (4 @ 99.9 + 5.52 @ 99)
    rev_expected = (D("399.6") + D("546.48")) * 1000 / D("1004620") - 1
    assert abs(reverse.premium - rev_expected) < D("1e-12")
    assert reverse.net_premium < 0 < kimchi.net_premium
    for s in spreads:
        assert s.fx_rate == D("1000") and s.fx_source == "static" and s.fx_age_seconds == D("30.000")
        assert s.tether_premium is None and s.usdt_premium is None
        assert s.qty == D("9.52")


def test_tether_and_usdt_premium_identity():
    calc = PremiumCalculator("upbit", "binance", D("0.0005"), D("0.001"), IdGenerator(1))
    kimchi, reverse = calc.spreads("BTC", UPBIT, BINANCE, D("1"), FX, T0, usdt_krw=D("1020"))
    # top of book for 1 coin: kimchi 105000 / (100 * 1000) - 1 = 5 %; tether 1020/1000 - 1 = 2 %
    assert kimchi.premium == D("0.05")
    assert kimchi.tether_premium == D("0.02")
    assert abs(kimchi.usdt_premium - (D("105000") / (D("100") * D("1020")) - 1)) < D("1e-12")
    # the tether premium is one figure for the market, the same on both rows
    assert reverse.tether_premium == kimchi.tether_premium == D("0.02")
    assert abs((1 + kimchi.premium) - (1 + kimchi.usdt_premium) * (1 + kimchi.tether_premium)) < D("1e-10")
    assert abs((1 + reverse.premium) - (1 + reverse.usdt_premium) / (1 + reverse.tether_premium)) < D("1e-10")


def test_thin_book_gives_no_spread_and_close_premium():
    calc = PremiumCalculator("upbit", "binance", D("0.0005"), D("0.001"), IdGenerator(1))
    assert calc.spreads("BTC", UPBIT, BINANCE, D("100"), FX, T0) == []
    # closing a kimchi position buys upbit (ask) and sells binance (bid): 105100 / (99.9 * 1000) - 1
    cp = close_premium(Direction.KIMCHI, UPBIT, BINANCE, D("1"), D("1000"))
    assert cp == D("105100") / D("99900") - 1
    cp = close_premium(Direction.REVERSE, UPBIT, BINANCE, D("1"), D("1000"))
    assert cp == D("100000") / D("105000") - 1


def test_directions_can_be_restricted_and_ids_are_seeded():
    a = PremiumCalculator("upbit", "binance", D("0"), D("0"), IdGenerator(5), directions=[Direction.KIMCHI])
    b = PremiumCalculator("upbit", "binance", D("0"), D("0"), IdGenerator(5), directions=[Direction.KIMCHI])
    sa = a.spreads("BTC", UPBIT, BINANCE, D("1"), FX, T0)
    sb = b.spreads("BTC", UPBIT, BINANCE, D("1"), FX, T0)
    assert len(sa) == 1 and sa == sb
    assert sa[0].net_premium == sa[0].premium == D("0.05")
