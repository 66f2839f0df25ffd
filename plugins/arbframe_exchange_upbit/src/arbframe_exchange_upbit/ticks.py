"""Upbit's KRW-market price units (호가 단위): the order-price increment depends on the price band.

The default table is the one Upbit applies since its 2025-07-31 revision of KRW-market price units (bands are
"at least lower bound"). Upbit has revised it several times and has per-asset exceptions, so the config key
``upbit.price_units`` (a list of ``[lower_bound, unit]`` pairs) replaces the table, and
``upbit.price_unit_overrides`` (symbol -> such a list) sets it for single assets.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal

D = Decimal

#: (lower bound inclusive, price unit), highest band first
KRW_PRICE_UNITS: tuple[tuple[Decimal, Decimal], ...] = (
    (D("1000000"), D("1000")),
    (D("500000"), D("500")),
    (D("100000"), D("100")),
    (D("50000"), D("50")),
    (D("10000"), D("10")),
    (D("5000"), D("5")),
    (D("100"), D("1")),
    (D("10"), D("0.1")),
    (D("1"), D("0.01")),
    (D("0.1"), D("0.001")),
    (D("0.01"), D("0.0001")),
    (D("0.001"), D("0.00001")),
    (D("0.0001"), D("0.000001")),
    (D("0.00001"), D("0.0000001")),
    (D("0"), D("0.00000001")),
)

#: Upbit's minimum order amount in KRW markets (config ``upbit.min_order_krw``)
MIN_ORDER_KRW = D("5000")


def build_table(rows: Iterable[Sequence[object]] | None) -> tuple[tuple[Decimal, Decimal], ...]:
    """A table from config rows ``[[lower, unit], ...]`` (any order); None gives the default."""
    if not rows:
        return KRW_PRICE_UNITS
    table = sorted(((D(str(lo)), D(str(unit))) for lo, unit in rows), key=lambda r: r[0], reverse=True)
    if table[-1][0] > 0:
        table.append((D(0), table[-1][1]))
    for lo, unit in table:
        if unit <= 0 or lo < 0:
            raise ValueError(f"bad price unit row [{lo}, {unit}]")
    return tuple(table)


def price_unit(price: Decimal, table: Sequence[tuple[Decimal, Decimal]] = KRW_PRICE_UNITS) -> Decimal:
    """The price increment that applies at ``price``."""
    for lower, unit in table:
        if price >= lower:
            return unit
    return table[-1][1]
