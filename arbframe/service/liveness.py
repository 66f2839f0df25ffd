"""Liveness and readiness of a running service, and the heartbeat file that shows them to other processes.

- **Liveness** (``/health``'s HTTP status, ``arbframe health --live``, the compose and image health checks): the
  loop completed a tick within ``max(3 x interval, 10 s)`` (before the first tick: since the start). Nothing else:
  Redis or PostgreSQL being down does not make a live loop dead.
- **Readiness** (``/ready``, ``arbframe health --ready``): storage writable or safely spooling, both venues
  answered in the last tick, not killed.

The service writes both, with its pid, host, interval and the storage backend really in use, to a small JSON file
after every tick (``<storage.csv.data_dir>/heartbeat/<instance_id>.json``, replaced atomically), so ``arbframe
health`` can judge them without Redis and without the metrics server.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from arbframe.core.models import utcnow
from arbframe.kernel.book import instance_id_from_config, safe_name
from arbframe.kernel.interfaces import HealthResult, HealthStatus

#: the floor of the liveness bound, seconds
MIN_LIVENESS_SECONDS = 10.0


def liveness_bound(interval_seconds: float) -> float:
    """How old the last completed tick may be: ``max(3 x interval, 10 s)``."""
    return max(3.0 * float(interval_seconds), MIN_LIVENESS_SECONDS)


def heartbeat_path(config: Mapping[str, Any]) -> Path:
    data_dir = Path(str(((config.get("storage") or {}).get("csv") or {}).get("data_dir", "data")))
    return data_dir / "heartbeat" / f"{safe_name(instance_id_from_config(config))}.json"


def interval_from_config(config: Mapping[str, Any]) -> float:
    return float((config.get("service") or {}).get("interval_seconds", 30) or 30)


@dataclass
class LoopState:
    """What the service loop knows about itself; read by ``/health`` and ``/ready``, written to the file."""

    interval_seconds: float
    instance_id: str = ""
    started: float = field(default_factory=time.monotonic)
    started_at: datetime = field(default_factory=utcnow)
    last_tick: float | None = None
    last_tick_at: datetime | None = None
    ticks: int = 0
    backend: str = ""
    ready: bool = False
    ready_reason: str = "waiting for the first tick"
    stopped: bool = False
    clock: Callable[[], float] = time.monotonic

    def tick_done(self) -> None:
        self.last_tick, self.last_tick_at = self.clock(), utcnow()
        self.ticks += 1

    def age(self) -> float:
        """Seconds since the last completed tick (since the start before the first one)."""
        return self.clock() - (self.last_tick if self.last_tick is not None else self.started)

    def live(self) -> tuple[bool, str]:
        bound = liveness_bound(self.interval_seconds)
        age = self.age()
        if self.stopped:
            return False, "the loop has stopped"
        what = "last tick" if self.last_tick is not None else "started (no tick yet)"
        if age > bound:
            return False, f"{what} {age:.1f}s ago, more than {bound:g}s"
        return True, f"{what} {age:.1f}s ago (bound {bound:g}s)"

    def to_json(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "interval_seconds": self.interval_seconds,
            "started_at": self.started_at.isoformat(),
            "last_tick_at": self.last_tick_at.isoformat() if self.last_tick_at else None,
            "written_at": utcnow().isoformat(),
            "ticks": self.ticks,
            "backend": self.backend,
            "ready": self.ready,
            "ready_reason": self.ready_reason,
            "stopped": self.stopped,
        }


def write_heartbeat(path: Path, state: LoopState) -> None:
    """Replace the heartbeat file atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state.to_json()), encoding="utf-8")
    os.replace(tmp, path)


def read_heartbeat(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _parse(ts: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(ts))
    except (TypeError, ValueError):
        return None


def liveness_from_file(path: Path, *, now: datetime | None = None) -> HealthResult:
    """LIVENESS as another process sees it: the same rule as ``/health``, from the heartbeat file."""
    data = read_heartbeat(path)
    if data is None:
        return HealthResult("liveness", HealthStatus.ERROR, f"no heartbeat file at {path} (service not running?)")
    now = now or utcnow()
    interval = float(data.get("interval_seconds") or 30)
    bound = liveness_bound(interval)
    last = _parse(data.get("last_tick_at"))
    ref = last or _parse(data.get("started_at"))
    details = {"file": str(path), "pid": data.get("pid"), "host": data.get("host"), "ticks": data.get("ticks"),
               "last_tick_at": data.get("last_tick_at"), "bound_seconds": bound, "backend": data.get("backend")}
    if data.get("stopped"):
        return HealthResult("liveness", HealthStatus.ERROR, f"{data.get('instance_id')} stopped "
                            f"(pid {data.get('pid')})", details)
    if ref is None:
        return HealthResult("liveness", HealthStatus.ERROR, f"unreadable heartbeat file {path}", details)
    age = max(0.0, (now - ref).total_seconds())
    details["age_seconds"] = round(age, 3)
    what = "last tick" if last is not None else "started, no tick yet,"
    if age > bound:
        return HealthResult("liveness", HealthStatus.ERROR, f"{what} {age:.0f}s ago (more than {bound:g}s): "
                            "the loop is stuck or gone", details)
    return HealthResult("liveness", HealthStatus.OK, f"{what} {age:.1f}s ago (pid {data.get('pid')}, "
                        f"storage {data.get('backend') or '?'})", details)


def readiness_from_file(path: Path, *, now: datetime | None = None) -> HealthResult:
    """READINESS as the service last judged it (not ready when it is not live)."""
    live = liveness_from_file(path, now=now)
    if live.status is not HealthStatus.OK:
        return HealthResult("readiness", HealthStatus.ERROR, f"not ready: {live.message}")
    data = read_heartbeat(path) or {}
    reason = str(data.get("ready_reason") or "")
    if data.get("ready"):
        return HealthResult("readiness", HealthStatus.OK, reason or "ready")
    return HealthResult("readiness", HealthStatus.ERROR, f"not ready: {reason}")
