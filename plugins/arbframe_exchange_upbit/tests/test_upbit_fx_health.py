"""The ``exchange`` FX source (USD/KRW implied from KRW-USDT) and the health check / metrics hooks."""

from __future__ import annotations

from decimal import Decimal

import pytest
from arbframe_exchange_upbit import UpbitExchange, UpbitFxSource

from arbframe import HealthStatus, VenueUnavailable
from arbframe.testing.fx_kit import FxSourceContract


def _fx(fake, context_factory, mock: bool = False, **fx: object) -> UpbitFxSource:
    ctx = context_factory("paper", mock, {"upbit": {"base_url": fake.base_url, "timeout_seconds": 0.5,
                                                    "max_retries": 0}})
    return UpbitFxSource({"source": "exchange", **fx}, ctx)


class TestUpbitFxContract(FxSourceContract):
    expect_simulated = False

    @pytest.fixture
    async def fx_source(self, fake, context_factory):
        source = _fx(fake, context_factory)
        yield source
        await source.close()

    @pytest.fixture
    async def failing_fx_source(self, context_factory):
        ctx = context_factory("paper", False, {"upbit": {"base_url": "http://127.0.0.1:9", "timeout_seconds": 0.5,
                                                         "max_retries": 0}})
        source = UpbitFxSource({"source": "exchange"}, ctx)
        yield source
        await source.close()


class TestUpbitMockFxContract(FxSourceContract):
    expect_simulated = True

    @pytest.fixture
    async def fx_source(self, fake, context_factory):
        source = _fx(fake, context_factory, mock=True)
        yield source
        await source.close()


async def test_rate_is_the_krw_usdt_mid(fake, context_factory) -> None:
    source = _fx(fake, context_factory)
    try:
        bids, asks = fake.book("USDT")
        rate = await source.fetch()
        assert rate.rate == (bids[0][0] + asks[0][0]) / 2 and type(rate.rate) is Decimal
        assert (rate.base, rate.quote, rate.source, rate.simulated) == ("USD", "KRW", "upbit:KRW-USDT", False)
        for price, expected in (("bid", bids[0][0]), ("ask", asks[0][0]), ("last", asks[0][0])):
            other = _fx(fake, context_factory, price=price)
            assert (await other.fetch()).rate == expected
            await other.close()
    finally:
        await source.close()


async def test_health_ok_with_keys_and_masked(upbit) -> None:
    checks = upbit.arbframe_health_checks({}, upbit.context)
    assert [c.component for c in checks] == ["upbit"]
    result = await checks[0].probe()
    assert result.status is HealthStatus.OK and "authenticated" in result.message
    text = repr(result)
    assert "test-secret-key" not in text and "test-access-key" not in text and "***" in text
    assert result.details["authenticated"] is True and result.details["latency_ms"] >= 0


async def test_health_without_keys_warns(make_upbit) -> None:
    ex = await make_upbit(api_key=None, api_secret=None, mode="paper")
    result = await ex.health_probe()
    assert result.status is HealthStatus.WARN and "no API keys" in result.message


async def test_health_reports_bad_keys_and_unreachable_servers(make_upbit, fake, context_factory,
                                                              sample) -> None:
    bad = await make_upbit(api_secret="nope")
    result = await bad.health_probe()
    assert result.status is HealthStatus.ERROR and "jwt_verification" in result.message
    assert result.details["error"] == "jwt_verification" and "nope" not in repr(result)
    assert sample(bad, "arbframe_exchange_errors_total", kind="authentication_error") == 0  # a probe, not trading
    down = UpbitExchange({"base_url": "http://127.0.0.1:9", "health_timeout_seconds": 0.5},
                         context_factory("paper"))
    result = await down.health_probe()
    assert result.status is HealthStatus.ERROR
    disabled = UpbitExchange({"enabled": False}, context_factory("paper"))
    assert (await disabled.health_probe()).status is HealthStatus.DISABLED


async def test_metrics_hook_registers_the_shared_families_with_taxonomy_kinds_at_zero(upbit, fake) -> None:
    from prometheus_client import CollectorRegistry

    from arbframe import EXCHANGE_ERROR_KINDS

    registry = CollectorRegistry()
    upbit.arbframe_register_metrics(registry, upbit.context)
    kinds = {s.labels["kind"] for m in registry.collect() if m.name == "arbframe_exchange_errors"
             for s in m.samples if s.name.endswith("_total")}
    assert kinds == set(EXCHANGE_ERROR_KINDS)  # the bounded taxonomy labels, nothing else
    groups = {s.labels["group"] for m in registry.collect() if m.name == "arbframe_exchange_rate_limit_waits"
              for s in m.samples if s.name.endswith("_total")}
    assert {"orderbook", "order", "order-test", "default", "requests", "retry_after"} <= groups
    assert registry.get_sample_value("arbframe_exchange_ws_reconnects_total", {"exchange": "upbit"}) == 0
    fake.inject("unavailable", 10, path="/v1/orderbook")
    with pytest.raises(VenueUnavailable):
        await upbit.rest_order_book("BTC")
    assert registry.get_sample_value("arbframe_exchange_errors_total",
                                     {"exchange": "upbit", "kind": "venue_unavailable"}) == 4
