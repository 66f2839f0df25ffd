"""A storage or cache driver that raises inside a tick is isolated like a failing hook.

The failing storage is a real plugin: a throwaway distribution whose ``arbframe.storage`` entry point ``flaky`` is
found by ``arbframe run`` on ``PYTHONPATH``. Its ``flush`` raises on the first two ticks and ``log_spread`` raises
for three records; the run still completes every tick with exit status 0, says which plugin raised, counts it in
``arbframe_plugin_errors_total`` and ``arbframe_storage_write_errors_total``, and in the end every record is written
once, in order.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from arbframe.kernel.instruments import PluginMetrics
from arbframe.service.isolation import IsolatedCache, IsolatedStorage

FLAKY = '''
import json

from arbframe import Storage


class FlakyStorage(Storage):
    """flush raises on its first two calls; log_spread raises on calls 3 to 5; flush appends to a JSON-lines file."""

    def __init__(self, section, context):
        self.path = section["path"]
        self.pending = []
        self.flushes = 0
        self.spread_calls = 0

    def _log(self, kind, record):
        self.pending.append({"kind": kind, "id": getattr(record, "id", None)})

    def log_spread(self, spread):
        self.spread_calls += 1
        if 3 <= self.spread_calls <= 5:
            raise ValueError("spread table locked")
        self._log("spread", spread)

    def log_position_open(self, position): self._log("open", position)
    def log_position_close(self, position): self._log("close", position)
    def log_order(self, order): self._log("order", order)
    def log_trade(self, trade): self._log("trade", trade)
    def log_fx_rate(self, fx): self._log("fx", fx)
    def log_error(self, error): self._log("error", error)

    def load_positions(self):
        return []

    def flush(self):
        self.flushes += 1
        if self.flushes <= 2:
            raise RuntimeError("disk on fire")
        with open(self.path, "a") as f:
            for row in self.pending:
                f.write(json.dumps(row) + "\\n")
        self.pending.clear()

    def close(self):
        pass

    def describe(self):
        return "FlakyStorage"
'''

IN_PROCESS = """
import asyncio, json, sys
from arbframe.commands.options import setup_logging
from arbframe.service.runner import RunOptions, kernel_for_run, run_loop
setup_logging()
opts = RunOptions(mode="paper", max_iterations=4, interval=0.01)
kernel = kernel_for_run(opts, [sys.argv[1]])
status = asyncio.run(run_loop(kernel, opts))
value = kernel.registry.get_sample_value
print(json.dumps({
    "status": status,
    "flush": value("arbframe_plugin_errors_total", {"plugin": "storage:flaky", "hook": "flush"}),
    "log_spread": value("arbframe_plugin_errors_total", {"plugin": "storage:flaky", "hook": "log_spread"}),
    "write_errors": value("arbframe_storage_write_errors_total", {"backend": "storage:flaky"}),
}))
"""


@pytest.fixture
def flaky(fake_dist: Callable[..., Path], tmp_path: Path) -> tuple[Path, Path, Path]:
    site = fake_dist("arbframe-storage-flaky", {"arbframe.storage": {"flaky": "flaky_storage:FlakyStorage"}},
                     {"flaky_storage": FLAKY})
    out = tmp_path / "written.jsonl"
    cfg = tmp_path / "flaky.yml"
    cfg.write_text(json.dumps({"storage": {"backend": "flaky", "flaky": {"path": str(out)}},
                               "arbitrage": {"symbols": ["BTC", "ETH"]}}))
    return site, cfg, out


def _written(out: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_run_goes_on_when_the_storage_raises(flaky, run_cli) -> None:
    site, cfg, out = flaky
    result = run_cli("run", "--max-iterations", "4", "--interval", "0.01", "--config", str(cfg), pythonpath=site)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "completed 4 iterations" in result.stderr
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    # one line per new error: the second failing flush repeats the first, the kept spreads do not repeat either
    assert any(re.search(r"plugin storage:flaky raised in flush: RuntimeError: disk on fire \(isolated; the tick "
                         r"goes on; the storage keeps its buffer", line) for line in errors), result.stderr
    assert any("plugin storage:flaky raised in log_spread: ValueError: spread table locked" in line
               and "kept for the next flush" in line for line in errors), result.stderr
    assert len(errors) == 2, errors
    rows = _written(out)
    spreads = [r["id"] for r in rows if r["kind"] == "spread"]
    # 4 ticks x 2 symbols x 2 directions, none lost and none twice, although three raised on the way in
    assert len(spreads) == 16 and len(set(spreads)) == 16
    assert [r["kind"] for r in rows].count("fx") >= 1


def test_the_failures_are_counted(flaky, tmp_path: Path) -> None:
    site, cfg, _ = flaky
    import os
    import sys

    result = subprocess.run([sys.executable, "-c", IN_PROCESS, str(cfg)], capture_output=True, text=True,
                            cwd=tmp_path, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(site), "XDG_CACHE_HOME": str(tmp_path / "x")})
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout.strip().splitlines()[-1])
    assert counts["status"] == 0
    assert counts["flush"] == 2.0
    # the 3rd spread raised; the 4th and 5th queue behind it (order kept) and are offered at the next flush,
    # where the 4th and 5th raise in turn, one each
    assert counts["log_spread"] == 3.0
    assert counts["write_errors"] == 5.0


class _BrokenCache:
    name = "broken"
    available = True

    def write_tick(self, **kwargs: object) -> bool:
        raise ConnectionResetError("cache went away")

    def get_fx_rate(self) -> None:
        raise TimeoutError("slow")

    def describe(self) -> str:
        return "BrokenCache"


def test_a_cache_that_raises_answers_not_done(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="arbframe.plugins")
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    cache = IsolatedCache(_BrokenCache(), "cache:broken", registry)  # type: ignore[arg-type]
    assert cache.write_tick(fx=None) is False
    assert cache.write_tick(fx=None) is False
    assert cache.get_fx_rate() is None
    assert cache.available is True and cache.describe() == "BrokenCache"
    errors = PluginMetrics.get(registry).errors
    assert errors.labels(plugin="cache:broken", hook="write_tick")._value.get() == 2
    assert [r.levelname for r in caplog.records if "write_tick" in r.getMessage()] == ["ERROR", "DEBUG"]


def test_kept_records_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from prometheus_client import CollectorRegistry

    import arbframe.service.isolation as isolation

    class Refusing:
        name = "refusing"

        def log_error(self, record: object) -> None:
            raise OSError("read-only file system")

        def flush(self) -> None:
            pass

    monkeypatch.setattr(isolation, "MAX_KEPT", 3)
    storage = IsolatedStorage(Refusing(), "storage:refusing", CollectorRegistry())  # type: ignore[arg-type]
    for i in range(5):
        storage.log_error(i)
    storage.flush()
    assert [record for _, record in storage.kept] == [2, 3, 4]
