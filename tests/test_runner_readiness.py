"""Start-up needs no network: ``arbframe run`` against a Binance base URL nobody listens on keeps ticking with one
block reason (also in ``/health``), and trades once a server comes up there.

The Upbit side is the plugin's fake server from the start; the Binance side is a closed port on 127.0.0.1 until
the test starts the fake Binance on that very port. Books are set so the kimchi premium (about 4.9 %) clears the
entry threshold: the first OPEN line proves entries were allowed once Binance's rules, balances and books arrived.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _until(stream: asyncio.StreamReader, pattern: str, seen: list[str], timeout: float) -> str:
    """Read lines until one matches ``pattern`` (all lines go to ``seen``); fails after ``timeout`` seconds."""
    regex = re.compile(pattern)

    async def read() -> str:
        while True:
            raw = await stream.readline()
            if not raw:
                raise AssertionError(f"process ended before {pattern!r}:\n" + "".join(seen[-60:]))
            line = raw.decode()
            seen.append(line)
            if regex.search(line):
                return line

    try:
        return await asyncio.wait_for(read(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"no {pattern!r} within {timeout}s:\n" + "".join(seen[-60:])) from None


async def _health(port: int) -> dict:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/health") as response:
        return json.loads(await response.text())


async def test_run_waits_for_an_unreachable_venue_then_trades(tmp_path: Path) -> None:
    upbit_fake = pytest.importorskip("arbframe_exchange_upbit.testing.fake_server")
    binance_fake = pytest.importorskip("arbframe_exchange_binance.testing.fake_server")
    binance_port, metrics_port = _free_port(), _free_port()
    fu = await upbit_fake.FakeUpbit().start()
    fb = binance_fake.FakeBinance(push_interval=None)
    proc = None
    try:
        fu.set_book("BTC", [(Decimal("85000000"), "50")], [(Decimal("85010000"), "50")])
        data = tmp_path / "data"
        overlay = {
            "mode": "paper", "mock_mode": False,
            "service": {"retry_initial_seconds": 0.1, "retry_max_seconds": 0.3},
            "storage": {"backend": "csv", "csv": {"data_dir": str(data)}},
            "metrics_server": {"enabled": True, "host": "127.0.0.1", "port": metrics_port},
            "fx": {"source": "static", "static_rate": 1350},
            "arbitrage": {"symbols": ["BTC"], "use_tether": False, "cooldown_seconds": 0},
            "upbit": {"base_url": fu.base_url, "ws_url": fu.ws_url, "api_key": "", "api_secret": ""},
            "binance": {"base_url": f"http://127.0.0.1:{binance_port}", "ws_url": f"ws://127.0.0.1:{binance_port}",
                        "api_key": "", "api_secret": "", "timeout_seconds": 1, "max_retries": 0},
        }
        config = tmp_path / "overlay.yml"
        config.write_text(yaml.safe_dump(overlay))
        env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg"), "UPBIT_API_KEY": "", "UPBIT_API_SECRET": "",
               "BINANCE_API_KEY": "", "BINANCE_API_SECRET": ""}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "arbframe", "run", "--interval", "0.1", "--max-iterations", "600",
            "--config", str(config), cwd=tmp_path, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        assert proc.stdout is not None
        seen: list[str] = []
        line = await _until(proc.stdout, r"entries blocked: binance:", seen, 30)
        assert "no order book for BTC yet" in line and "retrying with backoff" in line
        await _until(proc.stdout, r"\[BOT\] heartbeat", seen, 10)  # the service ticks on
        await _until(proc.stdout, r"\[BOT\] heartbeat", seen, 10)
        report = await _health(metrics_port)
        venues = next(c for c in report["checks"] if c["component"] == "venues")
        assert venues["status"] == "WARN" and "entries blocked: binance: no order book for BTC yet" in venues["message"]
        assert proc.returncode is None
        assert not [s for s in seen if " OPEN " in s]
        # one reason line, however many retries happened meanwhile
        assert len([s for s in seen if "entries blocked: binance" in s]) == 1, "".join(seen)

        await fb.start(port=binance_port)  # the venue comes up where the config points
        fb.set_book("BTCUSDT", [("60000.00", "50")], [("60010.00", "50")])
        await _until(proc.stdout, r"\[BOT\] binance ready \(connected, rules, balances and books loaded after "
                                  r"\d+ attempts\): entries allowed", seen, 20)
        await _until(proc.stdout, r"\[BOT\] OPEN kimchi BTC", seen, 20)
        # /health is cached for up to two seconds: ask until the row turns (bounded)
        for _ in range(40):
            report = await _health(metrics_port)
            venues = next(c for c in report["checks"] if c["component"] == "venues")
            if venues["status"] == "OK":
                break
            await asyncio.sleep(0.1)
        assert venues["status"] == "OK" and venues["message"] == "upbit, binance ready", venues
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        seen.append(out.decode())
        assert proc.returncode == 0, "".join(seen[-40:])
        text = "".join(seen)
        assert "Traceback" not in text
        assert "/api/v3/exchangeInfo" in [path for _, path in fb.requests]
        assert (data / "positions.csv").read_text().count("\n") >= 2  # header + the opened position
    finally:
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
        await fb.close()
        await fu.close()
