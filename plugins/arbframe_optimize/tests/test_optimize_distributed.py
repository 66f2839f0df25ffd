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


def _trials(url: str, study: str, storage: Any = None) -> list[Any]:
    import optuna

    return optuna.load_study(study_name=study, storage=storage or _storage(url)).trials


def _counted(trials: list[Any]) -> int:
    from optuna.trial import TrialState

    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) or
               (t.state == TrialState.FAIL and "error" in t.user_attrs) for t in trials)


def _pid(trial: Any) -> int:
    return int(str(trial.user_attrs["worker"]).split(":")[1])


@pytest.fixture(scope="module")
def medium_recording(tmp_path_factory: pytest.TempPathFactory, kit) -> Path:
    """About 1,300 snapshots: trials short enough to run many, long enough that every process gets some."""
    return kit.write_recording(tmp_path_factory.mktemp("medium") / "medium.jsonl", kit.premium_path(blocks=8))


@pytest.fixture(scope="module")
def long_recording(tmp_path_factory: pytest.TempPathFactory, kit) -> Path:
    """About 3,800 snapshots: a trial over all of them lasts long enough to be caught running."""
    return kit.write_recording(tmp_path_factory.mktemp("long") / "long.jsonl", kit.premium_path(blocks=24))


def _start(kit, tmp_path: Path, config: Path, rec: Path, storage: str, study: str, trials: int, out: str,
           *extra: str) -> subprocess.Popen[str]:
    """`arbframe optimize` as a worker (--no-report: the report is tested in test_optimize_search.py)."""
    cmd = kit.arbframe_cmd("optimize", "-c", str(config), "--data", str(rec), "--trials", str(trials), "--storage",
                           storage, "--study", study, "--out", str(tmp_path / out), "--no-report", *extra)
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
def test_two_processes_share_one_postgres_study_and_complete_exactly_n(kit, medium_recording: Path, pg_url: str,
                                                                       pg, tmp_path: Path) -> None:
    n = 10
    database = pg_url.rsplit("/", 1)[1]
    pg_url = pg.create_role(f"{database}_user", "s3cret-opt", dbname=database)  # a password to keep out of logs
    config = kit.study_config(tmp_path, folds=0, heartbeat_seconds=1, grace_seconds=5)
    first = _start(kit, tmp_path, config, medium_recording, pg_url, "shared", n, "a")
    second = _start(kit, tmp_path, config, medium_recording, pg_url, "shared", n, "b", "-q")
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
    for _, out, _ in results:
        assert f"study 'shared' complete: {n} trial(s) per study" in out
    # the storage is named in the log with its password masked
    assert "study 'shared' in postgresql://" in results[0][2] and ":***@" in results[0][2]
    assert all("s3cret-opt" not in out + err for _, out, err in results)


def _wait_for_running(url: str, study: str, pid: int, deadline: float) -> Any:
    """The trial process ``pid`` is running, once its parameters are drawn (SIGKILL then lands in its replay)."""
    from optuna.trial import TrialState

    storage = _storage(url)
    while time.monotonic() < deadline:
        try:
            trials = _trials(url, study, storage)
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
    n = 2
    config = kit.study_config(tmp_path, folds=0, heartbeat_seconds=1, grace_seconds=2)
    victim = _start(kit, tmp_path, config, long_recording, url, "killed", n, "victim", "-q")
    try:
        running = _wait_for_running(url, "killed", victim.pid, time.monotonic() + TIMEOUT)
        os.kill(victim.pid, signal.SIGKILL)  # the process this test started
    finally:
        victim.wait(timeout=TIMEOUT)
    assert victim.returncode == -signal.SIGKILL
    (still,) = [t for t in _trials(url, "killed") if t.number == running.number]
    assert still.state == TrialState.RUNNING, "the kill must land inside the trial"
    survivor = _start(kit, tmp_path, config, long_recording, url, "killed", n, "survivor", "-q")
    status, _, err = _finish(survivor)
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
    assert f"trial {running.number} of killed: its worker" in err or backend == "postgres"  # the journal's check


