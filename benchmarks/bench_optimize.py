"""`arbframe optimize` throughput (issue 17): trials per minute with --jobs 1 and --jobs 2, and the per-trial
overhead of the PostgreSQL storage against the journal file.

The recording: 86,400 snapshots (a day at one per second) of the kernel's seeded simulated market, one symbol,
five book levels, written once and kept in the cache directory (``$XDG_CACHE_HOME/arbframe-bench``; generating it
takes about half a minute, later runs reuse it). Every trial replays the whole day (``--folds 0``), searching
entry and exit thresholds and the order size. Every run is the real command (``python -m arbframe optimize ...
--no-report``) in a subprocess, on the same recording and the same trials: ``--trials`` parameter sets spread
over the space are queued in the study before the command starts (a replay's cost depends on its parameters -
the more trades, the longer - so sampled ones would make runs differ in work); --jobs 2 runs each set twice.
Each round runs journal --jobs 1 and journal --jobs 2 back to back, in alternating order (1 then 2, then 2 then
1: a load that drifts during the benchmark favours neither), then PostgreSQL --jobs 1; ``--rounds`` rounds.

Wall-clock figures (on a machine shared with other work they are noisy; the 1-minute load average at the start
and end of each run is printed with them):

- **trials/min, steady**: from the trials' completion times in the study, counted from the moment every worker
  process has finished its first trial (start-up - imports, reading the recording - excluded) to the last
  completion. Target: --jobs 2 >= 1.7x --jobs 1 on a 2-core machine.
- **trials/min, whole run**: N trials over the command's wall time, start-up and the end included.
- **start-up s**: from the command's start to its first trial's start; **end tail s**: how long a worker process
  sat idle at the end while another ran the last trial.

CPU figures (what a shared machine disturbs least: CPU time is what a process got, not what it waited for):

- **CPU s/trial, steady**: each worker process's CPU time between two of its trials' completions (the trial
  records its process's CPU time, ``worker_cpu_seconds``): the whole cost of a trial - replay, sampler, storage,
  progress, garbage collection. Equal with 1 and 2 workers means a second worker adds no work: the parallel
  loss on idle cores is then only the end tail (one worker idle while the other runs the last trial).
- **run-queue s/trial**: the time a worker was ready to run but the machine gave the CPU to other work
  (``/proc/self/schedstat``, recorded with each trial as ``worker_wait_seconds``); **own s/trial**: a worker's time
  between two of its trials less that: its CPU time plus its own waiting (storage, locks, files). ``workers x 60
  / own s`` is the steady rate on a core per worker, the figure compared as "on a core per worker".
- **CPU s total** (user + system of the command and its worker processes, ``RUSAGE_CHILDREN``) and **trials per
  CPU-second** over the whole run, start-up included; **cores got** = CPU s / wall s: how much of the machine
  the run had (2.0 for --jobs 2 on an idle 2-core machine).
- **replay CPU s/trial**: the replay alone, in its process (``time.process_time``), beside its wall time.
- **overhead per trial**: a --jobs 1 worker's time between two trial completions less the replay time the trial
  measured itself: sampler, Optuna's ask/tell, storage reads and writes (and the heartbeat), config check.
  PostgreSQL (a throwaway server from ``arbframe.testing``, heartbeats on) against the journal file, as a share of
  the journal's whole trial. Target: < 5 %.

The best round of each kind is compared, as the other benchmarks take the best of their repeats (on a shared
machine that is the run the machine disturbed least), and so is the median of the rounds' paired ratios.

Run: ``python benchmarks/bench_optimize.py [--snapshots 86400] [--trials 8] [--rounds 2] [--no-postgres]``
(about 3 minutes, plus the recording's generation on the first run).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

SEED = 7
SPACE = {
    "arbitrage.entry_threshold": {"low": 0.002, "high": 0.03, "log": True},
    "arbitrage.exit_threshold": {"low": -0.01, "high": 0.0},
    "arbitrage.order_notional_krw": {"low": 200000, "high": 2000000, "step": 100000},
}


def recording(snapshots: int) -> Path:
    """The benchmark's recording, generated once into the cache directory."""
    from arbframe import simulate_recording

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "arbframe-bench"
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"optimize-{snapshots}-btc-d5-s{SEED}.jsonl"
    if not path.exists():
        t0 = time.perf_counter()
        part = path.with_suffix(f".{os.getpid()}.part")
        simulate_recording(part, snapshots=snapshots, symbols=("BTC",), depth=5, tether=False, seed=SEED,
                           excursion_prob=0.02)
        part.replace(path)
        print(f"generated {path} ({snapshots:,} snapshots) in {time.perf_counter() - t0:.0f}s")
    return path


