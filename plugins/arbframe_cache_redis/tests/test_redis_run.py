"""``arbframe run`` with Redis: the seed's D2 scenario 4 (FX readable with ``redis-cli``), D3 §5 (heartbeat),
and an outage in the middle of a run (ticks continue, writes resume, the heartbeat reappears)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from arbframe.testing.redis_server import redis_server  # noqa: F401  (fixture)

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    env.pop("REDIS_URL", None)
    env.pop("DATABASE_URL", None)
    return env


def write_config(tmp_path: Path, url: str, extra: str = "", ttl: int = 60) -> Path:
    path = tmp_path / "run.yml"
    path.write_text(
        "mock_mode: true\n"
        "fx:\n"
        "  source: static\n"
        "  static_rate: 1350.0\n"
        "storage:\n"
        "  backend: csv\n"
        "  csv:\n"
        f"    data_dir: {tmp_path / 'data'}\n"
        "redis:\n"
        "  enabled: true\n"
        f"  url: {url}\n"
        "  prefix: arb\n"
        f"  health_ttl_seconds: {ttl}\n" + extra
    )
    return path


def wait_for(predicate, timeout: float, what: str, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_scenario_4_fx_published_by_run_once_is_readable_with_redis_cli(tmp_path, redis_server):  # noqa: F811
    cfg = write_config(tmp_path, redis_server.url)
    out = subprocess.run([sys.executable, "-m", "arbframe", "run", "--once", "--config", str(cfg)],
                         cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    # seed D2 §4: KEYS "arb:fx:*" then GET "arb:fx:usdkrw" -> 1350.0. Mock mode honours fx.source: static, so
    # the key holds exactly fx.static_rate (the simulated market's own USD/KRW only prices its books), and it is
    # the rate the run recorded in fx_rates.csv.
    assert "arb:fx:usdkrw" in redis_server.cli("KEYS", "arb:fx:*").split()
    shown = redis_server.cli("GET", "arb:fx:usdkrw")
    assert shown == "1350.0", shown
    with open(tmp_path / "data" / "fx_rates.csv", newline="") as fh:
        recorded = [(row["rate"], row["source"]) for row in csv.DictReader(fh)]
    assert recorded == [("1350.0", "static")]
    assert 55 <= int(redis_server.cli("TTL", "arb:fx:usdkrw")) <= 60
    # seed D3 §5: the heartbeat, ISO-8601 UTC, TTL health_ttl_seconds
    beat = redis_server.cli("GET", "arb:heartbeat:bot_service")
    ts = datetime.fromisoformat(beat)
    assert ts.utcoffset().total_seconds() == 0 and beat.endswith("+00:00")
    assert abs((datetime.now(timezone.utc) - ts).total_seconds()) < 60
    assert 55 <= int(redis_server.cli("TTL", "arb:heartbeat:bot_service")) <= 60
    # spread snapshots, fixed 60 s
    for symbol in ("BTC", "ETH"):
        snapshot = json.loads(redis_server.cli("GET", f"arb:spread:{symbol}"))
        assert snapshot["source"] == "bot_service" and "ts" in snapshot
        assert 55 <= int(redis_server.cli("TTL", f"arb:spread:{symbol}")) <= 60
    # a second process (the health report) reads the same rate back through the cache
    health = subprocess.run([sys.executable, "-m", "arbframe", "health", "--config", str(cfg), "--json"],
                            cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=60)
    fx = next(c for c in json.loads(health.stdout)["checks"] if c["component"] == "fx")
    assert Decimal(fx["details"]["rate"]) == Decimal(shown) and fx["details"]["via"] == "redis"
    heartbeat = next(c for c in json.loads(health.stdout)["checks"] if c["component"] == "heartbeat")
    assert heartbeat["status"] == "OK"


def test_redis_stopped_and_started_during_a_run(tmp_path, redis_server):  # noqa: F811
    cfg = write_config(
        tmp_path, redis_server.url,
        "  socket_timeout_seconds: 0.3\n  backoff_initial_seconds: 0.1\n  backoff_max_seconds: 0.3\n",
        ttl=45,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "arbframe", "run", "--interval", "0.2", "--duration", "30", "--config", str(cfg)],
        cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()

    def count(text: str) -> int:
        return sum(text in line for line in list(lines))

    def heartbeat() -> str:
        return redis_server.cli("GET", "arb:heartbeat:bot_service") if redis_server.running else ""

    try:
        first = wait_for(heartbeat, 60, "the first heartbeat")
        for key in ("arb:heartbeat:bot_service", "arb:fx:usdkrw"):  # TTLs as configured
            assert 40 <= int(redis_server.cli("TTL", key)) <= 45, key
        redis_server.stop()
        wait_for(lambda: count("failing") >= 1, 20, "the outage warning")
        ticks_at_outage = count("[BOT] heartbeat -")
        wait_for(lambda: count("[BOT] heartbeat -") >= ticks_at_outage + 5, 20, "ticks during the outage")
        assert proc.poll() is None, "the service stopped when Redis went down"
        redis_server.start()  # back, empty, same port
        second = wait_for(heartbeat, 20, "the heartbeat to reappear")
        assert datetime.fromisoformat(second) > datetime.fromisoformat(first)
        wait_for(lambda: redis_server.cli("GET", "arb:fx:usdkrw"), 20, "the FX rate to reappear")
        wait_for(lambda: count("reachable again") >= 1, 20, "the recovery message")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        reader.join(timeout=10)
    output = "".join(lines)
    assert proc.returncode == 0, output[-3000:]
    # failures were warned about at a bounded rate: once for the whole outage, not once per tick
    assert count("failing") == 1, output[-3000:]
    assert "Traceback" not in output


def test_without_redis_py_the_service_runs_and_health_says_how_to_install(tmp_path):
    from arbframe.testing.redis_server import free_port

    hidden = tmp_path / "hide"
    (hidden / "redis").mkdir(parents=True)
    (hidden / "redis" / "__init__.py").write_text("raise ImportError(\"No module named 'redis' (hidden by a test)\")\n")
    env = _env(tmp_path)
    env["PYTHONPATH"] = str(hidden) + os.pathsep + env.get("PYTHONPATH", "")
    cfg = write_config(tmp_path, f"redis://127.0.0.1:{free_port()}/0")
    run = subprocess.run([sys.executable, "-m", "arbframe", "run", "--once", "--config", str(cfg)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "pip install redis" in run.stderr
    assert "Traceback" not in run.stderr
    assert (tmp_path / "data" / "spreads.csv").exists()  # the tick still ran and recorded
    health = subprocess.run([sys.executable, "-m", "arbframe", "health", "--config", str(cfg)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert health.returncode == 1
    assert "[REDIS     ] ❌ ERROR    redis-py is not installed: pip install redis" in health.stdout


async def test_scenario_4_static_source_shows_exactly_1350_0(redis_server):  # noqa: F811
    """The seed's fx_mode=static path, exactly: the static source published through FxService reads 1350.0."""
    from arbframe_cache_redis.cache import RedisCache

    from arbframe.testing.plugin_harness import PluginHarness

    cache = RedisCache({"url": redis_server.url, "prefix": "arb"}, None)
    harness = PluginHarness({"fx": {"source": "static", "static_rate": 1350.0}})
    fx = harness.fx_service(cache, ttl_seconds=60)
    rate = await fx.current()
    assert sorted(redis_server.cli("KEYS", "arb:fx:*").split()) == ["arb:fx:usdkrw", "arb:fx:usdkrw:meta"]
    assert redis_server.cli("GET", "arb:fx:usdkrw") == "1350.0"
    assert 55 <= int(redis_server.cli("TTL", "arb:fx:usdkrw")) <= 60
    reader = harness.fx_service(RedisCache({"url": redis_server.url, "prefix": "arb"}, None), source=None)
    assert reader.read() == rate  # a second reader sees the same rate, id, timestamp and source
    cache.close()
