"""The exchange kit's own checks say what is wrong instead of failing with a bare AssertionError."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from arbframe import Order, OrderType, Quote, Side
from arbframe.testing.exchange_kit import ExchangeContract, check_order


def _order(**changes: Any) -> Order:
    fields: dict[str, Any] = dict(id="o1", ts=datetime(2026, 1, 1, tzinfo=timezone.utc), exchange="stub",
                                  symbol="BTC", side=Side.BUY, order_type=OrderType.LIMIT, qty=Decimal("1"))
    fields.update(changes)
    return Order(**fields)


def test_a_none_fee_is_named_with_what_to_report_instead() -> None:
    with pytest.raises(AssertionError, match=r"stub: order.fee is None; report Decimal\(0\)"):
        check_order(_order(fee=None), SimpleNamespace(name="stub"))  # type: ignore[arg-type]


def test_a_float_fee_is_named() -> None:
    with pytest.raises(AssertionError, match=r"order\.fee is float, not Decimal"):
        check_order(_order(fee=0.1), SimpleNamespace(name="stub"))  # type: ignore[arg-type]


class _KrwVenue:
    name = "stub"
    quote_currency = "KRW"

    def __init__(self, usdt: bool) -> None:
        self.usdt = usdt

    async def fetch_ticker(self, symbol: str) -> Quote:
        if symbol != "USDT" or not self.usdt:
            raise KeyError(f"no market KRW-{symbol}")
        return Quote(exchange="stub", symbol="USDT", bid=Decimal("1399"), ask=Decimal("1401"),
                     ts=datetime(2026, 1, 1, tzinfo=timezone.utc))


async def test_a_krw_venue_without_a_usdt_market_fails_the_kit_naming_it() -> None:
    with pytest.raises(pytest.fail.Exception, match=r"stub: a KRW venue must quote USDT \(KRW-USDT\)"):
        await ExchangeContract().test_contract_krw_venue_quotes_usdt(_KrwVenue(usdt=False))  # type: ignore[arg-type]


async def test_a_krw_venue_with_a_usdt_market_passes_the_kit() -> None:
    await ExchangeContract().test_contract_krw_venue_quotes_usdt(_KrwVenue(usdt=True))  # type: ignore[arg-type]
