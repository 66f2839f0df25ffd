"""The ``forex`` FX source against the fake quotation server: fresh, stale, malformed, down -> fallback."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from arbframe_fx_forex import ForexFxSource, ForexUnavailable, parse_dunamu, parse_er_api
from arbframe_fx_forex.providers import ForexProtocolError, decode

from arbframe import HealthStatus
from arbframe.testing.fx_kit import FxSourceContract
from arbframe.testing.plugin_harness import FxUnavailable

CLOSED = "http://127.0.0.1:9"


class TestForexFxContract(FxSourceContract):
    expect_simulated = False

    @pytest.fixture
    async def fx_source(self, make_source):
        return make_source()

    @pytest.fixture
    async def failing_fx_source(self, make_source):
        return make_source([{"name": "dunamu", "url": f"{CLOSED}/v1/forex/recent?codes=FRX.KRWUSD"},
                            {"name": "er_api", "url": f"{CLOSED}/v6/latest/USD"}])


async def test_fresh_dunamu_quote_is_used_exactly_with_its_own_timestamp(fake, make_source) -> None:
    quoted = int(time.time()) - 1 + 0.25
    fake.now = lambda: quoted
    fx = await make_source().fetch()
    assert fx.rate == Decimal("1382.50") and type(fx.rate) is Decimal
    assert fx.source == "forex:dunamu" and (fx.base, fx.quote, fx.simulated) == ("USD", "KRW", False)
    assert fx.ts == datetime.fromtimestamp(quoted, timezone.utc)
    assert fake.hits == {"dunamu": 1, "er_api": 0}  # the fallback is not asked while the primary is fresh


@pytest.mark.parametrize("mode", ["down", "malformed"])
async def test_primary_down_or_malformed_falls_back_to_er_api(fake, make_source, mode) -> None:
    fake.modes["dunamu"] = mode
    source = make_source()
    fx = await source.fetch()
    assert (fx.rate, fx.source) == (Decimal("1379.845"), "forex:er_api")
    assert fake.hits == {"dunamu": 1, "er_api": 1}
    expected = "HTTP 503" if mode == "down" else "not JSON"
    assert expected in source.last_errors["dunamu"]
    fake.modes["dunamu"] = "fresh"  # recovered: the primary is used again and its error forgotten
    assert (await source.fetch()).source == "forex:dunamu" and source.last_errors == {}


async def test_stale_primary_falls_back_to_a_fresh_secondary(fake, make_source) -> None:
    fake.modes["dunamu"] = "stale"
    fx = await make_source(stale_after_seconds=900).fetch()
    assert fx.source == "forex:er_api"
    assert fx.age_seconds(datetime.now(timezone.utc)) < 60


async def test_all_stale_returns_the_freshest_with_its_true_age(fake, make_source) -> None:
    fake.modes.update(dunamu="stale", er_api="stale")
    fake.stale_seconds = 7200
    fx = await make_source(stale_after_seconds=900).fetch()
    age = fx.age_seconds(datetime.now(timezone.utc))
    assert 7190 < age < 7300, age  # the provider's timestamp, not the time of the request
    assert fx.source in ("forex:dunamu", "forex:er_api")


async def test_every_provider_failing_raises_naming_each(fake, make_source) -> None:
    fake.modes.update(dunamu="down", er_api="malformed")
    source = make_source()
    started = time.monotonic()
    with pytest.raises(ForexUnavailable) as info:
        await source.fetch()
    assert time.monotonic() - started < 2
    assert "dunamu: ForexProtocolError: HTTP 503" in str(info.value)
    assert "er_api: ForexProtocolError: result='error' error-type='unsupported-code'" in str(info.value)


async def test_answers_are_cached_per_provider(fake, make_source) -> None:
    now = [100.0]
    source = ForexFxSource({"providers": [{"name": "dunamu", "url": fake.dunamu_url, "cache_seconds": 10}]},
                           monotonic=lambda: now[0])
    try:
        first, second = await source.fetch(), await source.fetch()
        assert fake.hits["dunamu"] == 1 and first.id != second.id and first.rate == second.rate
        now[0] += 10.5
        await source.fetch()
        assert fake.hits["dunamu"] == 2
    finally:
        await source.close()


async def test_stale_quote_blocks_through_the_fx_service_and_health_warns(fake, make_source, plugin_harness) -> None:
    """The kernel's rule, unchanged: a rate older than fx.max_age_seconds is not priced with (no entries)."""
    fake.modes.update(dunamu="stale", er_api="down")
    fake.stale_seconds = 600
    harness = plugin_harness()  # the kernel's FX service and FX health check, each over a fresh memory cache
    service = harness.fx_service(source=make_source(stale_after_seconds=60), ttl_seconds=60,
                                 max_age_seconds=300)
    with pytest.raises(FxUnavailable):
        await service.current()
    result = await harness.fx_health(source=make_source(), max_age_seconds=300)
    assert result.status is HealthStatus.WARN
    assert "forex:dunamu" in result.message and "old" in result.message
    assert 590 < result.details["age_seconds"] < 700
    fake.modes["dunamu"] = "fresh"
    fresh = await harness.fx_health(source=make_source(), max_age_seconds=300)
    assert fresh.status is HealthStatus.OK and fresh.details["age_seconds"] < 60
    assert "s old" in fresh.message


def test_parsers_read_the_real_formats_exactly() -> None:
    dunamu = decode('[{"code":"FRX.KRWUSD","basePrice":1301.50,"currencyUnit":1,"timestamp":1657278061493}]')
    assert parse_dunamu(dunamu) == (Decimal("1301.50"), datetime(2022, 7, 8, 11, 1, 1, 493000, timezone.utc))
    yen = decode('[{"code":"FRX.KRWUSD","basePrice":951.2,"currencyUnit":100,"timestamp":1657278061493}]')
    assert parse_dunamu(yen)[0] == Decimal("9.512")
    er = decode('{"result":"success","base_code":"USD","time_last_update_unix":1585872397,"rates":{"KRW":1229.68}}')
    assert parse_er_api(er) == (Decimal("1229.68"), datetime(2020, 4, 3, 0, 6, 37, tzinfo=timezone.utc))
    for bad in ('[]', '{}', '[{"code":"FRX.KRWUSD","basePrice":0,"timestamp":1}]',
                '[{"code":"FRX.KRWJPY","basePrice":9,"timestamp":1}]', '[{"code":"FRX.KRWUSD","basePrice":"x"}]'):
        with pytest.raises(ForexProtocolError):
            parse_dunamu(decode(bad))
    for bad in ('{"result":"success","base_code":"EUR","time_last_update_unix":1,"rates":{"KRW":1}}',
                '{"result":"success","base_code":"USD","time_last_update_unix":1,"rates":{}}',
                '{"result":"success","base_code":"USD","rates":{"KRW":1300}}'):
        with pytest.raises(ForexProtocolError):
            parse_er_api(decode(bad))


def test_the_section_is_fx_forex_and_a_bad_value_names_its_path() -> None:
    """The kernel's one rule: an FX source's section is ``fx.<name>``; the kernel validates it there."""
    from arbframe import ConfigError
    from arbframe.testing.plugin_harness import PluginHarness

    harness = PluginHarness.from_config({"fx": {"source": "forex", "forex": {"timeout_seconds": 7}}}, mock=False,
                                        env={})
    assert harness.kernel.load_fx_source().timeout_seconds == 7.0
    with pytest.raises(ConfigError) as info:
        PluginHarness.from_config({"fx": {"source": "forex", "forex": {"timeout_seconds": -1}}}, mock=False, env={})
    assert "fx.forex.timeout_seconds" in str(info.value)