def parameter_sets(n: int) -> list[dict[str, Any]]:
    """``n`` parameter sets spread over :data:`SPACE` (a replay's cost depends on them: the more trades, the
    longer), the same for every run, so that runs differ only in how the trials are run."""
    out = []
    for i in range(n):
        u, v, w = (i + 0.5) / n, (i * 3 % n + 0.5) / n, (i * 5 % n + 0.5) / n
        out.append({"arbitrage.entry_threshold": 0.002 * 15**u, "arbitrage.exit_threshold": -0.01 * v,
                    "arbitrage.order_notional_krw": 200_000 + 100_000 * round(18 * w)})
    return out


def enqueue(storage_url: str, study: str, sets: list[dict[str, Any]]) -> None:
    """Create the study and queue ``sets``: the command runs them (a waiting trial is taken before the sampler
    draws a new one) instead of whatever its sampler would choose in this run."""
    import optuna

    created = optuna.create_study(study_name=study, storage=open_storage(storage_url), direction="maximize")
    for values in sets:
        created.enqueue_trial(values)


def open_storage(storage_url: str) -> Any:
    import optuna
    from arbframe_optimize.study import quiet_optuna, sqlalchemy_url

    quiet_optuna()
    if "://" in storage_url:
        return optuna.storages.RDBStorage(sqlalchemy_url(storage_url))
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage_url))


def run(rec: Path, workdir: Path, *, jobs: int, trials: int, storage: str, study: str,
        sets: list[dict[str, Any]]) -> dict[str, Any]:
    enqueue(storage, study, sets)
    config = workdir / "study.yml"
    config.write_text(yaml.safe_dump({
        "arbitrage": {"symbols": ["BTC"], "cooldown_seconds": 5},
        "optimize": {"folds": 0, "min_trades": 0, "startup_trials": 10, "seed": SEED, "space": SPACE},
    }))
    cmd = [sys.executable, "-m", "arbframe", "optimize", "-c", str(config), "--data", str(rec), "--trials",
           str(trials), "--jobs", str(jobs), "--storage", storage, "--study", study, "--out", str(workdir / study),
           "--no-report", "-q"]
    load0 = os.getloadavg()[0]
    started = datetime.now(timezone.utc)
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, timeout=900)
    wall = time.perf_counter() - t0
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    # the command and every worker process it waited for (this process runs nothing else meanwhile)
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    return {"jobs": jobs, "wall": wall, "cpu_total": cpu, "load": (load0, os.getloadavg()[0]),
            **stats(storage, study, started)}


def stats(storage_url: str, study: str, started: datetime) -> dict[str, Any]:
    import optuna
    from optuna.trial import TrialState

    storage = open_storage(storage_url)
    trials = [t for s in optuna.get_all_study_summaries(storage) if s.study_name.startswith(study)
              for t in optuna.load_study(study_name=s.study_name, storage=storage).trials
              if t.state == TrialState.COMPLETE]

    def when(t: datetime) -> float:
        return (t if t.tzinfo else t.astimezone(timezone.utc)).timestamp()

    by_worker: dict[str, list[Any]] = {}
    for t in trials:
        by_worker.setdefault(str(t.user_attrs["worker"]).rsplit(":", 1)[0], []).append(t)
    first_done = max(min(when(t.datetime_complete) for t in ts) for ts in by_worker.values())
    last_done = max(when(t.datetime_complete) for t in trials)
    steady = [t for t in trials if when(t.datetime_complete) > first_done]
    rate = len(steady) / (last_done - first_done) * 60 if last_done > first_done else float("nan")
    # per worker, sequential trials: completion-to-completion time less the replay the trial measured, and the
    # worker process's CPU time between them
    overheads, cycles = [], []
    spent = {"cycle": 0.0, "cpu": 0.0, "wait": 0.0}
    intervals = 0
    nan = float("nan")
    for ts in by_worker.values():
        ts = sorted(ts, key=lambda t: t.datetime_complete)
        for prev, cur in itertools.pairwise(ts):
            cycle = when(cur.datetime_complete) - when(prev.datetime_complete)
            cycles.append(cycle)
            overheads.append(cycle - float(cur.user_attrs["result"]["seconds"]))
        if len(ts) > 1:
            first, last = ts[0].user_attrs["result"], ts[-1].user_attrs["result"]
            spent["cycle"] += when(ts[-1].datetime_complete) - when(ts[0].datetime_complete)
            spent["cpu"] += float(last.get("worker_cpu_seconds", nan)) - float(first.get("worker_cpu_seconds", nan))
            spent["wait"] += float(last.get("worker_wait_seconds", nan)) - float(first.get("worker_wait_seconds", nan))
            intervals += len(ts) - 1
    per = {key: value / intervals if intervals else nan for key, value in spent.items()}
    # the time a worker process sat idle at the end while another ran the last trial(s)
    tail = last_done - min(max(when(t.datetime_complete) for t in ts) for ts in by_worker.values())
    first_start = min(when(t.datetime_start) for t in trials)
    return {
        "trials": len(trials), "workers": len(by_worker), "rate": rate,
        "replay": statistics.mean(float(t.user_attrs["result"]["seconds"]) for t in trials),
        "cpu": statistics.mean(float(t.user_attrs["result"]["cpu_seconds"]) for t in trials),
        "cpu_trial": per["cpu"], "wait_trial": per["wait"],
        # a worker's time per trial less the time it was ready to run but had no CPU: what it would take on a
        # core of its own (its CPU time plus its own waiting: storage, locks, files)
        "own_trial": per["cycle"] - per["wait"], "tail": tail,
        "snapshots": statistics.mean(int(t.user_attrs["result"]["snapshots"]) for t in trials),
        "cycle": statistics.median(cycles) if cycles else float("nan"),
        "overhead": statistics.median(overheads) if overheads else float("nan"),
        "startup": first_start - started.timestamp(),
    }


