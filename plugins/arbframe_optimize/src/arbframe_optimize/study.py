"""Studies, storage and workers: exactly N trials per study, however many processes on however many hosts.

**Storage.** Without ``--storage`` a study lives in Optuna's journal file (``<out>/study.journal``); with
``--storage postgresql://...`` in Optuna's RDB storage, where every running trial records a heartbeat and a trial
whose heartbeat stops (its worker was killed) is marked failed and queued again with the same parameters
(``RetryHeartbeatStaleTrialCallback``). A worker also fails and queues the running trials of dead processes on
its own host at once (the journal file has no heartbeat).

**Exactly N.** A trial *holds a slot* while it is waiting, running or finished (complete, pruned, or failed by
its replay: a bad recording counts as a result). A failed trial whose worker died holds none: its retry does.
A worker starts a trial only while fewer than N trials hold a slot (or one is queued for a retry), and a trial
that finds N trials with lower numbers holding slots ends at once as failed-and-skipped (two workers that both
saw the last free slot). So at most N trials ever count, and a worker that finds no free slot waits until the
running ones finish or are found dead, so at least N do.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import math
import os
import select
import socket
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from arbframe import (
    ArbframeError,
    ConfigError,
    RecordingReader,
    check_config,
    config_schema,
    load_config,
    mask_url,
    replay_recording,
)
from arbframe_optimize.folds import Fold
from arbframe_optimize.objective import metrics, score, trial_constraints, trial_feasible, violations
from arbframe_optimize.space import Param, apply, suggest

log = logging.getLogger("arbframe.optimize")

#: the study user attribute that says what a study searches (a process joining with other settings is refused)
IDENTITY_ATTR = "arbframe"


class TrialFailed(Exception):
    """A trial's replay failed (bad recording, ...): the trial is failed with the reason; the study goes on."""


class OverBudget(Exception):
    """The study had its N trials when this one started (two workers took the last free slot at once)."""


class StorageError(ArbframeError):
    exit_status = 1


@dataclass
class Plan:
    """Everything a worker needs to join the search (picklable: ``--jobs`` sends it to each process)."""

    configs: list[str]
    data: list[str]
    storage: str  # a database URL or the journal file's path
    study: str
    trials: int
    folds: list[Fold]
    params: list[Param]
    settings: dict[str, Any]
    shared: bool = False  # a database another host may join: samplers draw from per-process seeds
    identity: dict[str, Any] = field(default_factory=dict)

    @property
    def objective(self) -> str:
        return str(self.settings["objective"])

    @property
    def database(self) -> bool:
        return "://" in self.storage

    def shown_storage(self) -> str:
        return mask_url(self.storage) if self.database else self.storage


