"""End to end across both exchange plugins: ``arbframe run --once`` against the fake Upbit and the fake Binance
(base URLs in a config overlay) records spreads whose premiums are computed from both venues' books.

The fake books are set to one deep level per side, so each leg's VWAP is that level's price and the premium can
be checked against the DOMAIN formulas exactly: kimchi ``upbit_bid / (binance_ask * R) - 1``, reverse
``binance_bid * R / upbit_ask - 1``.
"""

from __future__ import annotations

import asyncio
import csv
import os
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

D = Decimal
RATE = D("1350")
UPBIT_BID, UPBIT_ASK = D("85000000"), D("85010000")
BINANCE_BID, BINANCE_ASK = D("60000.00"), D("60010.00")


async def test_run_once_against_both_fake_exchanges_records_a_two_venue_premium(tmp_path: Path) -> None:
    upbit_fake = pytest.importorskip("arbframe_exchange_upbit.testing.fake_server")
    binance_fake = pytest.importorskip("arbframe_exchange_binance.testing.fake_server")
    fu = upbit_fake.FakeUpbit()
    fb = binance_fake.FakeBinance(push_interval=None)
    await fu.start()
    await fb.start()
    try:
        fu.set_book("BTC", [(UPBIT_BID, "50")], [(UPBIT_ASK, "50")])
        fb.set_book("BTCUSDT", [(str(BINANCE_BID), "50")], [(str(BINANCE_ASK), "50")])
        data = tmp_path / "data"
        overlay = {
            "mode": "paper", "mock_mode": False,
            "storage": {"backend": "csv", "csv": {"data_dir": str(data)}},
            "redis": {"enabled": False},
            "fx": {"source": "static", "static_rate": float(RATE)},
            "arbitrage": {"domestic": "upbit", "foreign": "binance", "symbols": ["BTC"], "use_tether": False},
            "upbit": {"base_url": fu.base_url, "ws_url": fu.ws_url, "api_key": "", "api_secret": ""},
            "binance": {"base_url": fb.base_url, "ws_url": fb.ws_url, "api_key": "", "api_secret": ""},
        }
        config = tmp_path / "overlay.yml"
        config.write_text(yaml.safe_dump(overlay))
        env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg"), "UPBIT_API_KEY": "", "UPBIT_API_SECRET": "",
               "BINANCE_API_KEY": "", "BINANCE_API_SECRET": ""}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "arbframe", "run", "--once", "--config", str(config),
            cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), 90)
        text = out.decode()
        assert proc.returncode == 0, text

        rows = [r for r in csv.DictReader((data / "spreads.csv").open()) if r["symbol"] == "BTC"]
        assert {r["direction"] for r in rows} == {"kimchi", "reverse"}, text
        for row in rows:
            assert (row["domestic_exchange"], row["foreign_exchange"]) == ("upbit", "binance")
            assert row["simulated"].lower() in ("false", "0", "")
            assert D(row["fx_rate"]) == RATE and row["fx_source"] == "static"
            premium = D(row["premium"])
            dom, fgn = D(row["domestic_price"]), D(row["foreign_price"])
            if row["direction"] == "kimchi":  # sell on Upbit at its bid, buy on Binance at its ask
                assert (dom, fgn) == (UPBIT_BID, BINANCE_ASK)
                expected = UPBIT_BID / (BINANCE_ASK * RATE) - 1
            else:  # buy on Upbit at its ask, sell on Binance at its bid
                assert (dom, fgn) == (UPBIT_ASK, BINANCE_BID)
                expected = BINANCE_BID * RATE / UPBIT_ASK - 1
            assert abs(premium - expected) < D("1e-12"), (row, expected)
            assert D(row["net_premium"]) < premium  # both venues' fees come off

        # both books were read over REST, and nothing private was sent anywhere (paper mode, no keys)
        binance_paths = [path for _, path in fb.requests]
        assert "/api/v3/depth" in binance_paths and "/api/v3/exchangeInfo" in binance_paths
        assert not [p for p in binance_paths if p in ("/api/v3/account", "/api/v3/order", "/api/v3/openOrders")]
        assert not [r for r in fu.log if r.authenticated]
        assert ("GET", "/v1/orderbook") in fu.requests
        assert "binance: no API credentials" in text
    finally:
        await fb.close()
        await fu.close()
