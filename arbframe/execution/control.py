"""The kill switch: kept in storage (``Storage.write_control("kill_switch", ...)``), so ``arbframe kill`` on any
host stops every runner sharing the store, and a restart stays killed until ``arbframe resume``.

A storage without control records (``NotImplementedError``: the null storage) keeps it in a JSON file
``<data_dir>/control/kill_switch.json`` instead (one host only; :class:`ControlRecords`). Killed: no new entries;
open orders are canceled; with ``flatten`` every open position is closed at its price bound. The runner reads the
state every tick (off the event loop, bounded), trips it itself on consecutive execution failures, residual
exposure or the daily loss limit, and shows it in health (``kill_switch``), metrics (``arbframe_kill_switch``) and
one log line per change. ``arbframe resume --flattened`` (or ``kill --flattened``) also names the residual exposure
the operator flattened by hand (:attr:`KillState.flattened`: the keys of
:class:`arbframe.execution.residual.Residual`); a runner drops those residuals when it reads it.
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
    #: ``arbframe resume --flattened``: the residuals (``Residual.key``) the operator flattened by hand
    flattened: tuple[str, ...] = ()

    @classmethod
    def from_mapping(cls, value: Any) -> KillState:
        if not isinstance(value, dict):
            return cls()
        flattened = value.get("flattened") or ()
        return cls(killed=bool(value.get("killed")), reason=str(value.get("reason") or ""),
                   flatten=bool(value.get("flatten")), ts=str(value.get("ts") or ""), by=str(value.get("by") or ""),
                   flattened=tuple(str(k) for k in flattened) if isinstance(flattened, (list, tuple)) else ())

    def describe(self) -> str:
        if not self.killed:
            return "not killed"
        flat = ", flatten" if self.flatten else ""
        return f"KILLED since {self.ts} by {self.by}{flat}: {self.reason or 'no reason given'}"


def who() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class ControlRecords:
    """Named control records through ``storage`` (``read_control``/``write_control``), or JSON files
    ``<data_dir>/control/<name>.json`` when the storage keeps none (``NotImplementedError``: one host only)."""

    def __init__(self, storage: Any, data_dir: str | Path | None = None) -> None:
        self.storage = storage
        self.directory = Path(data_dir or "data") / "control"
        self.file = False  # the storage keeps no control records: files are used

    def path(self, name: str) -> Path:
        return self.directory / f"{name}.json"

    @property
    def where(self) -> str:
        if self.file:
            return f"files under {self.directory}"
        describe = getattr(self.storage, "describe", None)
        return describe() if callable(describe) else "storage"

    def read(self, name: str) -> dict[str, Any] | None:
        """The record ``name``, None when never written (raises when the store does not answer)."""
        try:
            return self.storage.read_control(name)
        except NotImplementedError:
            self.file = True
            path = self.path(name)
            value = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
            return value if isinstance(value, dict) else None

    def write(self, name: str, value: dict[str, Any]) -> None:
        try:
            self.storage.write_control(name, value)
        except NotImplementedError:
            self.file = True
            path = self.path(name)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(value), encoding="utf-8")
            os.replace(tmp, path)


class KillSwitch:
    """Reads and writes the kill switch through ``storage`` (or the fallback file)."""

    def __init__(self, storage: Any, data_dir: str | Path | None = None) -> None:
        self.storage = storage
        self.records = ControlRecords(storage, data_dir)
        self.fallback = self.records.path(CONTROL_NAME)
        self.state = KillState()
        self._read_failed = False

    @property
    def where(self) -> str:
        if self.records.file:
            return f"file {self.fallback}"
        return self.records.where

    @property
    def last_read_failed(self) -> bool:
        """The last :meth:`read` could not reach the store (its answer was the state read before)."""
        return self._read_failed

    def read(self) -> KillState:
        """The stored state (the last one read when the store cannot answer: it never un-kills by itself)."""
        try:
            value = self.records.read(CONTROL_NAME)
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
        value["flattened"] = list(state.flattened)
        self.records.write(CONTROL_NAME, value)
        self.state = state
        return state

    def trip(self, reason: str, *, flatten: bool = False, by: str | None = None,
             flattened: tuple[str, ...] = ()) -> KillState:
        """Trip the switch; ``flattened``: as :meth:`resume` (``arbframe kill --flattened``: cleared, still killed)."""
        return self.write(KillState(True, reason, flatten, utcnow().isoformat(), by or who(), tuple(flattened)))

    def resume(self, *, by: str | None = None, flattened: tuple[str, ...] = ()) -> KillState:
        """Release the switch; ``flattened``: the residuals (their keys) the operator flattened by hand."""
        return self.write(KillState(False, "", False, utcnow().isoformat(), by or who(), tuple(flattened)))
