"""PluginHarness beyond single drivers: a kernel built from config, the service loop, the FX service and FX check."""

from __future__ import annotations

import asyncio
import csv
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from arbframe import ConfigError, FxRate, FxSource, HealthCheck, HealthResult, HealthStatus, hookimpl, utcnow
from arbframe.builtins.static_fx import StaticFxSource
from arbframe.testing.plugin_harness import FxUnavailable, PluginHarness
from arbframe.testing.storage_kit import sample_position


def _aged(seconds: float) -> StaticFxSource:
    """The static source at 1350 KRW/USD whose quotes are ``seconds`` old when fetched."""
    return StaticFxSource({"static_rate": 1350}, clock=lambda: utcnow() - timedelta(seconds=seconds))


class _Hanging(FxSource):
    name = "hanging"

    async def fetch(self) -> FxRate:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class _Failing(FxSource):
    name = "failing"

    async def fetch(self) -> FxRate:
        raise ConnectionError("quote server down")


# ----------------------------------------------------------------------------------------- from_config
def test_from_config_validates_the_whole_config_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"arbitrage.*entry_treshold"):
        PluginHarness.from_config({"arbitrage": {"entry_treshold": 0.01}}, env={}, data_dir=tmp_path)


def test_from_config_registers_the_installed_plugin_modules_and_follows_the_data_dir(tmp_path: Path) -> None:
    harness = PluginHarness.from_config(env={}, mock=True, data_dir=tmp_path / "a")
    bare = PluginHarness(data_dir=tmp_path / "b")
    try:
        assert len(harness.pm.get_plugins()) > len(bare.pm.get_plugins()) == 0
        assert harness.context.mock is True and harness.context.mode == "paper"
        assert harness.context.data_dir == tmp_path / "a"
        assert harness.config["storage"]["csv"]["data_dir"] == str(tmp_path / "a")
    finally:
        harness.close()
        bare.close()
    overridden = PluginHarness.from_config({"storage": {"csv": {"data_dir": str(tmp_path / "c")}}}, env={},
                                           data_dir=tmp_path / "a")
    assert overridden.context.data_dir == tmp_path / "c"  # an explicit override wins over the default
    overridden.close()


def test_from_config_ignores_the_environment_when_told(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARBFRAME_FX__STATIC_RATE", "1400")
    for env, rate in ((None, 1400), ({}, 1350.0)):
        harness = PluginHarness.from_config(env=env, data_dir=tmp_path)
        assert harness.config["fx"]["static_rate"] == rate
        harness.close()


# ------------------------------------------------------------------------------------------ run / ticks
def test_run_ticks_the_service_loop_and_records_spreads(tmp_path: Path) -> None:
    harness = PluginHarness.from_config({"arbitrage": {"symbols": ["BTC"]}, "fx": {"source": "static"}},
                                        env={}, mock=True, data_dir=tmp_path)
    assert harness.run(2) == 0
    with (tmp_path / "spreads.csv").open(newline="") as fh:
        spreads = list(csv.DictReader(fh))
    # one symbol, both directions, two ticks; the static source's rate exactly
    assert sorted(r["direction"] for r in spreads) == ["kimchi", "kimchi", "reverse", "reverse"]
    assert {r["symbol"] for r in spreads} == {"BTC"}
    assert {Decimal(r["fx_rate"]) for r in spreads} == {Decimal("1350.0")}
    with pytest.raises(ValueError, match="at least 1"):
        harness.run(0)
    harness.close()


async def test_run_in_thread_leaves_the_callers_loop_free(tmp_path: Path) -> None:
    harness = PluginHarness.from_config({"arbitrage": {"symbols": ["BTC"]}}, env={}, mock=True, data_dir=tmp_path)
    ticks = 0

    async def count() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    counter = asyncio.create_task(count())
    try:
        assert await harness.run_in_thread(1) == 0
    finally:
        counter.cancel()
    assert ticks > 1  # this loop kept running while the service ran
    harness.close()


def test_load_storage_writer_is_the_services_writer_closed_with_the_harness(tmp_path: Path) -> None:
    harness = PluginHarness.from_config({"storage": {"backend": "csv"}}, env={}, data_dir=tmp_path)
    writer = harness.load_storage_writer()
    writer.log_position_open(sample_position("p1"))
    assert writer.sync(5) and writer.active_backend() == "csv"
    harness.close()
    with (tmp_path / "positions.csv").open(newline="") as fh:
        assert [row["id"] for row in csv.DictReader(fh)] == ["p1"]


# ---------------------------------------------------------------------------------------------------- FX
async def test_fx_service_refuses_a_rate_older_than_the_configured_max_age(tmp_path: Path) -> None:
    harness = PluginHarness({"fx": {"source": "static", "max_age_seconds": 30}}, data_dir=tmp_path)
    with pytest.raises(FxUnavailable, match="younger than 30s"):
        await harness.fx_service(source=_aged(60)).current()
    rate = await harness.fx_service(source=_aged(60), max_age_seconds=120).current()
    assert rate.rate == Decimal(1350) and rate.source == "static"
    configured = harness.fx_service()  # the configured source
    assert (await configured.current()).rate == Decimal("1350.0")
    harness.close()


async def test_fx_health_reports_ok_warn_and_error_like_arbframe_health(tmp_path: Path) -> None:
    harness = PluginHarness({"fx": {"source": "static", "static_rate": 1390, "max_age_seconds": 30}},
                            data_dir=tmp_path)
    ok = await harness.fx_health()
    assert ok.status is HealthStatus.OK and ok.message.startswith("USD/KRW 1390 from static (")
    old = await harness.fx_health(source=_aged(60))
    assert old.status is HealthStatus.WARN and "(fx.max_age_seconds=30)" in old.message
    assert 60 <= old.details["age_seconds"] < 70
    failed = await harness.fx_health(source=_Failing())
    assert failed.status is HealthStatus.ERROR
    assert failed.message == "FX source failing failed: ConnectionError: quote server down"
    hung = await harness.fx_health(source=_Hanging())
    assert (hung.component, hung.status, hung.message) == ("fx", HealthStatus.ERROR, "no answer within 1.5s")
    harness.close()


class _TwoChecks:
    @hookimpl
    def arbframe_health_checks(self, config, context):  # type: ignore[no-untyped-def]
        return [HealthCheck(name, lambda name=name: HealthResult(name, HealthStatus.OK, f"{name} fine"))
                for name in ("alpha", "beta")]


def test_health_runs_every_check_or_one_components(plugin_harness) -> None:  # type: ignore[no-untyped-def]
    harness = plugin_harness()
    harness.register(_TwoChecks(), "plugin:two-checks")
    assert [(r.component, r.message) for r in harness.health()] == [("alpha", "alpha fine"), ("beta", "beta fine")]
    assert [(r.component, r.message) for r in harness.health("beta")] == [("beta", "beta fine")]
    assert harness.health("gamma") == []
