"""``arbframe metrics``: the registry ``arbframe run`` builds, printed once; ``--url`` fetches a running one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    cfg = tmp_path / "cfg.yml"
    cfg.write_text(f"storage: {{csv: {{data_dir: {tmp_path / 'data'}}}}}\n")
    return subprocess.run(
        [sys.executable, "-m", "arbframe", "metrics", "--config", str(cfg), *args],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )


def test_metrics_prints_every_service_family_once(tmp_path: Path) -> None:
    out = _run(tmp_path)
    assert out.returncode == 0, out.stderr
    families = {f.name: f for f in text_string_to_metric_families(out.stdout)}
    for name in ("arbitrage_total_pnl_krw", "arbitrage_win_rate", "arbitrage_trades", "arbitrage_open_positions",
                 "arbitrage_daily_pnl_krw", "arbitrage_avg_trade_duration_seconds", "arbitrage_premium_ratio",
                 "arbitrage_tick_duration_seconds", "arbframe_build_info", "arbframe_plugin_errors",
                 "arbframe_storage_rows_written", "arbframe_exchange_requests"):
        assert name in families, name
    assert families["arbitrage_total_pnl_krw"].samples[0].value == 0.0
    assert families["arbitrage_simulated_data"].samples[0].value == 1.0  # the defaults quote the simulated market
    assert "MOCK MODE" not in out.stderr  # the listing's own mock build is not news


def test_metrics_url_that_does_not_answer_is_one_clear_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = _run(tmp_path, "--url", f"127.0.0.1:{port}", "--timeout", "2")
    assert out.returncode == 1
    assert out.stdout == ""
    assert f"cannot fetch http://127.0.0.1:{port}/metrics" in out.stderr
    assert "Traceback" not in out.stderr
