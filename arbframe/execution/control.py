"""The kill switch: kept in storage (``Storage.write_control("kill_switch", ...)``), so ``arbframe kill`` on any
host stops every runner sharing the store, and a restart stays killed until ``arbframe resume``.

A storage without control records (``NotImplementedError``: the null storage) keeps it in a JSON file
``<data_dir>/control/kill_switch.json`` instead (one host only). Killed: no new entries; open orders are canceled;
with ``flatten`` every open position is closed at its price bound. The runner reads the state every tick (off
the event loop, bounded), trips it itself on consecutive execution failures, residual exposure or the daily loss
limit, and shows it in health (``kill_switch``), metrics (``arbframe_kill_switch``) and one log line per change.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from arbframe.core.models import utcnow

log = logging.getLogger("arbframe.execution")

CONTROL_NAME = "kill_switch"


@dataclass(frozen=True)
class KillState:
    killed: bool = False
    reason: str = ""
    flatten: bool = False
    ts: str = ""
    by: str = ""

    @classmethod
    def from_mapping(cls, value: Any) -> KillState:
        if not isinstance(value, dict):
            return cls()
        return cls(killed=bool(value.get("killed")), reason=str(value.get("reason") or ""),
                   flatten=bool(value.get("flatten")), ts=str(value.get("ts") or ""), by=str(value.get("by") or ""))

    def describe(self) -> str:
        if not self.killed:
            return "not killed"
        flat = ", flatten" if self.flatten else ""
        return f"KILLED since {self.ts} by {self.by}{flat}: {self.reason or 'no reason given'}"


def who() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class KillSwitch:
    """Reads and writes the kill switch through ``storage`` (or the fallback file)."""

    def __init__(self, storage: Any, data_dir: str | Path | None = None) -> None:
        self.storage = storage
        self.fallback = Path(data_dir or "data") / "control" / f"{CONTROL_NAME}.json"
        self.state = KillState()
        self._read_failed = False
        self._file = False  # the storage keeps no control records: the fallback file is used

    @property
    def where(self) -> str:
        if self._file:
            return f"file {self.fallback}"
        describe = getattr(self.storage, "describe", None)
        return describe() if callable(describe) else "storage"

    @property
    def last_read_failed(self) -> bool:
        """The last :meth:`read` could not reach the store (its answer was the state read before)."""
        return self._read_failed

    def read(self) -> KillState:
        """The stored state (the last one read when the store cannot answer: it never un-kills by itself)."""
        try:
            try:
                value = self.storage.read_control(CONTROL_NAME)
            except NotImplementedError:
                self._file = True
                value = json.loads(self.fallback.read_text(encoding="utf-8")) if self.fallback.exists() else None
        except Exception as exc:
            if not self._read_failed:
                log.warning("[EXEC] kill switch could not be read from %s (%s: %s); keeping the last state (%s)",
                            self.where, type(exc).__name__, exc, self.state.describe())
            self._read_failed = True
            return self.state
        self._read_failed = False
        self.state = KillState.from_mapping(value)
        return self.state

    def write(self, state: KillState) -> KillState:
        value = asdict(state)
        try:
            self.storage.write_control(CONTROL_NAME, value)
        except NotImplementedError:
            self._file = True
            self.fallback.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.fallback.with_suffix(".tmp")
            tmp.write_text(json.dumps(value), encoding="utf-8")
            os.replace(tmp, self.fallback)
        self.state = state
        return state

    def trip(self, reason: str, *, flatten: bool = False, by: str | None = None) -> KillState:
        return self.write(KillState(True, reason, flatten, utcnow().isoformat(), by or who()))

    def resume(self, *, by: str | None = None) -> KillState:
        return self.write(KillState(False, "", False, utcnow().isoformat(), by or who()))
