"""optuna-dashboard reads the studies `arbframe optimize` writes, from the journal file and from PostgreSQL: the test
starts it on a free port of 127.0.0.1 and reads its API (the plugin's test extra installs it)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow


def _dashboard_binary() -> str:
    pytest.importorskip("optuna_dashboard", reason="optuna-dashboard is not installed (pip install "
                                                   "'arbframe-optimize[test]' installs it)")
    found = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent)) or shutil.which(
        "optuna-dashboard")
    if found is None:
        pytest.skip("optuna-dashboard is importable but its command is not on PATH")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as answer:  # 127.0.0.1 only
        return json.loads(answer.read().decode())


def _read_studies(storage: str, tmp_path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Start optuna-dashboard on ``storage``; its study list and the first study's detail."""
    port = _free_port()
    log = (tmp_path / f"dashboard-{port}.log").open("w")
    process = subprocess.Popen([_dashboard_binary(), storage, "--host", "127.0.0.1", "--port", str(port)],
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                studies = _get(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log.close()
                    pytest.fail("optuna-dashboard did not answer:\n"
                                + (tmp_path / f"dashboard-{port}.log").read_text()[-2000:])
                time.sleep(0.2)
        detail = _get(f"http://127.0.0.1:{port}/api/studies/{studies[0]['study_id']}")
        return studies, detail
    finally:
        process.terminate()  # the process this test started
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _study(kit, spikes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], *storage: str) -> Path:
    out = tmp_path / "out"
    assert kit.main(["optimize", "-c", str(kit.study_config(tmp_path, folds=0)), "--data", str(spikes), "--trials", "4",
                 "--study", "dash", "--out", str(out), "--no-report", *storage]) == 0
    capsys.readouterr()
    return out


def test_dashboard_reads_the_journal_file(kit, spikes: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = _study(kit, spikes, tmp_path, capsys)
    studies, detail = _read_studies(str(out / "study.journal"), tmp_path)
    assert [s["study_name"] for s in studies] == ["dash"]
    assert len(detail["trials"]) == 4 and all(t["state"] == "Complete" for t in detail["trials"])
    assert {p["name"] for t in detail["trials"] for p in t["params"]} == {"arbitrage.entry_threshold"}


@pytest.mark.postgres
def test_dashboard_reads_the_postgres_study(kit, spikes: Path, pg_url: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from arbframe_optimize.study import sqlalchemy_url

    _study(kit, spikes, tmp_path, capsys, "--storage", pg_url)
    studies, detail = _read_studies(sqlalchemy_url(pg_url), tmp_path)
    assert [s["study_name"] for s in studies] == ["dash"]
    assert len(detail["trials"]) == 4
    # what the search records per trial is there too
    attrs = {a["key"] for t in detail["trials"] for a in t["user_attrs"]}
    assert {"result", "worker"} <= attrs
