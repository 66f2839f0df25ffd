"""Several processes, one study: exactly N results whoever runs them; a worker killed with SIGKILL in the middle of
a trial leaves that trial failed and queued again with the same parameters, nothing counted twice. The processes
are `arbframe optimize` commands started here; only their own PIDs are signalled."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

TIMEOUT = 150


def _storage(url: str) -> Any:
    import optuna

    if "://" in url:
        from arbframe_optimize.study import sqlalchemy_url

        return optuna.storages.RDBStorage(sqlalchemy_url(url))
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(url))


def _trials(url: str, study: str) -> list[Any]:
    import optuna

    return optuna.load_study(study_name=study, storage=_storage(url)).trials


def _counted(trials: list[Any]) -> int:
    from optuna.trial import TrialState

    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) or
               (t.state == TrialState.FAIL and "error" in t.user_attrs) for t in trials)


def _pid(trial: Any) -> int:
    return int(str(trial.user_attrs["worker"]).split(":")[1])


@pytest.fixture(scope="module")
def long_recording(tmp_path_factory: pytest.TempPathFactory, kit) -> Path:
    """About 4,000 snapshots: a trial over all of them lasts long enough to be caught running."""
    return kit.write_recording(tmp_path_factory.mktemp("long") / "long.jsonl", kit.premium_path(blocks=16))


def _start(kit, tmp_path: Path, config: Path, rec: Path, storage: str, study: str, trials: int, out: str,
           *extra: str) -> subprocess.Popen[str]:
    cmd = kit.arbframe_cmd("optimize", "-c", str(config), "--data", str(rec), "--trials", str(trials), "--storage",
                           storage, "--study", study, "--out", str(tmp_path / out), "-q", *extra)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=kit.env(tmp_path),
                            cwd=tmp_path)


def _finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()  # our own child
        out, err = process.communicate()
        pytest.fail(f"arbframe optimize did not finish in {TIMEOUT}s:\n{err[-3000:]}")
    return process.returncode, out, err


@pytest.mark.postgres
def test_two_processes_share_one_postgres_study_and_complete_exactly_n(kit, long_recording: Path, pg_url: str,
                                                                       tmp_path: Path) -> None:
    n = 10
    config = kit.study_config(tmp_path, folds=0, heartbeat_seconds=1, grace_seconds=5)
    first = _start(kit, tmp_path, config, long_recording, pg_url, "shared", n, "a")
    second = _start(kit, tmp_path, config, long_recording, pg_url, "shared", n, "b")
    results = [_finish(first), _finish(second)]
    for status, _, err in results:
        assert status == 0, err
    trials = _trials(pg_url, "shared")
    from optuna.trial import TrialState

    assert _counted(trials) == n
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == n
    extra = [t for t in trials if t.state != TrialState.COMPLETE]
    assert all(t.state == TrialState.FAIL and "skipped" in t.user_attrs for t in extra), extra
    assert {_pid(t) for t in complete} == {first.pid, second.pid}, "both processes ran trials"
    # both reports agree on the study (each process writes its own)
    best = [(tmp_path / d / "best.yml").read_text() for d in ("a", "b")]
    assert best[0] == best[1]
    assert "postgresql://" in results[0][1] and pg_url.split("@")[-1] in results[0][1]


def _wait_for_running(url: str, study: str, pid: int, deadline: float) -> Any:
    """The trial process ``pid`` is running, once its parameters are drawn (SIGKILL then lands in its replay)."""
    from optuna.trial import TrialState

    while time.monotonic() < deadline:
        try:
            trials = _trials(url, study)
        except (KeyError, ValueError, RuntimeError):  # the study is not created yet
            trials = []
        for t in trials:
            if t.state == TrialState.RUNNING and "worker" in t.user_attrs and _pid(t) == pid and t.params:
                return t
        time.sleep(0.05)
    pytest.fail(f"no running trial of process {pid} within the time limit")


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres), "journal"])
def test_a_worker_killed_mid_trial_is_retried(backend: str, kit, long_recording: Path, tmp_path: Path,
                                              request: pytest.FixtureRequest) -> None:
    from optuna.trial import TrialState

    url = request.getfixturevalue("pg_url") if backend == "postgres" else str(tmp_path / "shared.journal")
    n = 3
    config = kit.study_config(tmp_path, folds=0, heartbeat_seconds=1, grace_seconds=2)
    victim = _start(kit, tmp_path, config, long_recording, url, "killed", n, "victim")
    try:
        running = _wait_for_running(url, "killed", victim.pid, time.monotonic() + TIMEOUT)
        os.kill(victim.pid, signal.SIGKILL)  # the process this test started
    finally:
        victim.wait(timeout=TIMEOUT)
    assert victim.returncode == -signal.SIGKILL
    (still,) = [t for t in _trials(url, "killed") if t.number == running.number]
    assert still.state == TrialState.RUNNING, "the kill must land inside the trial"
    survivor = _start(kit, tmp_path, config, long_recording, url, "killed", n, "survivor")
    status, out, err = _finish(survivor)
    assert status == 0, err
    trials = _trials(url, "killed")
    (killed,) = [t for t in trials if t.number == running.number]
    assert killed.state == TrialState.FAIL and "error" not in killed.user_attrs
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == running.number]
    assert len(retries) == 1
    (retry,) = retries
    assert retry.state == TrialState.COMPLETE and retry.params == killed.params
    assert _pid(retry) == survivor.pid
    assert _counted(trials) == n and sum(t.state == TrialState.COMPLETE for t in trials) == n
    assert "1 retried" in out


def test_jobs_share_the_work_and_the_count(kit, long_recording: Path, tmp_path: Path) -> None:
    """--jobs 2: two processes on this machine, each with the recording read once, exactly N trials together."""
    config = kit.study_config(tmp_path, folds=0)
    process = _start(kit, tmp_path, config, long_recording, str(tmp_path / "jobs.journal"), "jobs", 10, "out",
                     "--jobs", "2")
    status, _, err = _finish(process)
    assert status == 0, err
    trials = _trials(str(tmp_path / "jobs.journal"), "jobs")
    from optuna.trial import TrialState

    assert _counted(trials) == 10 == sum(t.state == TrialState.COMPLETE for t in trials)
    pids = {_pid(t) for t in trials if t.state == TrialState.COMPLETE}
    assert len(pids) == 2 and process.pid in pids
