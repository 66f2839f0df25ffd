"""Fixtures of the optimize plugin's tests: hand-built recordings whose best threshold is known, the command
in-process and as a subprocess, and the throwaway PostgreSQL server of ``arbframe.testing``."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from arbframe.testing.postgres_server import PostgresServer, postgres_server_fixture

postgres_server = postgres_server_fixture(scope="session")

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
FX = 1400
FOREIGN_PRICE = 100_000  # USDT per BTC
ROUND_TRIP = 0.003  # 2 x (0.0005 + 0.001): the net premium is the premium less this
#: kimchi premiums at which the spikes of one block peak: one low, three middle, one high
SPIKES = (0.010, 0.020, 0.020, 0.020, 0.030)
BASELINE = -0.001
STEP = 0.001

HEADER = {
    "arbframe_recording": 1, "domestic": "upbit", "foreign": "binance", "symbols": ["BTC"],
    "quote_currencies": {"upbit": "KRW", "binance": "USDT"}, "fees": {"upbit": "0.0005", "binance": "0.001"},
    "rules": {"upbit": {"BTC": [None, "0.00000001", "0.00000001", "5000"]},
              "binance": {"BTC": [None, "0.00001", "0.00001", "5"]}},
    "simulated": True,
}

#: the study config every test starts from: kimchi only, no cooldown, exit once the premium is back below 0
BASE_CONFIG: dict[str, Any] = {
    "arbitrage": {"symbols": ["BTC"], "directions": ["kimchi"], "cooldown_seconds": 0, "exit_threshold": 0.0,
                  "entry_threshold": 0.01, "stop_loss_premium": None, "max_daily_loss_krw": None,
                  "order_notional_krw": 1_000_000},
    "optimize": {"objective": "pnl", "min_trades": 1, "startup_trials": 8, "poll_seconds": 0.2,
                 "space": {"arbitrage.entry_threshold": {"low": 0.001, "high": 0.03}}},
}


def premium_path(spikes: Sequence[float] = SPIKES, blocks: int = 4) -> list[float]:
    """Per snapshot (one a second): baseline, then each spike ramps up by STEP to its peak and drops back."""
    path: list[float] = []
    for _ in range(blocks):
        for peak in spikes:
            path += [BASELINE] * 8
            p = 0.0
            while p < peak - 1e-12:
                p = round(p + STEP, 6)
                path.append(p)
            path += [peak / 2, BASELINE]
        path += [BASELINE] * 8
    return path


def snapshot_row(i: int, premium: float, start: datetime = START) -> dict[str, Any]:
    t = (start + timedelta(seconds=i)).isoformat()
    bid = round(FOREIGN_PRICE * FX * (1 + premium))
    return {
        "t": t, "fx": [str(FX), "test", t, "fx-1"],
        "b": {"upbit": {"BTC": [f"{bid} 50", f"{bid + 500} 50"]},
              "binance": {"BTC": [f"{FOREIGN_PRICE} 50", f"{FOREIGN_PRICE}.01 50"]}},
    }


def write_recording(path: Path, premiums: Sequence[float], start: datetime = START,
                    rows: Callable[[int, dict[str, Any]], dict[str, Any]] | None = None) -> Path:
    """A recording of ``premiums`` (``rows`` may rewrite row i, e.g. to break it)."""
    with path.open("w", encoding="utf-8") as fh:
        fh.write(json.dumps(HEADER) + "\n")
        for i, p in enumerate(premiums):
            row = snapshot_row(i, p, start)
            if rows is not None:
                row = rows(i, row)
            fh.write(json.dumps(row) + "\n")
    return path


@pytest.fixture(scope="session")
def spikes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four identical blocks of spikes: whatever the window, an entry threshold just below the middle spikes'
    net peak (2.0 % - 0.3 % = 1.7 %) earns most (see test_search_finds_the_known_optimum)."""
    return write_recording(tmp_path_factory.mktemp("rec") / "spikes.jsonl", premium_path())


def study_config(tmp_path: Path, **optimize: Any) -> Path:
    """A config file: BASE_CONFIG with ``optimize`` keys replaced."""
    config = json.loads(json.dumps(BASE_CONFIG))
    config["optimize"].update(optimize)
    path = tmp_path / f"study-{next(_names)}.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


_names = itertools.count(1)



def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg"), "PYTHONUNBUFFERED": "1"}


def arbframe_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "arbframe", *args]


@pytest.fixture
def run_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``python -m arbframe ...`` in a subprocess (cwd: the test's directory)."""

    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(arbframe_cmd(*args), capture_output=True, text=True, env=env(tmp_path),
                              timeout=timeout, cwd=tmp_path)

    return run


@pytest.fixture
def pg(postgres_server: PostgresServer) -> Iterator[PostgresServer]:
    postgres_server.start()
    yield postgres_server


_databases = itertools.count(1)


@pytest.fixture
def pg_url(pg: PostgresServer) -> str:
    """A fresh database on the throwaway server (its URL)."""
    return pg.create_database(f"opt_{os.getpid()}_{next(_databases)}")


def arbframe_main(argv: list[str]) -> int:
    """The `arbframe` command in-process: its console-script entry point (the command line is the public
    interface; in-process saves an interpreter start per call). Returns the exit status."""
    from importlib.metadata import entry_points

    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "arbframe"]
    try:
        return int(script.load()(argv))
    except SystemExit as exc:  # argparse's usage errors
        raise exc


class Kit:
    """The helpers above for test modules (conftest is not importable under --import-mode=importlib)."""

    START, FX, FOREIGN_PRICE, ROUND_TRIP, SPIKES, BASELINE, STEP = START, FX, FOREIGN_PRICE, ROUND_TRIP, SPIKES, \
        BASELINE, STEP
    premium_path = staticmethod(premium_path)
    snapshot_row = staticmethod(snapshot_row)
    write_recording = staticmethod(write_recording)
    study_config = staticmethod(study_config)
    arbframe_cmd = staticmethod(arbframe_cmd)
    env = staticmethod(env)
    main = staticmethod(arbframe_main)


@pytest.fixture(scope="session")
def kit() -> type[Kit]:
    return Kit
