"""One writer per book on a CSV store: two processes on the same symbols -> the second exits 2 naming the holder;
disjoint symbol sets share the store (the docs/OPERATIONS.md example), each with its own instance id."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def _run(tmp_path: Path, data: Path, symbols: str, instance: str, *extra: str) -> subprocess.Popen[str]:
    config = tmp_path / f"{instance}.yml"
    config.write_text(
        f"mock_mode: true\nservice: {{instance_id: {instance}, interval_seconds: 0.2}}\n"
        f"storage: {{backend: csv, csv: {{data_dir: {data}}}}}\n"
        f"arbitrage: {{symbols: [{symbols}]}}\npaper: {{seed: 7}}\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    return subprocess.Popen([sys.executable, "-m", "arbframe", "run", "--config", str(config), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)


def test_second_runner_on_the_same_book_exits_2_disjoint_books_share(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = _run(tmp_path, data, "BTC, ETH", "bot-a", "--duration", "20")
    lock = data / "locks" / "upbit-binance-ETH.lock"
    deadline = time.monotonic() + 30
    while not (lock.exists() and lock.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        second = _run(tmp_path, data, "ETH", "bot-b", "--once")
        _out, err = second.communicate(timeout=60)
        assert second.returncode == 2, err
        assert "upbit-binance-ETH" in err and "held by instance 'bot-a'" in err and f"pid {first.pid}" in err
        third = _run(tmp_path, data, "XRP", "bot-c", "--duration", "1.5")
        _out, err = third.communicate(timeout=60)
        assert third.returncode == 0, err
    finally:
        first.terminate()
        first.communicate(timeout=30)
    assert first.returncode == 0
    rows = (data / "spreads.csv").read_text().splitlines()
    header = rows[0].split(",")
    where = header.index("instance_id")
    symbol = header.index("symbol")
    seen = {(r.split(",")[symbol], r.split(",")[where]) for r in rows[1:]}
    assert {i for _, i in seen} == {"bot-a", "bot-c"}
    assert all((s in ("BTC", "ETH")) == (i == "bot-a") for s, i in seen)
    # the lock was released with its holder: the same book starts now
    again = _run(tmp_path, data, "ETH", "bot-b", "--once")
    _out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
