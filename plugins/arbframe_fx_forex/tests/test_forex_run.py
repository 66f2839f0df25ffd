"""End to end: ``arbframe run --once --mock`` and ``arbframe health`` with ``fx.source: forex`` pointed at the
fake quotation server: the plugin is found by its entry point, its config validates, and every spread record
carries the quote's source and true age."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow


async def _arbframe(tmp_path: Path, *args: str) -> tuple[int, str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "arbframe", *args, cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 90)
    return proc.returncode or 0, out.decode()


async def test_run_and_health_with_the_forex_source(fake, tmp_path: Path) -> None:
    fake.stale_seconds = 120
    fake.modes["dunamu"] = "stale"  # 120 s old: fresh enough (stale_after 900), and the age must show it
    data = tmp_path / "data"
    config = tmp_path / "overlay.yml"
    config.write_text(yaml.safe_dump({
        "storage": {"backend": "csv", "csv": {"data_dir": str(data)}},
        "arbitrage": {"symbols": ["BTC"]},
        "fx": {"source": "forex", "forex": {"providers": fake.provider_config(), "timeout_seconds": 2}},
    }))
    code, text = await _arbframe(tmp_path, "run", "--once", "--mock", "--config", str(config))
    assert code == 0, text
    spreads = list(csv.DictReader((data / "spreads.csv").open()))
    assert spreads, text
    assert {r["fx_source"] for r in spreads} == {"forex:dunamu"}
    assert {Decimal(r["fx_rate"]) for r in spreads} == {Decimal("1382.50")}
    assert all(119 <= Decimal(r["fx_age_seconds"]) < 200 for r in spreads), [r["fx_age_seconds"] for r in spreads]
    assert fake.hits["er_api"] == 0

    code, text = await _arbframe(tmp_path, "health", "--json", "--config", str(config))
    fx = next(c for c in json.loads(text)["checks"] if c["component"] == "fx")
    assert fx["status"] == "OK" and "forex:dunamu" in fx["message"] and "s old" in fx["message"], fx
    assert 119 <= fx["details"]["age_seconds"] < 200
