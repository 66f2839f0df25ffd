"""The migration's fast path must work on Python 3.10 (``requires-python >= 3.10``): possessive quantifiers and
atomic groups are new in 3.11's ``re``. Runs the check under a real 3.10 interpreter when one is installed."""

from __future__ import annotations

import glob
import os
import shutil
import site
import subprocess
from pathlib import Path

import pytest

CHECK = r'''
from datetime import datetime, timezone
from decimal import Decimal

from arbframe import Side, Trade, to_row
from arbframe_storage_pg import tables
from arbframe_storage_pg.migrate import _records, _split_lines

assert not tables.POSSESSIVE
t = Trade(id="t1", ts=datetime(2026, 1, 1, tzinfo=timezone.utc), order_id="o", exchange="binance", symbol="BTC",
          side=Side.BUY, price=Decimal("97000.5"), qty=Decimal("0.01"), fee=Decimal("0"), fee_currency="BTC")
line = ",".join(to_row(t))
for name in tables.SPECS:
    tables.fast_csv_regex(name)
rx = tables.fast_csv_regex("trades")
assert rx.fullmatch(line), line
assert not rx.fullmatch(line.replace("97000.5", "1e400"))
assert not rx.fullmatch(line.replace("97000.5", "9" * 5000))
stray = line.replace(",BTC,", ',"BTC,', 1)
problems = [p for _, _, p in _records(_split_lines(f"{line}\n{stray}\n{line}\n"), 2, 12)]
assert problems[0] == problems[2] == "" and problems[1].startswith("unbalanced quote"), problems
print("ok")
'''


def _python310() -> str | None:
    pyenv = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.10*/bin/python3.10")))
    candidates = [shutil.which("python3.10"), *pyenv]
    for exe in candidates:
        if exe and subprocess.run([exe, "-c", "import sys; assert sys.version_info[:2] == (3, 10)"],
                                  capture_output=True, timeout=30).returncode == 0:
            return exe
    return None


def test_fast_path_and_record_splitting_work_on_python_310() -> None:
    exe = _python310()
    if exe is None:
        pytest.skip("no working Python 3.10 interpreter on this machine")
    root = Path(__file__).resolve().parents[3]
    # the kernel and this plugin from the checkout; pure-Python dependencies (pluggy) from this venv
    path = [str(root), str(root / "plugins" / "arbframe_storage_pg" / "src"), *site.getsitepackages()]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    done = subprocess.run([exe, "-c", CHECK], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
