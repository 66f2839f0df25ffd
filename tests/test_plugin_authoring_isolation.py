"""Isolation end to end: a raising notifier never stops trading; a broken selected driver stops it cleanly."""

from __future__ import annotations

import csv
import json

import pytest

pytestmark = pytest.mark.slow

NOISY_NOTIFIER = """
import json, os
from arbframe import hookimpl

ARBFRAME_API_VERSION = 1
calls = {"spread": 0}

@hookimpl
def arbframe_on_spread(spread):
    calls["spread"] += 1
    raise RuntimeError("notifier is down")

@hookimpl
def arbframe_shutdown(context):
    errors = context.registry.get_sample_value(
        "arbframe_plugin_errors_total", {"plugin": "plugin:noisy", "hook": "arbframe_on_spread"})
    with open(os.environ["NOISY_REPORT"], "w") as f:
        json.dump({"calls": calls["spread"], "errors_total": errors}, f)
"""

QUIET_NOTIFIER = """
import os
from arbframe import hookimpl

@hookimpl
def arbframe_on_spread(spread):
    with open(os.environ["QUIET_LOG"], "a") as f:
        f.write(spread.symbol + "\\n")
"""

BROKEN_CTOR = """
from arbframe import SimulatedExchange

class Exploding(SimulatedExchange):
    name = "exploding"
    quote_currency = "KRW"
    api_version = 1

    def __init__(self, section, context):
        raise RuntimeError("cannot reach the venue's gateway")
"""

OLD_NOTIFIER = """
from arbframe import hookimpl

ARBFRAME_API_VERSION = 99

@hookimpl
def arbframe_on_spread(spread):
    raise AssertionError("an incompatible plugin must never be called")
"""


