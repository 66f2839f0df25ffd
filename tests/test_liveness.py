"""Health semantics: /health = liveness, /ready = readiness, `arbframe health --live/--ready` from the heartbeat
file with the same rule, and no Redis needed."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from arbframe.core.models import utcnow
from arbframe.kernel.interfaces import HealthResult, HealthStatus
from arbframe.service.liveness import (
    LoopState,
    heartbeat_path,
    liveness_bound,
    liveness_from_file,
    readiness_from_file,
    write_heartbeat,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bound_is_three_intervals_at_least_ten_seconds() -> None:
    assert liveness_bound(0.1) == 10 and liveness_bound(30) == 90
    clock = Clock()
    state = LoopState(1.0, clock=clock, started=clock())
    clock.now += 9.9
    assert state.live()[0]  # no tick yet, within the bound of the start
    state.tick_done()
    clock.now += 10.5
    live, why = state.live()
    assert not live and "more than 10s" in why
    state.tick_done()
    assert state.live()[0]
    state.stopped = True
    assert not state.live()[0]


def test_file_verdicts(tmp_path: Path) -> None:
    path = tmp_path / "hb.json"
    assert liveness_from_file(path).status is HealthStatus.ERROR  # no service
    state = LoopState(10.0, instance_id="bot-a")
    state.tick_done()
    state.ready, state.ready_reason = False, "venue(s) unreachable: binance"
    write_heartbeat(path, state)
    assert liveness_from_file(path).status is HealthStatus.OK
    assert liveness_from_file(path, now=utcnow() + timedelta(seconds=29)).status is HealthStatus.OK
    stale = liveness_from_file(path, now=utcnow() + timedelta(seconds=31))
    assert stale.status is HealthStatus.ERROR and "more than 30s" in stale.message
    ready = readiness_from_file(path)
    assert ready.status is HealthStatus.ERROR and "binance" in ready.message
    state.ready, state.ready_reason = True, "ticking"
    write_heartbeat(path, state)
    assert readiness_from_file(path).status is HealthStatus.OK


def test_health_http_status_is_liveness_whatever_the_checks(tmp_path: Path) -> None:
    import aiohttp
    from prometheus_client import CollectorRegistry

    from arbframe.service.metrics_server import MetricsServer

    verdict = {"live": True}

    def report() -> list[HealthResult]:
        return [HealthResult("redis", HealthStatus.ERROR, "Cannot connect")]

    async def main() -> list[tuple[int, dict]]:
        server = MetricsServer(CollectorRegistry(), report, port=0, health_cache_seconds=0,
                               live_provider=lambda: (verdict["live"], "why"),
                               ready_provider=lambda: (False, "storage: cannot write"))
        await server.start()
        out = []
        try:
            async with aiohttp.ClientSession() as session:
                for live in (True, False):
                    verdict["live"] = live
                    async with session.get(f"{server.url}/health") as resp:
                        out.append((resp.status, await resp.json()))
                async with session.get(f"{server.url}/ready") as resp:
                    out.append((resp.status, await resp.json()))
        finally:
            await server.stop()
        return out

    (ok, body), (dead, body2), (ready_status, ready_body) = asyncio.run(main())
    assert ok == 200 and body["live"] is True and body["status"] == "ERROR"  # Redis down: still live
    assert dead == 503 and body2["live"] is False
    assert ready_status == 503 and ready_body == {"ready": False, "reason": "storage: cannot write"}


def test_health_command_live_and_ready_read_the_file(tmp_path: Path) -> None:
    config = tmp_path / "c.yml"
    config.write_text(f"storage: {{backend: csv, csv: {{data_dir: {tmp_path / 'data'}}}}}\n")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")}

    def health(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "arbframe", "health", "--config", str(config), *args],
                              capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)

    dead = health("--live")
    assert dead.returncode == 1 and "no heartbeat file" in dead.stdout
    from arbframe.kernel.config import load_config

    path = heartbeat_path(load_config([str(config)]))
    state = LoopState(30.0)
    state.tick_done()
    state.ready, state.ready_reason = True, "ticking; storage csv"
    write_heartbeat(path, state)
    assert health("--live").returncode == 0
    assert health("--ready").returncode == 0
    report = health("--json")
    rows = {c["component"]: c["status"] for c in json.loads(report.stdout)["checks"]}
    assert rows["liveness"] == "OK" and rows["readiness"] == "OK" and rows["heartbeat"] == "OK"
    data = json.loads(path.read_text())
    data["last_tick_at"] = (utcnow() - timedelta(seconds=200)).isoformat()
    path.write_text(json.dumps(data))
    stuck = health()
    assert stuck.returncode == 1 and "LIVENESS" in stuck.stdout and "stuck or gone" in stuck.stdout
    assert health("--live").returncode == 1