def whole_rate(r: dict[str, Any]) -> float:
    return float(r["trials"] / r["wall"] * 60)


def idle_rate(r: dict[str, Any]) -> float:
    """Steady-state trials per minute projected to a core per worker: no run-queue wait."""
    return float(r["workers"] * 60 / r["own_trial"])


def _print_table(rows: list[tuple[str, dict[str, Any]]]) -> None:
    header = ["run", "trials", "trials/min steady", "trials/min whole", "replay s/trial", "replay CPU s/trial",
              "CPU s/trial", "run-queue s/trial", "own s/trial", "CPU s total", "trials/CPU-s", "cores got",
              "overhead ms/trial", "start-up s", "end tail s", "wall s", "load"]
    table = [[name, f"{r['trials']} ({r['workers']} proc.)", f"{r['rate']:.1f}", f"{whole_rate(r):.1f}",
              f"{r['replay']:.2f}", f"{r['cpu']:.2f}", f"{r['cpu_trial']:.2f}", f"{r['wait_trial']:.2f}",
              f"{r['own_trial']:.2f}", f"{r['cpu_total']:.1f}", f"{r['trials'] / r['cpu_total']:.3f}",
              f"{r['cpu_total'] / r['wall']:.2f}", f"{r['overhead'] * 1000:.0f}", f"{r['startup']:.1f}",
              f"{r['tail']:.1f}", f"{r['wall']:.1f}", f"{r['load'][0]:.1f}->{r['load'][1]:.1f}"]
             for name, r in rows]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--snapshots", type=int, default=86_400)
    parser.add_argument("--trials", type=int, default=8, help="trials with --jobs 1 (twice as many with --jobs 2)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args(argv)
    try:
        import arbframe_optimize  # noqa: F401
    except ImportError:
        print("arbframe-optimize is not installed (pip install -e plugins/arbframe_optimize): nothing to measure")
        return 0
    bench_t0 = time.perf_counter()
    rec = recording(args.snapshots)
    sets = parameter_sets(args.trials)
    rows: list[tuple[str, dict[str, Any]]] = []
    pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    pg_note = ""
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-optimize-")))
        pg_url = None
        if args.no_postgres:
            pg_note = "PostgreSQL: not measured (--no-postgres)"
        else:
            from arbframe.testing.postgres_server import PostgresServer, missing_reason

            reason = missing_reason()
            if reason:
                pg_note = f"PostgreSQL: not measured ({reason})"
            else:
                pg = stack.enter_context(PostgresServer())
        for r in range(1, args.rounds + 1):
            pair = {}
            for jobs in ((1, 2) if r % 2 else (2, 1)):  # alternating order: 1 2, 2 1, 1 2, ...
                pair[jobs] = run(rec, work, jobs=jobs, trials=jobs * args.trials,
                                 storage=str(work / f"j{jobs}-{r}.journal"), study=f"j{jobs}", sets=sets * jobs)
                rows.append((f"journal file, --jobs {jobs} (round {r})", pair[jobs]))
            pairs.append((pair[1], pair[2]))
            if not pg_note:
                pg_url = pg.create_database(f"bench_optimize_{r}")
                rows.append((f"PostgreSQL, --jobs 1 (round {r})", run(
                    rec, work, jobs=1, trials=args.trials, storage=pg_url, study="pg", sets=sets)))
    load = os.getloadavg()
    first = rows[0][1]
    print(f"\narbframe optimize on {args.snapshots:,} simulated snapshots (BTC, 5 levels), no folds: "
          f"{first['snapshots']:,.0f} snapshots replayed per trial; {os.cpu_count()} CPUs, load average now "
          f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (a shared machine: the wall-clock figures are noisy)\n")
    _print_table(rows)

    def best(prefix: str, key: Any, pick: Any = max) -> dict[str, Any]:
        return pick((r for name, r in rows if name.startswith(prefix)), key=key)

    one = best("journal file, --jobs 1", lambda r: r["rate"])
    two = best("journal file, --jobs 2", lambda r: r["rate"])
    one_w = best("journal file, --jobs 1", whole_rate)
    two_w = best("journal file, --jobs 2", whole_rate)
    paired = statistics.median(b["rate"] / a["rate"] for a, b in pairs)
    paired_w = statistics.median(whole_rate(b) / whole_rate(a) for a, b in pairs)
    print(f"\nwall ratio --jobs 2 / --jobs 1 (target >= 1.7x on 2 otherwise idle cores):\n"
          f"  steady state, best rounds: {two['rate']:.1f} / {one['rate']:.1f} trials/min = "
          f"{two['rate'] / one['rate']:.2f}x (median of the rounds' paired ratios {paired:.2f}x)\n"
          f"  whole run, best rounds:    {whole_rate(two_w):.1f} / {whole_rate(one_w):.1f} trials/min = "
          f"{whole_rate(two_w) / whole_rate(one_w):.2f}x (median of the rounds' paired ratios {paired_w:.2f}x)")
    jobs1 = [r for name, r in rows if name.startswith("journal file, --jobs 1")]
    jobs2 = [r for name, r in rows if name.startswith("journal file, --jobs 2")]
    cpu1 = statistics.median(r["cpu_trial"] for r in jobs1)
    cpu2 = statistics.median(r["cpu_trial"] for r in jobs2)
    per_cpu1 = sum(r["trials"] for r in jobs1) / sum(r["cpu_total"] for r in jobs1)
    per_cpu2 = sum(r["trials"] for r in jobs2) / sum(r["cpu_total"] for r in jobs2)
    got1 = statistics.median(r["cpu_total"] / r["wall"] for r in jobs1)
    got2 = statistics.median(r["cpu_total"] / r["wall"] for r in jobs2)
    idle1 = statistics.median(idle_rate(r) for r in jobs1)
    idle2 = statistics.median(idle_rate(r) for r in jobs2)
    print(f"CPU efficiency (all rounds; robust to the machine's other load):\n"
          f"  steady state: {1 / cpu1:.3f} trials per CPU-second with --jobs 1, {1 / cpu2:.3f} with --jobs 2 "
          f"(median CPU s/trial {cpu1:.2f} and {cpu2:.2f}): --jobs 2 does a trial for {cpu2 / cpu1:.2f}x the CPU\n"
          f"  whole run:    {per_cpu1:.3f} trials per CPU-second with --jobs 1, {per_cpu2:.3f} with --jobs 2 "
          f"(start-up included) = {per_cpu2 / per_cpu1:.2f}x\n"
          f"  cores the runs got (CPU s / wall s, median): {got1:.2f} with --jobs 1, {got2:.2f} with --jobs 2 of "
          f"{os.cpu_count()}; replay wall/CPU {one['replay'] / one['cpu']:.2f} with 1 worker, "
          f"{two['replay'] / two['cpu']:.2f} with 2 (above 1: CPU the machine did not give)\n"
          f"  steady state on a core per worker (a trial's time less its run-queue wait, median): {idle1:.1f} "
          f"trials/min with --jobs 1, {idle2:.1f} with --jobs 2 = {idle2 / idle1:.2f}x")
    if not pg_note:
        journal = best("journal file, --jobs 1", lambda r: r["overhead"], min)
        pg_best = best("PostgreSQL, --jobs 1", lambda r: r["overhead"], min)
        extra = pg_best["overhead"] - journal["overhead"]
        print(f"PostgreSQL overhead per trial vs the journal file (best rounds): {pg_best['overhead'] * 1000:.0f} ms - "
              f"{journal['overhead'] * 1000:.0f} ms = {extra * 1000:+.0f} ms = {extra / journal['cycle'] * 100:+.2f} % "
              f"of a trial ({journal['cycle']:.2f} s; target < 5 %)")
    else:
        print(pg_note)
    print(f"benchmark time: {time.perf_counter() - bench_t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
