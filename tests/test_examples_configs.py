"""The example configurations validate (both passes) and the CSV-only and backtest set-ups run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from arbframe.kernel.config import load_config
from arbframe.kernel.entrypoints import installed_names
from arbframe.kernel.plugin_host import Kernel, validate_selected
from arbframe.testing.plugin_harness import PluginHarness

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "examples" / "configs"
ENV = {"DATABASE_URL": "postgresql://arbitrage:s3cret@db.invalid:5432/arbitrage",
       "REDIS_URL": "redis://:s3cret@cache.invalid:6379/0",
       "BINANCE_TESTNET_API_KEY": "k", "BINANCE_TESTNET_API_SECRET": "s"}
FILES = sorted(CONFIGS.glob("*.yml"))


def test_every_common_set_up_has_a_config() -> None:
    assert {p.stem for p in FILES} >= {"csv-only", "postgres-redis", "backtest", "testnet", "bithumb"}


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_config_validates(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if path.stem == "bithumb" and "bithumb" not in installed_names("arbframe.exchange"):
        # the example plugin is not installed in this environment (tests/test_examples_e2e.py installs it):
        # check its section against the plugin's own schema
        monkeypatch.syspath_prepend(str(ROOT / "examples" / "arbframe_exchange_bithumb" / "src"))
        from arbframe_exchange_bithumb.exchange import BithumbExchange

        PluginHarness().validate(BithumbExchange, yaml.safe_load(path.read_text())["bithumb"])
        return
    config = load_config([path], env=ENV)
    kernel = Kernel(config, register_plugins=False)
    try:
        validate_selected(kernel)  # pass 2: the selected drivers' own schemas
    finally:
        kernel.close()


def test_secrets_of_the_postgres_redis_config_are_masked(run_cli, tmp_path) -> None:
    result = run_cli("config", "show", "--config", str(CONFIGS / "postgres-redis.yml"), env=ENV)
    assert result.returncode == 0, result.stderr
    assert "s3cret" not in result.stdout and "db.invalid" in result.stdout


@pytest.mark.slow
def test_csv_only_runs(run_cli, tmp_path) -> None:
    result = run_cli("run", "--once", "--config", str(CONFIGS / "csv-only.yml"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "data" / "spreads.csv", newline="") as f:
        assert list(csv.DictReader(f))


@pytest.mark.slow
def test_backtest_runs_on_a_recording(run_cli, tmp_path) -> None:
    recorded = run_cli("record", "--mock", "--max-iterations", "3", "--interval", "0.01", "--output",
                       "recordings/session.jsonl.gz", cwd=tmp_path)
    assert recorded.returncode == 0, recorded.stderr
    result = run_cli("run", "--config", str(CONFIGS / "backtest.yml"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "data" / "backtest" / "summary.json").read_text())
    assert summary
