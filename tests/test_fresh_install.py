"""The smallest install works: the kernel and one storage plugin in a FRESH virtual environment, offline.

``pip install`` of ``arbframe`` and ``arbframe-storage-csv`` only (from copies of their sources, dependencies from the
``make install`` wheelhouse). On the embedded defaults (mock mode) ``run``, ``health`` and ``config
validate|schema`` work: the kernel's simulated market serves Upbit and Binance although neither plugin is installed.
A real (non-mock) run without the venues' plugins exits 2 naming the distribution to install.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import FreshVenv

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, fresh_venv_builder: Callable[..., FreshVenv]) -> FreshVenv:
    return fresh_venv_builder(tmp_path_factory.mktemp("kernel-only"), [ROOT / "plugins" / "arbframe_storage_csv"])


def test_only_the_kernel_and_csv_are_installed(venv: FreshVenv) -> None:
    result = venv.run("plugins", "--json")
    assert result.returncode == 0, result.stderr
    names = {(r["group"], r["name"]) for r in json.loads(result.stdout)}
    assert ("arbframe.storage", "csv") in names
    assert not any(group == "arbframe.exchange" for group, _ in names), names


def test_run_once_on_the_embedded_defaults(venv: FreshVenv) -> None:
    started = time.monotonic()
    result = venv.run("run", "--once")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "no plugin installed; mock mode: the kernel's simulated market serves it" in result.stderr
    with open(venv.root / "data" / "spreads.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {(r["domestic_exchange"], r["foreign_exchange"], r["simulated"]) for r in rows} == {
        ("upbit", "binance", "true")}
    assert {r["symbol"] for r in rows} == {"BTC", "ETH"}
    assert time.monotonic() - started < 20


def test_health_reports_the_simulated_venues(venv: FreshVenv) -> None:
    result = venv.run("health", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    checks = {c["component"]: c for c in json.loads(result.stdout)["checks"]}
    for venue, quote in (("upbit", "KRW"), ("binance", "USDT")):
        assert checks[venue]["status"] == "OK", checks[venue]
        assert "simulated market" in checks[venue]["message"] and quote in checks[venue]["message"]
    assert checks["csv"]["status"] == "OK"


def test_config_validate_and_schema(venv: FreshVenv) -> None:
    validate = venv.run("config", "validate")
    assert validate.returncode == 0, validate.stderr
    assert validate.stdout.startswith("config OK")
    schema = venv.run("config", "schema")
    assert schema.returncode == 0, schema.stderr
    assert "arbitrage" in json.loads(schema.stdout)["properties"]
    real = venv.root / "real.yml"
    real.write_text("mock_mode: false\n")
    # the schema of a non-mock config needs no driver either
    assert venv.run("config", "schema", "--config", str(real)).returncode == 0


@pytest.mark.parametrize("command", [["run", "--once", "--no-mock"], ["config", "validate", "--config", "real.yml"],
                                     ["health", "--config", "real.yml"]])
def test_a_real_run_without_the_venue_plugin_names_what_to_install(venv: FreshVenv, command: list[str]) -> None:
    (venv.root / "real.yml").write_text("mock_mode: false\n")
    result = venv.run(*command)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    # an installed kernel is no source checkout: the hint is the distribution's name
    assert "no exchange driver named 'upbit' is installed" in lines[0]
    assert "pip install arbframe-exchange-upbit" in lines[0]