# ------------------------------------------------------------------------------------------------ optuna glue
def quiet_optuna() -> Any:
    """Import Optuna with its own logging and experimental-feature warnings off (we report trials ourselves)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")
    return optuna


def retry_callback(max_retries: int) -> Any:
    optuna = quiet_optuna()
    cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or \
        optuna.storages.RetryFailedTrialCallback
    return cls(max_retry=max_retries)


def sqlalchemy_url(url: str) -> str:
    """``url`` as SQLAlchemy should open it: ``postgresql://`` (and ``postgres://``) through psycopg2 when it is
    installed (the driver this plugin's extra installs; SQLAlchemy 2.1 would pick psycopg 3 by default)."""
    scheme, sep, rest = url.partition("://")
    if scheme not in ("postgresql", "postgres"):
        return url
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return f"postgresql{sep}{rest}"
    return f"postgresql+psycopg2{sep}{rest}"


def open_storage(plan: Plan) -> Any:
    """The plan's Optuna storage: RDB (heartbeats, retries) for a URL, else the journal file."""
    optuna = quiet_optuna()
    settings = plan.settings
    if plan.database:
        import inspect

        callback = retry_callback(int(settings["max_retries"]))
        params = inspect.signature(optuna.storages.RDBStorage).parameters
        key = "heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in params else \
            "failed_trial_callback"
        attempt = 0
        while True:
            attempt += 1
            try:
                return optuna.storages.RDBStorage(
                    sqlalchemy_url(plan.storage), engine_kwargs={"pool_pre_ping": True},
                    heartbeat_interval=int(settings["heartbeat_seconds"]),
                    grace_period=int(settings["grace_seconds"]), **{key: callback},
                )
            except ImportError as exc:
                raise ConfigError(f"--storage {plan.shown_storage()}: {exc}; install the database extra "
                                  "(pip install 'arbframe-optimize[postgres]')") from None
            except Exception as exc:  # sqlalchemy's errors: server down, bad credentials, bad URL, ...
                reason = " ".join(str(exc).split())[:300]
                if attempt >= 5:
                    raise StorageError(f"cannot open the study storage {plan.shown_storage()}: "
                                       f"{mask_url(reason)}") from None
                # two processes creating Optuna's tables in a new database at once: one loses the race and
                # finds them there on the next try
                log.debug("opening %s failed (%s); trying again", plan.shown_storage(), mask_url(reason))
                time.sleep(0.3 * attempt)
    path = Path(plan.storage)
    path.parent.mkdir(parents=True, exist_ok=True)
    journal = optuna.storages.journal
    return optuna.storages.JournalStorage(journal.JournalFileBackend(str(path)))


def _constraints(trial: Any) -> list[float]:
    """TPE's constraints: a pruned trial (its config broke a rule) counts as infeasible."""
    values = trial_constraints(trial)
    return [float(v) for v in values] if values else [1.0]


def make_sampler(plan: Plan, worker: int) -> Any:
    optuna = quiet_optuna()
    seed = int(plan.settings["seed"]) + worker
    if plan.shared:  # every process on every host draws its own random start-up trials
        seed += os.getpid() * 1000
    return optuna.samplers.TPESampler(seed=seed % (2**32), n_startup_trials=int(plan.settings["startup_trials"]),
                                      constraints_func=_constraints)


def holds_slot(trial: Any) -> bool:
    """Does ``trial`` take one of the study's N places? (see the module docstring)"""
    from optuna.trial import TrialState

    state = trial.state
    if state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING):
        return True
    return state == TrialState.FAIL and "error" in trial.user_attrs


def finished(trial: Any) -> bool:
    """Is ``trial`` one of the N results: complete, pruned or failed by its replay?"""
    from optuna.trial import TrialState

    state = trial.state
    return state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        state == TrialState.FAIL and "error" in trial.user_attrs)


def one_line(text: Any) -> str:
    return " ".join(str(text).split())


def config_fingerprint(config: Mapping[str, Any]) -> str:
    """What of a config decides a replay's outcome (strategy, paper wallets and fees, FX age limit), hashed."""
    parts = {"arbitrage": config.get("arbitrage"), "paper": config.get("paper"),
             "fx.max_age_seconds": (config.get("fx") or {}).get("max_age_seconds"),
             "backtest.seed": (config.get("backtest") or {}).get("seed")}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def prepare_studies(plan: Plan, storage: Any) -> dict[int, Any]:
    """Create (or join) one study per fold; refuse one made with another space, objective, config or data."""
    optuna = quiet_optuna()
    studies = {}
    for fold in plan.folds:
        name = fold.study_name(plan.study)
        study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True)
        identity = json.loads(json.dumps({**plan.identity, "fold": fold.as_dict()}))
        found = study.user_attrs.get(IDENTITY_ATTR)
        if found is None:
            study.set_user_attr(IDENTITY_ATTR, identity)
            found = optuna.load_study(study_name=name, storage=storage).user_attrs.get(IDENTITY_ATTR)
        if found != identity:
            differ = sorted(k for k in set(found or {}) | set(identity) if (found or {}).get(k) != identity.get(k))
            raise ConfigError(
                f"--study {plan.study}: study {name!r} in {plan.shown_storage()} was started with another "
                f"{', '.join(differ)}; use another --study name (or the same settings and recordings)"
            )
        studies[fold.index] = study
    return studies


