"""End to end: ``arbframe run --once`` with the ``upbit`` section pointed at the fake Upbit (and the Binance
plugin at its own fake server) records spreads priced from Upbit's books, with the FX rate implied from
KRW-USDT (``fx.source: exchange``); the same with ``use_websocket: true`` for a few ticks."""

from __future__ import annotations

import asyncio
import csv
import os
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("use_websocket", [False, True], ids=["rest", "websocket"])
async def test_run_records_spreads(fake, tmp_path: Path, use_websocket: bool) -> None:
    binance_fake = pytest.importorskip("arbframe_exchange_binance.testing.fake_server")
    fb = binance_fake.FakeBinance()
    await fb.start()
    try:
        data = tmp_path / "data"
        overlay = {
            "mode": "paper", "mock_mode": False,
            "storage": {"backend": "csv", "csv": {"data_dir": str(data)}},
            "redis": {"enabled": False},
            "fx": {"source": "exchange"},
            "arbitrage": {"domestic": "upbit", "foreign": "binance", "symbols": ["BTC"]},
            "upbit": {"base_url": fake.base_url, "ws_url": fake.ws_url, "api_key": "", "api_secret": "",
                      "use_websocket": use_websocket},
            "binance": {"base_url": fb.base_url, "ws_url": fb.ws_url, "api_key": "", "api_secret": ""},
        }
        config = tmp_path / "overlay.yml"
        config.write_text(yaml.safe_dump(overlay))
        env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg"), "UPBIT_API_KEY": "", "UPBIT_API_SECRET": ""}
        ticks = ["--max-iterations", "3", "--interval", "0.5"] if use_websocket else ["--once"]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "arbframe", "run", *ticks, "--config", str(config),
            cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), 90)
        text = out.decode()
        assert proc.returncode == 0, text
        assert "no API credentials" in text  # the connector says private calls are simulated
        spreads = list(csv.DictReader((data / "spreads.csv").open()))
        assert spreads, text
        upbit_rows = [r for r in spreads if r["domestic_exchange"] == "upbit" and r["symbol"] == "BTC"]
        assert upbit_rows and all(r["simulated"].lower() in ("false", "0", "") for r in upbit_rows)
        assert {r["fx_source"] for r in upbit_rows} == {"upbit:KRW-USDT"}
        assert ("GET", "/v1/orderbook") in fake.requests
        assert not [r for r in fake.log if r.authenticated], "paper mode must not sign anything"
        if use_websocket:
            subscribed = {s for request in fake.ws_requests for s, _ in request["orderbook"]}
            assert {"BTC", "USDT"} <= subscribed, fake.ws_requests
    finally:
        await fb.close()