def _spreads(data_dir):
    with open(data_dir / "spreads.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_raising_notifier_is_isolated_and_trading_goes_on(run_cli, fake_dist, tmp_path) -> None:
    site = fake_dist("arbframe-notify-noisy", {"arbframe.plugins": {"noisy": "noisy_notifier"}},
                     {"noisy_notifier": NOISY_NOTIFIER})
    fake_dist("arbframe-notify-quiet", {"arbframe.plugins": {"quiet": "quiet_notifier"}},
              {"quiet_notifier": QUIET_NOTIFIER})
    report, quiet_log = tmp_path / "noisy.json", tmp_path / "quiet.log"
    cfg = tmp_path / "c.yml"
    cfg.write_text(f"storage: {{csv: {{data_dir: {tmp_path / 'data'}}}}}\n")
    result = run_cli("run", "--once", "--config", str(cfg), pythonpath=site,
                     env={"NOISY_REPORT": str(report), "QUIET_LOG": str(quiet_log)})
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    # logged with the plugin's name, once per failing call
    assert "plugin plugin:noisy raised in arbframe_on_spread" in result.stderr
    assert "notifier is down" in result.stderr
    # the tick went on: spreads recorded, and the other notifier saw every spread
    rows = _spreads(tmp_path / "data")
    assert rows and {r["domestic_exchange"] for r in rows} == {"upbit"}
    seen = quiet_log.read_text().split()
    assert len(seen) == len(rows)
    # counted in arbframe_plugin_errors_total, once per spread
    counted = json.loads(report.read_text())
    assert counted["calls"] == len(rows)
    assert counted["errors_total"] == float(len(rows))


def test_incompatible_notifier_is_reported_and_never_called(run_cli, fake_dist, tmp_path) -> None:
    site = fake_dist("arbframe-notify-old", {"arbframe.plugins": {"old": "old_notifier"}},
                     {"old_notifier": OLD_NOTIFIER})
    listing = run_cli("plugins", "--json", pythonpath=site)
    assert listing.returncode == 0, listing.stderr
    row = next(r for r in json.loads(listing.stdout) if r["name"] == "old")
    assert row["status"] == "incompatible"
    assert "targets arbframe plugin API 99, but this kernel provides API 1" in row["error"]
    cfg = tmp_path / "c.yml"
    cfg.write_text(f"storage: {{csv: {{data_dir: {tmp_path / 'data'}}}}}\n")
    result = run_cli("run", "--once", "--config", str(cfg), pythonpath=site)
    assert result.returncode == 0, result.stderr
    assert "plugin 'old' (arbframe-notify-old) not loaded" in result.stderr
    assert "targets arbframe plugin API 99" in result.stderr
    assert _spreads(tmp_path / "data")


def test_selected_driver_that_cannot_start_stops_the_service_cleanly(run_cli, fake_dist, tmp_path) -> None:
    site = fake_dist("arbframe-exchange-exploding", {"arbframe.exchange": {"exploding": "exploding_venue:Exploding"}},
                     {"exploding_venue": BROKEN_CTOR})
    cfg = tmp_path / "c.yml"
    cfg.write_text(f"arbitrage: {{domestic: exploding}}\nstorage: {{csv: {{data_dir: {tmp_path / 'data'}}}}}\n")
    result = run_cli("run", "--once", "--config", str(cfg), pythonpath=site)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert ("arbframe: error: arbitrage -> exploding: exchange driver 'exploding' (arbframe.exchange) could not be "
            "started: RuntimeError: cannot reach the venue's gateway") in result.stderr


def test_selected_driver_that_cannot_import_stops_the_service_cleanly(run_cli, fake_dist, tmp_path) -> None:
    site = fake_dist("arbframe-exchange-missingdep", {"arbframe.exchange": {"missingdep": "missingdep_venue:X"}},
                     {"missingdep_venue": "import some_sdk_that_is_not_installed\n"})
    cfg = tmp_path / "c.yml"
    cfg.write_text("arbitrage: {foreign: missingdep}\n")
    result = run_cli("run", "--once", "--config", str(cfg), pythonpath=site)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "plugin 'missingdep' (arbframe.exchange) is installed but failed to load" in result.stderr
    assert "some_sdk_that_is_not_installed" in result.stderr


def test_selected_driver_built_for_another_api_stops_the_service_cleanly(run_cli, fake_dist, tmp_path) -> None:
    source = BROKEN_CTOR.replace("api_version = 1", "api_version = 2")
    site = fake_dist("arbframe-exchange-future", {"arbframe.exchange": {"future": "future_venue:Exploding"}},
                     {"future_venue": source})
    cfg = tmp_path / "c.yml"
    cfg.write_text("arbitrage: {domestic: future}\n")
    result = run_cli("run", "--once", "--config", str(cfg), pythonpath=site)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "plugin 'future' (arbframe.exchange) targets arbframe plugin API 2, but this kernel provides API 1" \
        in result.stderr


CONNECT_FAILS = """
from arbframe import SimulatedExchange, SimulatedMarket

class Unreachable(SimulatedExchange):
    name = "unreachable"

    def __init__(self, section, context):
        super().__init__("unreachable", SimulatedMarket(), quote_currency="KRW")

    async def connect(self):
        raise ConnectionError("gateway refused the session")
"""


def test_a_venue_whose_connect_fails_is_retried_and_blocks_entries(run_cli, fake_dist, tmp_path) -> None:
    """Start-up needs no network: a connect() that fails leaves the service running, the venue blocked."""
    site = fake_dist("arbframe-exchange-unreachable",
                     {"arbframe.exchange": {"unreachable": "unreachable_venue:Unreachable"}},
                     {"unreachable_venue": CONNECT_FAILS})
    cfg = tmp_path / "c.yml"
    cfg.write_text("arbitrage: {domestic: unreachable}\nservice: {retry_initial_seconds: 0.01}\n")
    result = run_cli("run", "--max-iterations", "3", "--interval", "0.05", "--config", str(cfg), pythonpath=site)
    assert "Traceback" not in result.stderr
    assert result.returncode == 0, result.stderr
    blocked = [line for line in result.stderr.splitlines() if "entries blocked" in line]
    assert len(blocked) == 1, result.stderr  # one line, however many retries
    assert "unreachable: not connected yet (ConnectionError: gateway refused the session)" in blocked[0]
    assert "completed 3 iterations" in result.stderr and " OPEN " not in result.stderr


def test_a_connect_that_raises_a_config_error_stops_the_service(run_cli, fake_dist, tmp_path) -> None:
    source = CONNECT_FAILS.replace("from arbframe import SimulatedExchange, SimulatedMarket",
                                   "from arbframe import ConfigError, SimulatedExchange, SimulatedMarket")
    source = source.replace('raise ConnectionError("gateway refused the session")',
                            'raise ConfigError("unreachable.region: no such region")')
    site = fake_dist("arbframe-exchange-unreachable",
                     {"arbframe.exchange": {"unreachable": "unreachable_venue:Unreachable"}},
                     {"unreachable_venue": source})
    cfg = tmp_path / "c.yml"
    cfg.write_text("arbitrage: {domestic: unreachable}\n")
    result = run_cli("run", "--once", "--config", str(cfg), pythonpath=site)
    assert "Traceback" not in result.stderr
    assert result.returncode == 2, result.stderr
    assert "unreachable.region: no such region" in result.stderr


OLD_COMMAND = """
from arbframe import hookimpl

ARBFRAME_API_VERSION = 0

@hookimpl
def arbframe_register_commands(subparsers):
    subparsers.add_parser("oldcmd").set_defaults(handler=lambda args: 0)
"""


def test_command_plugin_built_for_another_api_is_refused(run_cli, fake_dist) -> None:
    site = fake_dist("arbframe-tool-old", {"arbframe.commands": {"oldcmd": "old_command"}},
                     {"old_command": OLD_COMMAND})
    listed = run_cli("--help", pythonpath=site)
    assert listed.returncode == 0 and "oldcmd" in listed.stdout  # listed from metadata, nothing imported
    result = run_cli("oldcmd", pythonpath=site)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "plugin 'oldcmd' (arbframe.commands) targets arbframe plugin API 0, but this kernel provides API 1" \
        in result.stderr
