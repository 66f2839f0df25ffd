"""Health check (reachability, clock offset, authenticated call, masking), metrics, config schema, entry point."""

from __future__ import annotations

import socket
from decimal import Decimal
from importlib.metadata import entry_points

import pytest
from arbframe_exchange_binance import ARBFRAME_API_VERSION
from arbframe_exchange_binance.exchange import SCHEMA, BinanceExchange
from jsonschema import Draft202012Validator
from prometheus_client import generate_latest

from arbframe import API_VERSION, EXCHANGE_ERROR_KINDS, ConfigError, HealthStatus, schema_defaults

from .conftest import API_KEY, API_SECRET


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_targets_this_kernel_api():
    assert BinanceExchange.api_version == ARBFRAME_API_VERSION == API_VERSION


async def test_health_ok_with_keys_is_authenticated_and_masked(fake, make_binance):
    ex = await make_binance(mode="paper")
    checks = ex.arbframe_health_checks(config={}, context=ex.context)
    assert [c.component for c in checks] == ["binance"]
    result = await checks[0].probe()
    assert result.status is HealthStatus.OK, result.message
    assert result.details["authenticated"] is True and result.details["can_trade"] is True
    assert "clock_offset_ms" in result.details and "clock offset" in result.message
    text = repr(result)
    assert API_KEY not in text and API_SECRET not in text and "***" in text
    assert [p for _, p in fake.requests].count("/api/v3/account") == 1, "the health check's one (read-only) call"


async def test_health_warns_without_keys_and_on_clock_offset(fake, make_binance):
    ex = await make_binance(mode="paper", api_key="", api_secret="")
    result = await ex.health_probe()
    assert result.status is HealthStatus.WARN and "no API keys" in result.message
    fake.clock_offset_ms = 5000
    ex2 = await make_binance(mode="live")
    result = await ex2.health_probe()
    assert result.status is HealthStatus.WARN and abs(result.details["clock_offset_ms"] - 5000) < 500
    gauge = ex2.context.registry.get_sample_value("arbframe_exchange_clock_offset_seconds", {"exchange": "binance"})
    assert 4.5 < gauge < 5.5


async def test_health_errors(fake, make_binance, plugin_context):
    ex = await make_binance(mode="live", api_secret="wrong")
    result = await ex.health_probe()
    assert result.status is HealthStatus.ERROR and "Signature" in result.message
    assert result.details["error"] == "authentication_error" and "wrong" not in repr(result)
    dead = BinanceExchange({"base_url": f"http://127.0.0.1:{_free_port()}", "health_timeout_seconds": 1},
                           plugin_context(mode="paper"))
    result = await dead.health_probe()
    assert result.status is HealthStatus.ERROR and result.details["error"] == "transport_error"
    disabled = BinanceExchange({"enabled": False}, plugin_context(mode="paper"))
    assert (await disabled.health_probe()).status is HealthStatus.DISABLED
    await dead.close()
    await disabled.close()


async def test_request_metrics_by_endpoint_and_status(fake, make_binance):
    ex = await make_binance(mode="live")
    await ex.fetch_order_book("BTC", 5)
    await ex.fetch_balances()
    text = generate_latest(ex.context.registry).decode()
    for line in (
        'arbframe_exchange_requests_total{endpoint="/api/v3/depth",exchange="binance",status="200"} 1.0',
        'arbframe_exchange_requests_total{endpoint="/api/v3/account",exchange="binance",status="200"} 1.0',
        'arbframe_exchange_requests_total{endpoint="/api/v3/exchangeInfo",exchange="binance",status="200"} 1.0',
        'arbframe_exchange_request_duration_seconds_count{endpoint="/api/v3/depth",exchange="binance"} 1.0',
    ):
        assert line in text, line
    ex.arbframe_register_metrics(registry=ex.context.registry, context=ex.context)  # idempotent


async def test_error_labels_are_the_taxonomy_kinds(fake, make_binance):
    ex = await make_binance(mode="live", max_retries=0)
    for kind in ("unavailable", "malformed", "auth"):
        fake.inject(kind, path="/api/v3/depth")
        with pytest.raises(Exception):  # noqa: B017 - the kinds are asserted on the counter below
            await ex.fetch_order_book("BTC", 5)
    fake.inject("venue_error", path="/api/v3/depth", code=-1121, msg="Invalid symbol.")
    with pytest.raises(ValueError):
        await ex.fetch_order_book("BTC", 5)
    registry = ex.context.registry
    labels = {s.labels["kind"] for m in registry.collect() if m.name == "arbframe_exchange_errors"
              for s in m.samples if s.name.endswith("_total") and s.value > 0}
    assert labels == {"venue_unavailable", "protocol_error", "authentication_error", "invalid_request"}
    assert labels <= set(EXCHANGE_ERROR_KINDS)


def test_config_schema_holds_every_default_once():
    Draft202012Validator.check_schema(SCHEMA)
    validator = Draft202012Validator(SCHEMA)
    defaults = schema_defaults(SCHEMA, {})
    assert not list(validator.iter_errors(defaults))
    assert BinanceExchange({}, None).config == defaults
    assert defaults["rate_limit"] == 10 and defaults["fee_rate"] == 0.001 and defaults["simulated_balances"] == {
        "USDT": 10000}
    assert SCHEMA["properties"]["api_key"]["writeOnly"] and SCHEMA["properties"]["api_secret"]["writeOnly"]
    assert list(validator.iter_errors({"recv_window": 70000}))
    assert list(validator.iter_errors({"resend_after_lookup": True})), "an order is never re-sent: the key is gone"


def test_embedded_defaults_section_validates(plugin_harness):
    harness = plugin_harness(mode="paper")
    section = dict(harness.config["binance"])
    harness.validate(BinanceExchange, section)
    ex = harness.build(BinanceExchange, section)
    assert ex.fee_rate == Decimal("0.001") and not ex.has_credentials
    with pytest.raises(ConfigError, match="recv_windw"):
        harness.validate(BinanceExchange, {"recv_windw": 5000})


def test_entry_point_is_declared():
    names = {ep.name: ep.value for ep in entry_points(group="arbframe.exchange")}
    assert names.get("binance") == "arbframe_exchange_binance.exchange:BinanceExchange"


@pytest.mark.parametrize("value", [None, "", "${BINANCE_API_KEY}", "changeme"])
def test_placeholder_credentials_count_as_missing(value, plugin_context):
    ex = BinanceExchange({"api_key": value, "api_secret": value}, plugin_context(mode="live"))
    assert not ex.has_credentials and not ex.live_private
