"""The seed's MODULE D2 scenarios, through the real ``arbframe health`` command and a throwaway redis-server.

1. Redis disabled  -> REDIS = DISABLED, the rest OK, exit 0
2. Redis up        -> REDIS = OK (``Connected to redis://host:port/0``)
3. Redis stopped   -> REDIS = ERROR, exit 1
4. FX published by a run is readable with ``redis-cli GET arb:fx:usdkrw`` (see test_redis_run.py)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from arbframe_cache_redis.plugin import arbframe_health_checks, check_redis

from arbframe import HealthStatus
from arbframe.testing.redis_server import free_port, redis_server  # noqa: F401  (fixture)

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def arbframe(tmp_path: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    env.pop("REDIS_URL", None)
    env.pop("DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "arbframe", *args], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=timeout,
    )


def startup_allowance(tmp_path: Path) -> float:
    """Wall time of a process importing what ``arbframe health`` imports, doing nothing: on a loaded machine
    (CI, other suites in parallel) interpreter start-up alone can take seconds, and the 3 s bound is about
    the command's own work."""
    started = time.monotonic()
    imports = "import arbframe.cli, arbframe.service.health, arbframe.kernel.plugin_host, jsonschema, redis"
    subprocess.run([sys.executable, "-c", imports],
                   cwd=tmp_path, env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")}, check=True, timeout=60)
    return time.monotonic() - started


def write_config(tmp_path: Path, *, enabled: bool, url: str) -> Path:
    path = tmp_path / "redis.yml"
    path.write_text(
        "storage:\n"
        "  backend: csv\n"
        "  csv:\n"
        f"    data_dir: {tmp_path / 'data'}\n"
        "redis:\n"
        f"  enabled: {'true' if enabled else 'false'}\n"
        f"  url: {url}\n"
    )
    return path


def rows(stdout: str) -> dict[str, str]:
    """``[REDIS     ] ✅ OK       Connected ...`` -> {"REDIS": "OK ..."}"""
    found = {}
    for line in stdout.splitlines():
        if line.startswith("["):
            name, rest = line[1:].split("]", 1)
            found[name.strip()] = rest.split(" ", 2)[2].strip()
    return found


# --------------------------------------------------------------------------------------------- seed scenarios
def test_scenario_1_redis_disabled(tmp_path, redis_server):  # noqa: F811
    cfg = write_config(tmp_path, enabled=False, url=redis_server.url)
    out = arbframe(tmp_path, "health", "--config", str(cfg))
    assert out.returncode == 0, out.stdout + out.stderr
    found = rows(out.stdout)
    assert found["REDIS"].startswith("DISABLED")
    assert "[REDIS     ] ⏸️ DISABLED" in out.stdout
    for name, status in found.items():
        if name in ("LIVENESS", "READINESS"):  # no service has run here
            assert status.startswith("SKIP"), (name, status)
        elif name not in ("REDIS", "POSTGRES"):
            assert status.startswith("OK"), (name, status)
    assert "Overall:       ✅ OK" in out.stdout


def test_scenario_2_redis_up(tmp_path, redis_server):  # noqa: F811
    cfg = write_config(tmp_path, enabled=True, url=redis_server.url)
    out = arbframe(tmp_path, "health", "--config", str(cfg))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"[REDIS     ] ✅ OK       Connected to redis://127.0.0.1:{redis_server.port}/0" in out.stdout
    # no service is running: its heartbeat is missing (a warning, not an error)
    assert rows(out.stdout)["HEARTBEAT"].startswith("WARN")


def test_scenario_3_redis_stopped(tmp_path, redis_server):  # noqa: F811
    cfg = write_config(tmp_path, enabled=True, url=redis_server.url)
    redis_server.stop()
    allowance = startup_allowance(tmp_path)
    started = time.monotonic()
    out = arbframe(tmp_path, "health", "--config", str(cfg))
    assert time.monotonic() - started - allowance < 3.0
    assert out.returncode == 1, out.stdout + out.stderr
    assert "[REDIS     ] ❌ ERROR    Cannot connect to redis://127.0.0.1:" in out.stdout
    assert "Overall:       ❌ ERROR" in out.stdout


# ----------------------------------------------------------------------------------------------- the rest
def test_json_is_valid_and_lists_every_component(tmp_path, redis_server):  # noqa: F811
    cfg = write_config(tmp_path, enabled=True, url=redis_server.url)
    out = arbframe(tmp_path, "health", "--config", str(cfg), "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    components = [c["component"] for c in data["checks"]]
    assert {"redis", "csv", "fx", "heartbeat"} <= set(components)
    assert len(components) == len(set(components))
    assert data["status"] in ("OK", "WARN")
    assert all(set(c) >= {"component", "status", "message", "details", "duration_ms"} for c in data["checks"])
    text = arbframe(tmp_path, "health", "--config", str(cfg))
    assert set(rows(text.stdout)) == {c.upper() for c in components}


def test_json_when_down_says_error_and_exits_1(tmp_path):
    cfg = write_config(tmp_path, enabled=True, url=f"redis://127.0.0.1:{free_port()}/0")
    out = arbframe(tmp_path, "health", "--config", str(cfg), "--json")
    assert out.returncode == 1
    data = json.loads(out.stdout)
    redis = next(c for c in data["checks"] if c["component"] == "redis")
    assert data["status"] == "ERROR" and redis["status"] == "ERROR"


def test_heartbeat_and_fx_written_by_another_process_are_what_health_reports(tmp_path, redis_server):  # noqa: F811
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc).isoformat()
    redis_server.cli("SET", "arb:heartbeat:bot_service", now, "EX", "60")
    redis_server.cli("SET", "arb:fx:usdkrw", "1388.5", "EX", "60")
    cfg = write_config(tmp_path, enabled=True, url=redis_server.url)
    out = arbframe(tmp_path, "health", "--config", str(cfg), "--verbose")
    found = rows(out.stdout)
    assert found["HEARTBEAT"].startswith("OK       bot_service alive")
    assert "USD/KRW 1388.5 from external" in found["FX"]


def test_password_never_shown(tmp_path):
    from arbframe.testing.redis_server import running_redis_server

    with running_redis_server(password="s3cr3t-pw") as server:
        cfg = write_config(tmp_path, enabled=True, url=server.url)
        out = arbframe(tmp_path, "health", "--config", str(cfg), "--verbose")
        assert out.returncode == 0, out.stdout + out.stderr
        assert f"Connected to redis://:***@127.0.0.1:{server.port}/0" in out.stdout
        bad = write_config(tmp_path, enabled=True, url=f"redis://:wrong-pw@127.0.0.1:{server.port}/0")
        out = arbframe(tmp_path, "health", "--config", str(bad), "--json")
        assert out.returncode == 1
        assert "s3cr3t-pw" not in out.stdout + out.stderr and "wrong-pw" not in out.stdout + out.stderr


def test_all_servers_down_answers_within_3_seconds(tmp_path):
    """Redis and PostgreSQL both configured and both down (nothing listens on their ports)."""
    from importlib import metadata

    pg = any(ep.name == "postgres" for ep in metadata.entry_points(group="arbframe.storage"))
    dead = free_port()
    cfg = tmp_path / "down.yml"
    cfg.write_text(
        "storage:\n"
        f"  backend: {'postgres' if pg else 'csv'}\n"
        "  csv:\n"
        f"    data_dir: {tmp_path / 'data'}\n"
        "  postgres:\n"
        f"    dsn: postgresql://arb:pw@127.0.0.1:{dead}/arbitrage\n"
        "redis:\n"
        "  enabled: true\n"
        f"  url: redis://127.0.0.1:{dead}/0\n"
    )
    allowance = startup_allowance(tmp_path)
    started = time.monotonic()
    out = arbframe(tmp_path, "health", "--config", str(cfg))
    elapsed = time.monotonic() - started
    assert elapsed - allowance < 3.0, (elapsed, allowance)
    assert out.returncode == 1
    report = arbframe(tmp_path, "health", "--config", str(cfg), "--json")
    assert json.loads(report.stdout)["duration_ms"] < 2500  # building the drivers and every check
    found = rows(out.stdout)
    assert found["REDIS"].startswith("ERROR")
    assert found["CSV"].startswith("OK")
    if pg:
        assert found["POSTGRES"].startswith("ERROR")
        assert "pw@" not in out.stdout


# --------------------------------------------------------------------------------------------- the check itself
def test_check_states_in_process(redis_server):  # noqa: F811
    section = {"url": redis_server.url}
    assert check_redis(section, enabled=False).status is HealthStatus.DISABLED
    ok = check_redis(section, enabled=True)
    assert ok.status is HealthStatus.OK and ok.details["redis_version"]
    redis_server.stop()
    started = time.monotonic()
    down = check_redis(section, enabled=True, timeout=0.5)
    assert down.status is HealthStatus.ERROR and time.monotonic() - started < 1.0


def test_hybrid_storage_enables_the_check():
    checks = arbframe_health_checks({"storage": {"backend": "hybrid"}, "redis": {"enabled": False,
                                     "url": f"redis://127.0.0.1:{free_port()}/0"}}, None)
    assert checks[0].probe().status is HealthStatus.ERROR


def test_hung_servers_are_bounded_and_reported_by_their_own_rows(tmp_path):
    """Redis (and PostgreSQL when installed) accept connections and never answer: a hung server or a
    black-holed network, the worst case for a timeout."""
    import socket
    import threading
    from importlib import metadata

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    pg = any(ep.name == "postgres" for ep in metadata.entry_points(group="arbframe.storage"))
    cfg = tmp_path / "hung.yml"
    cfg.write_text(
        "storage:\n"
        f"  backend: {'postgres' if pg else 'csv'}\n"
        "  csv:\n"
        f"    data_dir: {tmp_path / 'data'}\n"
        "  postgres:\n"
        f"    dsn: postgresql://arb:pw@127.0.0.1:{port}/arbitrage\n"
        "redis:\n"
        "  enabled: true\n"
        f"  url: redis://127.0.0.1:{port}/0\n"
    )
    try:
        out = arbframe(tmp_path, "health", "--config", str(cfg), "--json")
    finally:
        stop.set()
        thread.join(timeout=5)
        for s in held:
            s.close()
        listener.close()
    assert out.returncode == 1
    data = json.loads(out.stdout)
    assert data["duration_ms"] < 2800, data["duration_ms"]
    checks = {c["component"]: c for c in data["checks"]}
    assert checks["redis"]["status"] == "ERROR"
    assert checks["heartbeat"]["status"] == "SKIP"  # the REDIS row already says why
    assert checks["fx"]["status"] == "OK"  # from the source, the cache not answering
    assert checks["csv"]["status"] == "OK"
    if pg:
        assert checks["postgres"]["status"] == "ERROR"
