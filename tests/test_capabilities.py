"""Interfaces by capability: a read-only venue (MarketData only) is a complete plugin in paper mode."""

from __future__ import annotations

from decimal import Decimal

import pytest

from arbframe import DriverLoadError, Exchange, MarketData, MarketRules, OrderBook, SimulatedMarket, Trading
from arbframe.testing.plugin_harness import PluginHarness


class ReadOnly(MarketData):
    name = "readonly"
    quote_currency = "KRW"

    def __init__(self, section, context) -> None:
        self.market = SimulatedMarket(("BTC",), seed=1)

    @property
    def fee_rate(self) -> Decimal:
        return Decimal("0.001")

    async def fetch_order_book(self, symbol: str, depth: int = 15) -> OrderBook:
        return self.market.order_book("upbit", symbol, depth)

    def market_rules(self, symbol: str) -> MarketRules:
        return MarketRules(symbol, None, Decimal("0.0001"), Decimal("0.0001"), Decimal(0))


def test_exchange_is_the_union_and_existing_drivers_keep_working() -> None:
    assert issubclass(Exchange, MarketData) and issubclass(Exchange, Trading)
    assert not issubclass(ReadOnly, Trading)


@pytest.mark.parametrize(("mode", "ok"), [("paper", True), ("live", False)])
def test_the_kernel_asks_only_for_what_the_mode_needs(mode: str, ok: bool) -> None:
    harness = PluginHarness(mode=mode)
    harness.kernel.driver_class = lambda kind, name, key_path="": ReadOnly  # as if installed
    if ok:
        assert isinstance(harness.kernel.load_exchange("readonly"), ReadOnly)
    else:
        with pytest.raises(DriverLoadError, match=r"read-only \(arbframe.MarketData only\); mode: live needs"):
            harness.kernel.load_exchange("readonly")
    harness.close()
