"""`arbframe optimize` throughput (issue 17): trials per minute with --jobs 1 and --jobs 2, and the per-trial
overhead of the PostgreSQL storage against the journal file.

The recording: 86,400 snapshots (a day at one per second) of the kernel's seeded simulated market, one symbol,
five book levels, written once and kept in the cache directory (``$XDG_CACHE_HOME/arbframe-bench``; generating it
takes about half a minute, later runs reuse it). Every trial replays the whole day (``--folds 0``), searching
entry and exit thresholds and the order size. Every run is the real command (``python -m arbframe optimize ...
--no-report``) in a subprocess. The three runs (journal --jobs 1, journal --jobs 2, PostgreSQL --jobs 1) are
repeated ``--rounds`` times, interleaved, and the best figure of each kind is compared, as the other benchmarks
take the best of their repeats: on a shared machine that is the run the machine disturbed least.

- **trials/min**: steady state, from the trials' completion times in the study: counted from the moment every
  worker process has finished its first trial (its start-up - imports, reading the recording once - excluded) to
  the last completion. Target: --jobs 2 >= 1.7x --jobs 1 on a 2-core machine.
- **replay CPU s/trial**: the CPU time a trial's replay took in its process (``time.process_time``), beside its
  wall time: with 2 workers on a busy machine the wall time grows while the CPU time does not.
- **overhead per trial**: a --jobs 1 worker's time between two trial completions less the replay time the trial
  measured itself: sampler, Optuna's ask/tell, storage reads and writes (and the heartbeat), config check.
  PostgreSQL (a throwaway server from ``arbframe.testing``, heartbeats on) against the journal file, as a share of
  the journal's whole trial. Target: < 5 %.

Wall-clock figures: on a machine shared with other work they are noisy (the load average is printed with them).

Run: ``python benchmarks/bench_optimize.py [--snapshots 86400] [--trials 6] [--rounds 2]`` (about 2-3 minutes,
plus the recording's generation on the first run).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
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


def run(rec: Path, workdir: Path, *, jobs: int, trials: int, storage: str, study: str) -> dict[str, Any]:
    config = workdir / "study.yml"
    config.write_text(yaml.safe_dump({
        "arbitrage": {"symbols": ["BTC"], "cooldown_seconds": 5},
        "optimize": {"folds": 0, "min_trades": 0, "startup_trials": 10, "seed": SEED, "space": SPACE},
    }))
    cmd = [sys.executable, "-m", "arbframe", "optimize", "-c", str(config), "--data", str(rec), "--trials",
           str(trials), "--jobs", str(jobs), "--storage", storage, "--study", study, "--out", str(workdir / study),
           "--no-report", "-q"]
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, timeout=900)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return {"wall": wall, **stats(storage, study, started)}


def stats(storage_url: str, study: str, started: datetime) -> dict[str, Any]:
    import optuna
    from arbframe_optimize.study import quiet_optuna, sqlalchemy_url
    from optuna.trial import TrialState

    quiet_optuna()
    if "://" in storage_url:
        storage: Any = optuna.storages.RDBStorage(sqlalchemy_url(storage_url))
    else:
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage_url))
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
    # per worker, sequential trials: completion-to-completion time less the replay the trial measured
    overheads, cycles = [], []
    for ts in by_worker.values():
        ts = sorted(ts, key=lambda t: t.datetime_complete)
        for prev, cur in itertools.pairwise(ts):
            cycle = when(cur.datetime_complete) - when(prev.datetime_complete)
            cycles.append(cycle)
            overheads.append(cycle - float(cur.user_attrs["result"]["seconds"]))
    first_start = min(when(t.datetime_start) for t in trials)
    return {
        "trials": len(trials), "workers": len(by_worker), "rate": rate,
        "replay": statistics.mean(float(t.user_attrs["result"]["seconds"]) for t in trials),
        "cpu": statistics.mean(float(t.user_attrs["result"]["cpu_seconds"]) for t in trials),
        "snapshots": statistics.mean(int(t.user_attrs["result"]["snapshots"]) for t in trials),
        "cycle": statistics.median(cycles) if cycles else float("nan"),
        "overhead": statistics.median(overheads) if overheads else float("nan"),
        "startup": first_start - started.timestamp(),
    }


def _print_table(rows: list[tuple[str, dict[str, Any]]]) -> None:
    header = ["run", "trials", "workers", "trials/min (steady)", "replay s/trial", "replay CPU s/trial",
              "overhead ms/trial", "start-up s", "wall s"]
    table = [[name, str(r["trials"]), str(r["workers"]), f"{r['rate']:.1f}", f"{r['replay']:.2f}", f"{r['cpu']:.2f}",
              f"{r['overhead'] * 1000:.0f}", f"{r['startup']:.1f}", f"{r['wall']:.0f}"] for name, r in rows]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--snapshots", type=int, default=86_400)
    parser.add_argument("--trials", type=int, default=6, help="trials with --jobs 1 (twice as many with --jobs 2)")
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
    rows: list[tuple[str, dict[str, Any]]] = []
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
            rows.append((f"journal file, --jobs 1 (round {r})", run(
                rec, work, jobs=1, trials=args.trials, storage=str(work / f"j1-{r}.journal"), study="j1")))
            rows.append((f"journal file, --jobs 2 (round {r})", run(
                rec, work, jobs=2, trials=2 * args.trials, storage=str(work / f"j2-{r}.journal"), study="j2")))
            if not pg_note:
                pg_url = pg.create_database(f"bench_optimize_{r}")
                rows.append((f"PostgreSQL, --jobs 1 (round {r})", run(
                    rec, work, jobs=1, trials=args.trials, storage=pg_url, study="pg")))
    load = os.getloadavg()
    first = rows[0][1]
    print(f"\narbframe optimize on {args.snapshots:,} simulated snapshots (BTC, 5 levels), no folds: "
          f"{first['snapshots']:,.0f} snapshots replayed per trial; {os.cpu_count()} CPUs, load average "
          f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (a shared machine: the figures are noisy)\n")
    _print_table(rows)

    def best(prefix: str, key: str, pick: Any = max) -> dict[str, Any]:
        return pick((r for name, r in rows if name.startswith(prefix)), key=lambda r: r[key])

    one, two = best("journal file, --jobs 1", "rate"), best("journal file, --jobs 2", "rate")
    speedup = two["rate"] / one["rate"]
    print(f"\n--jobs 2 / --jobs 1 (best rounds): {two['rate']:.1f} / {one['rate']:.1f} trials/min = {speedup:.2f}x "
          f"(target >= 1.7x on 2 otherwise idle cores). CPU per replay with 2 workers: {two['cpu'] / one['cpu']:.2f}x "
          f"of 1 worker's; replay wall/CPU {one['replay'] / one['cpu']:.2f} with 1 worker, "
          f"{two['replay'] / two['cpu']:.2f} with 2 (above 1: CPU the machine did not give)")
    if not pg_note:
        journal = best("journal file, --jobs 1", "overhead", min)
        pg_best = best("PostgreSQL, --jobs 1", "overhead", min)
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