@contextlib.contextmanager
def quiet_engine() -> Iterator[None]:
    """The engine's per-position INFO lines off while trials replay (thousands of replays; --verbose keeps them)."""
    logger = logging.getLogger("arbframe.engine")
    if logger.getEffectiveLevel() <= logging.DEBUG:
        yield
        return
    old = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(old)


# ------------------------------------------------------------------------------------------------ recordings
def preload(paths: list[str]) -> RecordingReader:
    """The recordings read into memory once, for every trial of this process (and of ``--jobs`` workers forked
    from it, which share them).

    Reading runs with Python's cyclic garbage collector paused: the rows are some hundreds of thousands of
    dicts, lists and strings that only reference counting frees, and the collector would walk the growing heap
    over and over meanwhile (about half the read time). Afterwards :func:`gc.freeze` moves everything alive out
    of its sight: every replay allocates and so sets off full collections, which would otherwise traverse all the
    rows again each time (a few per cent of a trial), and a forked worker's collector does not touch (and so
    copy) the pages it shares with this process. :func:`thaw` undoes it when the command ends.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        reader = RecordingReader.preload(paths)
    finally:
        if enabled:
            gc.enable()
    gc.freeze()
    return reader


def thaw(frozen_before: int) -> None:
    """Undo :func:`preload`'s :func:`gc.freeze` (unless something had frozen objects before: ``frozen_before``,
    :func:`gc.get_freeze_count` then): a process that goes on after the command (a test) collects them again."""
    if frozen_before == 0:
        gc.unfreeze()


# --------------------------------------------------------------------------------------------------- progress
class Progress:
    """One line on stderr while the search runs: trials done / N, best so far, trials per minute, ETA."""

    def __init__(self, plan: Plan, stream: Any = None, min_interval: float = 3.0) -> None:
        self.plan = plan
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.min_interval = min_interval
        self.started = time.monotonic()
        self.first_done: int | None = None
        self.last_print = 0.0
        self.last_text = ""
        self.complete: dict[int, list[Any]] = {}  # fold -> its finished study's trials
        self.finished = False  # the final line is out: printed once

    #: a rate from less than this much of the run is noise (a trial pruned at once would read as 1,000s a minute)
    MIN_RATE_SECONDS = 2.0

    def start(self, studies: Mapping[int, Any]) -> None:
        """Count what is done already (a resumed study): the rate and ETA are of this run's trials."""
        self.started = time.monotonic()
        self.first_done = sum(min(sum(finished(t) for t in studies[f.index].get_trials(deepcopy=False)),
                                  self.plan.trials) for f in self.plan.folds)

    def update(self, studies: Mapping[int, Any], *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last_print < self.min_interval:
            return
        plan = self.plan
        per_fold = []
        for fold in plan.folds:
            if fold.index in self.complete:  # a finished study's results do not change: not read again
                per_fold.append((fold, self.complete[fold.index], plan.trials))
                continue
            trials = studies[fold.index].get_trials(deepcopy=False)
            done_here = sum(finished(t) for t in trials)
            if done_here >= plan.trials:
                self.complete[fold.index] = trials
            per_fold.append((fold, trials, done_here))
        done = sum(min(d, plan.trials) for _, _, d in per_fold)
        total = plan.trials * len(plan.folds)
        if self.first_done is None:
            self.first_done = done
        current = next(((f, ts, d) for f, ts, d in per_fold if d < plan.trials), per_fold[-1])
        fold, trials, fold_done = current
        best = _best_feasible(trials)
        best_text = "none feasible yet" if best is None else f"best {best.value:,.2f} (trial {best.number})"
        elapsed = now - self.started
        rate = (done - self.first_done) / elapsed * 60.0 if elapsed >= self.MIN_RATE_SECONDS else None
        if done >= total:
            eta = "done"
        elif rate:
            eta = f"ETA {_duration((total - done) / rate * 60.0)}"
        else:
            eta = "ETA unknown"
        where = "" if fold.count == 0 else f" ({fold.label}: {min(fold_done, plan.trials)}/{plan.trials})"
        rate_text = "rate unknown" if rate is None else f"{rate:.1f} trials/min"
        text = (f"[OPTIMIZE] {done}/{total} trials{where}, {best_text}, {rate_text}, {eta}")
        if final:
            if self.finished:
                return
            self.finished = True
            if text == self.last_text and not self.tty:  # that very line is out already
                return
        elif text == self.last_text:
            return
        self.last_text = text
        self.last_print = now
        if self.tty:
            self.stream.write("\r" + text.ljust(100) + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def _best_feasible(trials: list[Any]) -> Any:
    from optuna.trial import TrialState

    best = None
    for t in trials:
        if (t.state == TrialState.COMPLETE and trial_feasible(t)
                and (best is None or t.value > best.value)):
            best = t
    return best


# ----------------------------------------------------------------------------------------------------- worker
def _alive(pid: int) -> bool:
    """Is process ``pid`` running (a zombie is not)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class Wake:
    """A wake-up call between the forked ``--jobs`` processes of one command: a pipe that each writes a byte to
    when it ends a trial and that a waiting one selects on. Nothing is locked, so a process killed at any moment
    cannot leave the others blocked (a ``multiprocessing.Event``'s lock would stay held by a process killed inside
    it); a byte taken by another waiter only means this wait ends at its timeout."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)

    def set(self) -> None:
        with contextlib.suppress(OSError):  # BlockingIOError: the pipe is full, a wake-up is pending anyway
            os.write(self._write, b"!")

    def wait(self, timeout: float) -> bool:
        """Until a process sets it (True; the pending wake-ups are taken) or ``timeout`` seconds pass."""
        ready, _, _ = select.select([self._read], [], [], timeout)
        if not ready:
            return False
        with contextlib.suppress(OSError):
            while os.read(self._read, 4096):
                pass
        return True

    def close(self) -> None:
        for fd in (self._read, self._write):
            with contextlib.suppress(OSError):
                os.close(fd)


def run_queue_wait() -> float | None:
    """Seconds this process has waited for a CPU while it was ready to run (Linux: ``/proc/self/schedstat``; None
    elsewhere): on a shared machine, the part of a trial's wall time that other work took."""
    try:
        with open("/proc/self/schedstat", encoding="ascii") as fh:
            return int(fh.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


class Worker:
    """One process's share of the search: trials until every fold's study has its N."""

    def __init__(self, plan: Plan, index: int = 0, *, reader: RecordingReader | None = None, storage: Any = None,
                 progress: Progress | None = None, tick: Callable[[], None] | None = None,
                 wake: Any = None) -> None:
        self.plan = plan
        self.index = index
        self.progress = progress
        self.tick = tick  # called between trials (the coordinator checks its worker processes)
        #: the :class:`Wake` of the ``--jobs`` processes of this command (None: alone or spawned): set whenever
        #: one of them ends a trial, so one waiting for the last running trials goes on (or ends) at once
        self.wake = wake
        self.host = socket.gethostname()
        self.base = load_config(plan.configs)
        self.schema = config_schema()
        t0 = time.perf_counter()
        self.reader = reader if reader is not None else preload(plan.data)
        self.load_seconds = time.perf_counter() - t0
        self.storage = storage if storage is not None else open_storage(plan)
        self.retry = retry_callback(int(plan.settings["max_retries"]))
        optuna = quiet_optuna()
        self.studies = {
            fold.index: optuna.load_study(study_name=fold.study_name(plan.study), storage=self.storage,
                                          sampler=make_sampler(plan, index))
            for fold in plan.folds
        }
        self.trials_run = 0
        self.complete: set[int] = set()  # folds whose study has its N results
        #: fold -> free places the last trial's own count left after it, less one per trial running elsewhere
        #: and a margin: while positive, the next trial starts without reading the study first (one query less)
        self.credit: dict[int, int] = {}

    def mark(self, number: int) -> str:
        return f"{self.host}:{os.getpid()}:{number}"

    def run(self) -> None:
        plan = self.plan
        optuna = quiet_optuna()
        from optuna.trial import TrialState

        poll = float(plan.settings["poll_seconds"])
        if self.progress is not None:
            self.progress.start(self.studies)
        while True:
            if self.tick is not None:
                self.tick()
            waiting_on = []
            started = False
            for fold in plan.folds:
                if fold.index in self.complete:
                    continue
                study = self.studies[fold.index]
                if self.credit.pop(fold.index, 0) <= 0:  # no recent count says there is room: look
                    trials = study.get_trials(deepcopy=False)
                    if sum(finished(t) for t in trials) >= plan.trials:
                        self.complete.add(fold.index)  # results are final: no need to read this study again
                        continue
                    if sum(holds_slot(t) for t in trials) >= plan.trials and not any(
                            t.state == TrialState.WAITING for t in trials):
                        waiting_on.append(study)
                        continue
                waiting_on.append(study)
                try:
                    study.optimize(self._objective(fold, study), n_trials=1, catch=(TrialFailed, OverBudget),
                                   gc_after_trial=False)
                except optuna.exceptions.UpdateFinishedTrialError as exc:
                    # another worker failed this trial meanwhile (its heartbeat came too late): it was
                    # queued again there, so this result must not count
                    log.warning("[OPTIMIZE] %s: a trial was failed by another worker while it ran (%s); "
                                "its retry will run", fold.label, one_line(exc))
                self.trials_run += 1
                started = True
                if self.wake is not None:
                    self.wake.set()
                break
            if self.progress is not None:
                self.progress.update(self.studies, final=not waiting_on)
            if not waiting_on:
                return
            if started:
                continue
            for study in waiting_on:  # every slot is taken by trials running elsewhere: find the dead ones
                self.reap(study)
            self.pause(poll)

    def pause(self, seconds: float) -> None:
        """Wait while every free place is taken by trials running elsewhere: ``seconds`` (then look for dead
        workers again), or less when a process of this command ends a trial (the study may be complete now)."""
        if self.wake is None:
            time.sleep(seconds)
        else:
            self.wake.wait(seconds)

    def reap(self, study: Any) -> int:
        """Fail and queue again the running trials whose worker died (heartbeats, and dead processes here)."""
        optuna = quiet_optuna()
        from optuna.trial import TrialState

        if self.plan.database:
            optuna.storages.fail_stale_trials(study)
        grace = float(self.plan.settings["grace_seconds"])
        now = datetime.now(timezone.utc)
        reaped = 0
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            mark = str(trial.user_attrs.get("worker", ""))
            host, _, rest = mark.partition(":")
            pid_text, _, number = rest.partition(":")
            if number == str(trial.number):
                dead = host == self.host and pid_text.isdigit() and not _alive(int(pid_text))
            else:  # not marked yet by the process that took it (or marked in an earlier run of its parameters)
                started = trial.datetime_start
                if started is not None and started.tzinfo is None:
                    started = started.astimezone(timezone.utc)
                dead = started is not None and (now - started).total_seconds() > grace and not self.plan.database
            if not dead:
                continue
            try:
                study.tell(trial.number, state=TrialState.FAIL)
            except (RuntimeError, ValueError):
                continue  # finished meanwhile, or another worker got there first
            failed = next(t for t in study.get_trials(deepcopy=True) if t.number == trial.number)
            self.retry(study, failed)
            reaped += 1
            log.warning("[OPTIMIZE] trial %d of %s: its worker %s died; failed and queued again", trial.number,
                        study.study_name, mark.rsplit(":", 1)[0] or "(unknown)")
        return reaped

    def _objective(self, fold: Fold, study: Any) -> Callable[[Any], float]:
        plan = self.plan
        settings = plan.settings
        optuna = quiet_optuna()
        from optuna.trial import TrialState

        def objective(trial: Any) -> float:
            trial.set_user_attr("worker", self.mark(trial.number))
            trials = study.get_trials(deepcopy=False)
            ahead = sum(1 for t in trials if t.number < trial.number and holds_slot(t))
            running_elsewhere = sum(1 for t in trials if t.state == TrialState.RUNNING and t.number != trial.number)
            self.credit[fold.index] = plan.trials - sum(holds_slot(t) for t in trials) - running_elsewhere - 1
            if ahead >= plan.trials:
                self.credit[fold.index] = 0
                trial.set_user_attr("skipped", f"the study had its {plan.trials} trials when this one started")
                raise OverBudget
            values = suggest(trial, plan.params)
            config = apply(self.base, values)
            try:
                check_config(config, self.schema)
            except ConfigError as exc:
                reason = one_line(exc).removeprefix("config error: ")
                trial.set_user_attr("pruned", reason)
                raise optuna.TrialPruned(reason) from None
            t0 = time.perf_counter()
            cpu0 = time.process_time()
            try:
                summary = replay_recording(config, self.reader, start=fold.train[0], end=fold.train[1])
            except Exception as exc:  # the trial fails with the reason, the study goes on
                reason = one_line(exc) or type(exc).__name__
                trial.set_user_attr("error", reason)
                log.warning("[OPTIMIZE] %s trial %d failed: %s", fold.label, trial.number, reason)
                raise TrialFailed(reason) from None
            figures = metrics(summary)
            figures["seconds"] = round(time.perf_counter() - t0, 4)
            figures["cpu_seconds"] = round(time.process_time() - cpu0, 4)
            # this process's CPU time so far: between two of its trials' values, the whole CPU cost of a trial
            # (sampler, storage, progress, garbage collection too) whatever else the machine runs
            figures["worker_cpu_seconds"] = round(time.process_time(), 3)
            waited = run_queue_wait()
            if waited is not None:  # and the time it was ready to run but the machine gave the CPU to others
                figures["worker_wait_seconds"] = round(waited, 3)
            value = score(figures, plan.objective, float(settings["drawdown_floor_krw"]))
            if not math.isfinite(value):
                value = -1e300
            figures["constraints"] = violations(figures, int(settings["min_trades"]), settings.get("max_drawdown_krw"))
            trial.set_user_attr("result", figures)  # one write: a shared database pays per statement
            return value

        return objective


#: how long a process waits at the start barrier for the others to read their recordings
START_BARRIER_SECONDS = 300.0


def wait_for_start(ready: Any, index: int) -> None:
    """Pass the ``--jobs`` start barrier (None: a single process). A worker that died before reaching it breaks
    the barrier: the others go on without it rather than wait for ever."""
    if ready is None:
        return
    import threading

    try:
        ready.wait(START_BARRIER_SECONDS)
    except threading.BrokenBarrierError:
        log.warning("[OPTIMIZE] process %d: not every worker process started; going on without the missing", index)


def worker_main(plan: Plan, index: int, ready: Any = None, reader: RecordingReader | None = None,
                wake: Any = None) -> None:
    """Entry point of a ``--jobs`` worker process: wait for the others, search. A forked worker is handed the
    recordings its parent read (``reader``, shared copy-on-write); a spawned one reads them itself."""
    from arbframe_optimize.command import setup_worker_logging

    setup_worker_logging()
    try:
        try:
            worker = Worker(plan, index, reader=reader, wake=wake)
        except BaseException:
            if ready is not None:
                ready.abort()  # the others stop waiting for this process at once
            raise
        wait_for_start(ready, index)
        worker.run()
    except ArbframeError as exc:
        print(f"arbframe optimize: worker {index}: error: {one_line(exc)}", file=sys.stderr)
        sys.exit(exc.exit_status)
    except KeyboardInterrupt:
        sys.exit(130)
