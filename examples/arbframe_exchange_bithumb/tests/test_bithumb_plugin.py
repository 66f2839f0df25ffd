"""Parsing, errors, config schema, health check and metrics of the Bithumb example (through the public API)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from arbframe_exchange_bithumb import ARBFRAME_API_VERSION
from arbframe_exchange_bithumb.exchange import SCHEMA, BithumbExchange, parse_orderbook

from arbframe import (
    API_VERSION,
    ConfigError,
    HealthStatus,
    InvalidRequest,
    ProtocolError,
    Side,
    TransportError,
    VenueUnavailable,
    schema_defaults,
)
from arbframe.testing.plugin_harness import PluginHarness

REQUESTS = "arbframe_exchange_requests_total"


def test_targets_this_kernel_api() -> None:
    assert BithumbExchange.api_version == ARBFRAME_API_VERSION == API_VERSION


def test_parse_orderbook_sorts_merges_and_keeps_exact_decimals() -> None:
    payload = {"status": "0000", "data": {
        "timestamp": "1732500000123",
        "bids": [{"price": "100", "quantity": "0.1"}, {"price": "101", "quantity": "0.20000001"},
                 {"price": "100", "quantity": "0.3"}, {"price": "99", "quantity": "0"}],
        "asks": [{"price": "103", "quantity": "1"}, {"price": "102", "quantity": "2"}],
    }}
    book = parse_orderbook(payload, "BTC", 5)
    assert [(lvl.price, lvl.qty) for lvl in book.bids] == [(Decimal(101), Decimal("0.20000001")),
                                                           (Decimal(100), Decimal("0.4"))]
    assert [lvl.price for lvl in book.asks] == [Decimal(102), Decimal(103)]
    assert book.ts.isoformat() == "2024-11-25T02:00:00.123000+00:00"
    assert parse_orderbook(payload, "BTC", 1).bids == book.bids[:1]


@pytest.mark.parametrize("bad", [{}, {"data": {"bids": "x", "asks": []}},
                                 {"data": {"bids": [{"price": "abc", "quantity": "1"}], "asks": []}},
                                 {"data": {"timestamp": "soon", "bids": [], "asks": []}}])
def test_parse_orderbook_rejects_garbage(bad) -> None:
    with pytest.raises(ProtocolError):
        parse_orderbook(bad, "BTC", 5)


async def test_api_and_http_errors_are_typed_counted_and_not_fatal(fake_bithumb) -> None:
    harness = PluginHarness(mock=False)
    ex = harness.build(BithumbExchange, {"market_data": "rest", "base_url": fake_bithumb.url, "max_retries": 0})
    with pytest.raises(InvalidRequest, match="5500"):
        await ex.fetch_order_book("NOPE")
    fake_bithumb.inject("unavailable")
    with pytest.raises(VenueUnavailable, match="HTTP 503"):
        await ex.fetch_order_book("BTC")
    fake_bithumb.inject("venue_error", code="5600")
    with pytest.raises(VenueUnavailable, match="5600"):
        await ex.fetch_order_book("BTC")
    book = await ex.fetch_order_book("BTC", depth=3)  # the venue is back
    assert len(book.bids) == 3
    labels = {"exchange": "bithumb", "endpoint": "orderbook"}
    assert harness.metric(REQUESTS, {**labels, "status": "200"}) == 3
    assert harness.metric(REQUESTS, {**labels, "status": "503"}) == 1
    errors = "arbframe_exchange_errors_total"
    assert harness.metric(errors, {"exchange": "bithumb", "kind": "invalid_request"}) == 1
    assert harness.metric(errors, {"exchange": "bithumb", "kind": "venue_unavailable"}) == 2
    assert harness.metric("arbframe_exchange_request_duration_seconds_count", labels) == 4


async def test_a_transient_read_failure_is_retried_with_backoff(fake_bithumb) -> None:
    ex = BithumbExchange({"market_data": "rest", "base_url": fake_bithumb.url, "max_retries": 2}, None)
    ex.http.retry.sleep = _no_sleep
    fake_bithumb.inject("unavailable", 2)
    book = await ex.fetch_order_book("BTC", depth=2)
    assert len(book.asks) == 2
    assert fake_bithumb.requests[-3:] == [("GET", "/public/orderbook/BTC_KRW")] * 3


async def _no_sleep(seconds: float) -> None:
    return None


def test_every_default_is_declared_once_in_the_schema() -> None:
    ex = BithumbExchange({}, None)
    assert ex.config == schema_defaults(SCHEMA, {})
    assert ex.config["timeout_seconds"] == 3.0 and ex.config["simulated_balances"] == {"KRW": 10000000}


async def test_unreachable_venue_fails_fast() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ex = BithumbExchange({"market_data": "rest", "base_url": f"http://127.0.0.1:{port}", "timeout_seconds": 1,
                          "max_retries": 0}, None)
    with pytest.raises(TransportError, match="unreachable"):
        await ex.fetch_order_book("BTC")


def test_health_check_ok_then_error(fake_bithumb) -> None:
    harness = PluginHarness(mock=False)
    harness.build(BithumbExchange, {"market_data": "rest", "base_url": fake_bithumb.url})
    [ok] = harness.health()
    assert ok.component == "bithumb" and ok.status is HealthStatus.OK
    assert "BTC/KRW bid 134999000 ask 135001000" in ok.message
    fake_bithumb.inject("unavailable", 10)
    [down] = harness.health()
    assert down.status is HealthStatus.ERROR and "HTTP 503" in down.message


def test_health_check_in_mock_mode() -> None:
    harness = PluginHarness(mock=True)
    harness.build(BithumbExchange, {})
    [result] = harness.health()
    assert result.status is HealthStatus.OK and "simulated" in result.message


def test_config_schema_accepts_defaults_and_names_bad_keys() -> None:
    harness = PluginHarness()
    harness.validate(BithumbExchange, {"market_data": "rest", "fee_rate": 0.0004, "price_units": [[0, "1"]]})
    with pytest.raises(ConfigError, match=r"fee_rat: unknown key .*did you mean 'fee_rate'"):
        harness.validate(BithumbExchange, {"fee_rat": 0.1})
    with pytest.raises(ConfigError, match="market_data: 'websocket' is not allowed"):
        harness.validate(BithumbExchange, {"market_data": "websocket"})


def test_live_mode_is_refused_with_a_clear_message() -> None:
    harness = PluginHarness(mode="live")
    with pytest.raises(ConfigError, match="cannot run with mode: live"):
        harness.build(BithumbExchange, {})


@pytest.mark.parametrize(("price", "unit"), [("135000123", "1000"), ("750000", "500"), ("3100", "1"),
                                             ("150", "0.1"), ("0.5", "0.0001")])
def test_price_units(price, unit) -> None:
    ex = BithumbExchange({}, None)
    assert ex.price_step("BTC", Decimal(price)) == Decimal(unit)


def test_price_units_are_configurable() -> None:
    ex = BithumbExchange({"price_units": [[0, "5"]]}, None)
    assert ex.round_price("BTC", Decimal("101"), Side.BUY) == Decimal("105")
    assert ex.round_price("BTC", Decimal("101"), Side.SELL) == Decimal("100")


async def test_paper_orders_fill_against_the_rest_book(fake_bithumb) -> None:
    from arbframe import OrderRequest, OrderStatus, OrderType, new_id

    ex = BithumbExchange({"market_data": "rest", "base_url": fake_bithumb.url,
                          "simulated_balances": {"KRW": 1_000_000_000}}, None)
    order = await ex.place_order(OrderRequest(symbol="BTC", side=Side.BUY, order_type=OrderType.MARKET,
                                              client_order_id=new_id(), qty=Decimal("0.01")))
    assert order.status is OrderStatus.FILLED and order.avg_price == Decimal("135001000")
    balances = await ex.fetch_balances()
    assert balances["BTC"] == Decimal("0.01")
