"""The exchange error taxonomy: one public family, retry semantics per kind, one bounded metric label set."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

import arbframe
from arbframe import (
    EXCHANGE_ERROR_KINDS,
    ExchangeError,
    ExchangeMetrics,
    InsufficientFunds,
    OrderRejected,
    RateLimited,
    UnknownOrder,
    error_kind,
)

KINDS = {
    "AuthenticationError": (False, False), "Banned": (False, False), "InsufficientFunds": (False, False),
    "InvalidRequest": (False, False), "OrderRejected": (False, False), "OrderStatusUnknown": (False, False),
    "ProtocolError": (False, True), "RateLimited": (True, True), "RequestTimeout": (False, True),
    "TransportError": (False, True), "UnknownOrder": (False, False), "VenueUnavailable": (False, True),
}


@pytest.mark.parametrize("name", sorted(KINDS))
def test_every_kind_is_public_states_its_retry_semantics_and_has_a_snake_case_label(name: str) -> None:
    cls = getattr(arbframe, name)
    assert issubclass(cls, ExchangeError) and name in arbframe.__all__
    assert (cls.retry_safe, cls.transient) == KINDS[name]
    assert "retry_safe" in (cls.__doc__ or ""), f"{name}'s docstring must state its retry semantics"
    assert cls.kind in EXCHANGE_ERROR_KINDS
    assert cls.kind.replace("_", "") == name.lower()


def test_one_insufficient_funds_for_paper_wallets_and_venues() -> None:
    from arbframe.core.errors import InsufficientFunds as paper_cls

    assert paper_cls is InsufficientFunds
    assert issubclass(InsufficientFunds, OrderRejected) and issubclass(InsufficientFunds, ValueError)


def test_compatible_builtin_bases_and_plain_messages() -> None:
    assert str(UnknownOrder("x: unknown order 1")) == "x: unknown order 1"  # not KeyError's quoted repr
    with pytest.raises(KeyError):
        raise UnknownOrder("gone")
    err = RateLimited("slow down", exchange="v", retry_after=1.5, status=429)
    assert (err.retry_after, err.status, err.exchange) == (1.5, 429, "v")


def test_a_venue_subclass_inherits_its_kind_so_the_label_set_stays_bounded() -> None:
    class VenueQuirk(UnknownOrder):
        pass

    assert VenueQuirk.kind == "unknown_order"
    assert error_kind(VenueQuirk("x")) == "unknown_order"
    assert error_kind(RuntimeError("x")) == "exchange_error"


def test_exchange_metrics_count_only_bounded_kinds() -> None:
    registry = CollectorRegistry()
    metrics = ExchangeMetrics.get(registry)
    assert metrics.count_error("v", InsufficientFunds("no KRW")) == "insufficient_funds"
    assert metrics.count_error("v", ValueError("?")) == "exchange_error"
    assert metrics.count_error("v", "rate_limited") == "rate_limited"
    assert metrics.count_error("v", "made_up_kind") == "exchange_error"
    value = registry.get_sample_value("arbframe_exchange_errors_total", {"exchange": "v", "kind": "exchange_error"})
    assert value == 2


async def test_the_simulated_venue_speaks_the_taxonomy() -> None:
    from decimal import Decimal

    from arbframe import OrderRequest, OrderType, Side, SimulatedExchange, SimulatedMarket, new_id

    ex = SimulatedExchange("upbit", SimulatedMarket(("BTC",), seed=1), balances={"KRW": 1000})
    with pytest.raises(UnknownOrder):
        await ex.fetch_order("BTC", "nope")
    buy = OrderRequest(symbol="BTC", side=Side.BUY, order_type=OrderType.MARKET, client_order_id=new_id(),
                       qty=Decimal("1"))
    with pytest.raises(InsufficientFunds):
        await ex.place_order(buy)