@pytest.mark.parametrize("backend", ["journal", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_jobs_share_the_work_and_the_count(backend: str, kit, medium_recording: Path, tmp_path: Path,
                                           request: pytest.FixtureRequest) -> None:
    """--jobs 2: two processes on this machine, the recording read once, exactly N trials together. The second
    process is forked after the first opened the storage: with a database, each must use its own connections."""
    from optuna.trial import TrialState

    url = request.getfixturevalue("pg_url") if backend == "postgres" else str(tmp_path / "jobs.journal")
    config = kit.study_config(tmp_path, folds=0)
    n = 16  # enough for the second process to join after its start-up on a busy machine
    process = _start(kit, tmp_path, config, medium_recording, url, "jobs", n, "out", "--jobs", "2", "-q")
    status, _, err = _finish(process)
    assert status == 0, err
    trials = _trials(url, "jobs")
    assert _counted(trials) == n == sum(t.state == TrialState.COMPLETE for t in trials)
    pids = {_pid(t) for t in trials if t.state == TrialState.COMPLETE}
    assert len(pids) == 2 and process.pid in pids
    # the forked worker's trials carry its CPU time; nothing it did shows as a warning or error
    assert all(t.user_attrs["result"]["worker_cpu_seconds"] > 0 for t in trials)
    assert "WARNING" not in err and "ERROR" not in err and "Traceback" not in err, err


def test_spawned_workers_read_the_recordings_themselves(kit, medium_recording: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Where workers cannot be forked (macOS, Windows) they are spawned and read the recordings themselves: the
    same N trials, shared. In-process (the command's own process is one of the two)."""
    import gc

    from arbframe_optimize import command
    from optuna.trial import TrialState

    monkeypatch.setattr(command, "start_method", lambda: "spawn")
    monkeypatch.chdir(tmp_path)
    config = kit.study_config(tmp_path, folds=0)
    url = str(tmp_path / "spawned.journal")
    frozen = gc.get_freeze_count()
    assert kit.main(["optimize", "-c", str(config), "--data", str(medium_recording), "--trials", "12", "--jobs",
                     "2", "--storage", url, "--study", "spawned", "--out", str(tmp_path / "out"), "--no-report",
                     "-q"]) == 0
    trials = _trials(url, "spawned")
    assert _counted(trials) == 12 == sum(t.state == TrialState.COMPLETE for t in trials)
    assert len({_pid(t) for t in trials}) == 2
    assert gc.get_freeze_count() == frozen, "the recordings read for the search are left to the collector again"


def test_a_worker_with_nothing_to_start_wakes_when_another_ends_a_trial(kit, medium_recording: Path,
                                                                        tmp_path: Path) -> None:
    """At the end one process waits for the other's last trial: it goes on when that trial ends, not a poll
    later (poll_seconds 20 here; a run of a few short trials ends in a fraction of that)."""
    config = kit.study_config(tmp_path, folds=0, poll_seconds=20)
    started = time.monotonic()
    process = _start(kit, tmp_path, config, medium_recording, str(tmp_path / "wake.journal"), "wake", 6, "out",
                     "--jobs", "2", "-q")
    status, _, err = _finish(process)
    elapsed = time.monotonic() - started
    assert status == 0, err
    assert _counted(_trials(str(tmp_path / "wake.journal"), "wake")) == 6
    assert elapsed < 15, f"the run took {elapsed:.1f}s: a waiting worker slept its poll interval"


def test_wake_is_a_pipe_no_lock() -> None:
    from arbframe_optimize.study import Wake

    wake = Wake()
    try:
        assert wake.wait(0.01) is False
        wake.set()
        wake.set()
        assert wake.wait(0.01) is True
        assert wake.wait(0.01) is False, "the pending wake-ups were all taken"
        for _ in range(70_000):  # more than a pipe holds: set() never blocks nor raises
            wake.set()
        assert wake.wait(0) is True and wake.wait(0) is False
    finally:
        wake.close()
