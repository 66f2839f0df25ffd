"""``arbframe run`` end to end, in subprocesses: --once on the defaults, SIGTERM, restart/resume, live refusal."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from importlib import metadata
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

NEEDED = {"upbit", "binance"}


def _require_exchange_plugins() -> None:
    names = {ep.name for ep in metadata.entry_points(group="arbframe.exchange")}
    if not names >= NEEDED:
        if os.environ.get("CI") == "true":
            pytest.fail(f"exchange plugins {sorted(NEEDED - names)} are not installed (run `make install`)")
        pytest.skip(f"exchange plugins {sorted(NEEDED - names)} are not installed (run `make install`)")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    _require_exchange_plugins()
    (tmp_path / "xdg").mkdir()
    return tmp_path


def _env(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["XDG_CACHE_HOME"] = str(workdir / "xdg")
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def arbframe(workdir: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "arbframe", *args], cwd=workdir, env=_env(workdir), capture_output=True, text=True,
        timeout=timeout,
    )


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_run_once_on_defaults_writes_spreads_to_csv(workdir):
    proc = arbframe(workdir, "run", "--once")
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr
    assert "[BOT] Initializing bot service..." in err
    assert "[BOT] Storage initialized: CsvStorage" in err
    assert "[BOT] Starting bot service loop" in err
    assert "[METRICS] pnl=0₩ win_rate=0.0% trades=0 open_pos=0 daily_pnl=0₩ avg_duration=0s" in err
    assert "[BOT] heartbeat - symbols=['BTC', 'ETH'] backend=csv redis=disabled" in err
    assert "[BOT] Exiting (--once mode)" in err
    assert "[BOT] Shutting down (completed 1 iterations)" in err
    # the defaults run in mock mode: every line made from market data says it is simulated
    for line in err.splitlines():
        if "kimchi=" in line or "[METRICS]" in line or "heartbeat -" in line:
            assert "[simulated data]" in line, line
    spreads = rows(workdir / "data" / "spreads.csv")
    assert {(r["symbol"], r["direction"]) for r in spreads} == {
        ("BTC", "kimchi"), ("BTC", "reverse"), ("ETH", "kimchi"), ("ETH", "reverse")}
    for r in spreads:
        # mock mode honours fx.source (static, 1350.0 on the defaults); the books stay simulated
        assert r["simulated"] == "true" and r["fx_source"] == "static" and r["fx_rate"] == "1350.0"
        assert r["tether_premium"] and r["usdt_premium"]
    assert [(r["rate"], r["source"]) for r in rows(workdir / "data" / "fx_rates.csv")] == [("1350.0", "static")]


def test_sigterm_finishes_the_tick_flushes_and_exits_0(workdir):
    proc = subprocess.Popen(
        [sys.executable, "-m", "arbframe", "run", "--interval", "0.2"], cwd=workdir, env=_env(workdir),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    spreads = workdir / "data" / "spreads.csv"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if spreads.exists() and len(rows(spreads)) >= 8:  # two ticks flushed
                break
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[1]
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "received SIGTERM" in err
    assert "Shutting down (completed" in err
    assert "[BOT] final [METRICS]" in err
    n = int(err.rsplit("Shutting down (completed ", 1)[1].split(" ", 1)[0])
    assert len(rows(spreads)) == 4 * n  # every finished tick is on disk, nothing torn


def _write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


CALM = """
simulation: {seed: 5, premium_sigma: 0.0, excursion_prob: 0.0, price_sigma: 0.0, premium_mean: %s}
arbitrage: {symbols: [BTC], directions: [kimchi], cooldown_seconds: 0}
"""


def test_restart_resumes_an_open_position_and_closes_it_once(workdir):
    high = _write(workdir / "high.yml", CALM % "0.05")
    low = _write(workdir / "low.yml", CALM % "0.0")
    first = arbframe(workdir, "run", "--once", "--config", high)
    assert first.returncode == 0, first.stderr
    assert "[BOT] OPEN kimchi BTC" in first.stderr
    positions = rows(workdir / "data" / "positions.csv")
    assert [p["status"] for p in positions] == ["open"]
    pid = positions[0]["id"]
    # restart with the premium still high: resumed, not duplicated, no second entry
    again = arbframe(workdir, "run", "--once", "--config", high)
    assert again.returncode == 0, again.stderr
    assert f"resumed open position {pid}" in again.stderr
    assert [p["status"] for p in rows(workdir / "data" / "positions.csv")] == ["open"]
    # restart with the premium gone: the position is closed exactly once
    second = arbframe(workdir, "run", "--max-iterations", "2", "--interval", "0.1", "--config", low)
    assert second.returncode == 0, second.stderr
    assert f"resumed open position {pid}" in second.stderr
    assert second.stderr.count("[BOT] CLOSE kimchi BTC") == 1
    positions = rows(workdir / "data" / "positions.csv")
    assert [(p["id"], p["status"]) for p in positions] == [(pid, "open"), (pid, "closed")]
    assert positions[1]["close_reason"] == "exit" and positions[1]["realized_pnl_krw"]
    orders = rows(workdir / "data" / "orders.csv")
    assert len(orders) == 4 and {o["position_id"] for o in orders} == {pid}
    third = arbframe(workdir, "run", "--once", "--config", low)
    assert "resumed open position" not in third.stderr
    # the PnL totals carry over the restart: the closed position counts once, with its realized PnL
    pnl = Decimal(positions[1]["realized_pnl_krw"]).quantize(Decimal(1))
    assert f"restored 1 closed positions from storage: pnl={pnl}₩ trades=1" in third.stderr
    assert "trades=1 " in third.stderr.split("[METRICS]")[-1]


def test_live_mode_refuses_without_credentials_and_confirmation(workdir):
    proc = arbframe(workdir, "run", "--mode", "live", "--once")
    assert proc.returncode == 2
    assert "live mode needs API credentials" in proc.stderr and "refusing to start" in proc.stderr
    creds = _write(workdir / "creds.yml", """
upbit: {api_key: a-key, api_secret: a-secret}
binance: {api_key: b-key, api_secret: b-secret}
""")
    proc = arbframe(workdir, "run", "--mode", "live", "--once", "--config", creds)
    assert proc.returncode == 2
    assert "live.confirm: true" in proc.stderr
    assert "a-secret" not in proc.stderr and "b-secret" not in proc.stderr
    rehearsal = arbframe(workdir, "run", "--mode", "live", "--mock", "--once")
    assert rehearsal.returncode == 0, rehearsal.stderr
    assert "LIVE MODE REHEARSAL" in rehearsal.stderr
