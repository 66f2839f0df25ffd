"""Health check (reachability, clock offset, authenticated call, masking), metrics, config schema, entry point."""

from __future__ import annotations

import socket
from importlib.metadata import entry_points

import pytest
from arbframe_exchange_binance.exchange import DEFAULTS, BinanceExchange
from jsonschema import Draft202012Validator
from prometheus_client import generate_latest

from arbframe import HealthStatus

from .conftest import API_KEY, API_SECRET, make_context


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    signed = [r for r in fake.requests if r["path"] == "/api/v3/account"]
    assert len(signed) == 1, "the health check's one authenticated (read-only) call"


async def test_health_warns_without_keys_and_on_clock_offset(fake, make_binance):
    ex = await make_binance(mode="paper", api_key="", api_secret="")
    result = await ex.health_probe()
    assert result.status is HealthStatus.WARN and "no API keys" in result.message
    fake.clock_offset_ms = 5000
    ex2 = await make_binance(mode="live")
    result = await ex2.health_probe()
    assert result.status is HealthStatus.WARN and abs(result.details["clock_offset_ms"] - 5000) < 500
    text = generate_latest(ex2.context.registry).decode()
    assert 'arbframe_exchange_clock_offset_seconds{exchange="binance"} 4.' in text or \
        'arbframe_exchange_clock_offset_seconds{exchange="binance"} 5.' in text


async def test_health_errors(fake, make_binance):
    ex = await make_binance(mode="live", api_secret="wrong")
    result = await ex.health_probe()
    assert result.status is HealthStatus.ERROR and "Signature" in result.message
    assert "wrong" not in repr(result)
    dead = BinanceExchange({"base_url": f"http://127.0.0.1:{_free_port()}", "health_timeout_seconds": 1},
                           make_context("paper"))
    result = await dead.health_probe()
    assert result.status is HealthStatus.ERROR
    disabled = BinanceExchange({"enabled": False}, make_context("paper"))
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


def test_config_schema_accepts_the_defaults_and_marks_secrets():
    schema = BinanceExchange.config_schema()
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    assert not list(validator.iter_errors({k: v for k, v in DEFAULTS.items()}))
    assert schema["properties"]["api_key"]["writeOnly"] and schema["properties"]["api_secret"]["writeOnly"]
    assert list(validator.iter_errors({"recv_window": 70000}))
    assert list(validator.iter_errors({"unknown_key": 1}))
    assert schema["properties"]["rate_limit"]["default"] == 10
    assert schema["properties"]["fee_rate"]["default"] == 0.001


def test_embedded_defaults_section_validates():
    import yaml

    from arbframe.kernel.config import embedded_defaults_text

    section = yaml.safe_load(embedded_defaults_text())["binance"]
    section["api_key"] = section["api_secret"] = None
    assert not list(Draft202012Validator(BinanceExchange.config_schema()).iter_errors(section))
    ex = BinanceExchange(section, make_context("paper"))
    assert ex.fee_rate == ex.fee_rate.__class__("0.001") and not ex.has_credentials


def test_entry_point_is_declared():
    names = {ep.name: ep.value for ep in entry_points(group="arbframe.exchange")}
    assert names.get("binance") == "arbframe_exchange_binance.exchange:BinanceExchange"


@pytest.mark.parametrize("value", [None, "", "${BINANCE_API_KEY}", "changeme"])
def test_placeholder_credentials_count_as_missing(value):
    ex = BinanceExchange({"api_key": value, "api_secret": value}, make_context("live"))
    assert not ex.has_credentials and not ex.live_private
