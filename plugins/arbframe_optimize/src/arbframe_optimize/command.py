"""``arbframe optimize``: search strategy parameters by replaying recordings (entry point ``optimize`` in
``arbframe.commands``).

The search space, objective and constraints come from the config's ``optimize`` section; every trial is a
deterministic replay (the backtest's, fast path included) of the recordings restricted to the fold's training
window. Out of sample by default: walk-forward folds, each best scored on the window after its training window.
``--jobs J`` runs J worker processes here (the recordings read once, by this process, and shared with the workers
it forks); ``--storage postgresql://...`` lets processes on other hosts join the same study (``--study NAME``).
See docs/OPTIMIZE.md.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
import time
from pathlib import Path
from typing import Any

from arbframe import ConfigError, hookimpl

ARBFRAME_API_VERSION = 1

log = logging.getLogger("arbframe.optimize")

DESCRIPTION = """\
Search strategy parameters on recorded data with Optuna.

The search space, objective and constraints come from the config's optimize section, e.g.

  optimize:
    objective: pnl            # pnl | realized_pnl | equity_change | pnl_over_drawdown | pnl_per_trade
    min_trades: 5
    folds: 3                  # walk-forward: train on one window, score on the next (0: whole span)
    space:
      arbitrage.entry_threshold: {low: 0.002, high: 0.03, log: true}
      arbitrage.exit_threshold: {low: -0.01, high: 0.0}

Each trial replays the recordings (arbframe run --mode backtest's replay) over its fold's training window.
The report (also in --out) shows in-sample and out-of-sample figures side by side and writes best.yml, a config
overlay that `arbframe run -c best.yml` accepts. With --storage postgresql://... several processes, on any
hosts, share one study (--study NAME); a killed worker's trial is failed and retried. See docs/OPTIMIZE.md."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


@hookimpl
def arbframe_register_commands(subparsers: argparse._SubParsersAction) -> None:
    from arbframe_optimize.schema import OBJECTIVES

    parser = subparsers.add_parser(
        "optimize", help="search strategy parameters on recordings (Optuna; plugin arbframe-optimize)",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", "-c", dest="configs", action="append", default=[], metavar="FILE",
        help="YAML config overlaid on the embedded defaults (repeat to overlay several, in order)",
    )
    noise = parser.add_mutually_exclusive_group()
    noise.add_argument("--verbose", "-v", action="store_true", help="debug logging (overrides logging.level)")
    noise.add_argument("--quiet", "-q", action="store_true", help="warnings and errors only")
    parser.add_argument("--data", nargs="+", metavar="REC",
                        help="recordings to replay (.jsonl or .jsonl.gz; several are replayed as one, in time "
                             "order; default backtest.data)")
    parser.add_argument("--trials", type=_positive_int, metavar="N",
                        help="trials per study, all processes together (default optimize.trials; one study per "
                             "walk-forward fold)")
    parser.add_argument("--jobs", type=_positive_int, default=1, metavar="J",
                        help="worker processes on this machine, this one included (the recordings are read "
                             "once and shared; default 1)")
    parser.add_argument("--storage", metavar="URL",
                        help="study storage: postgresql://user:pass@host/db (shared by every host) or a journal "
                             "file path (default: OUT/study.journal)")
    parser.add_argument("--study", default="optimize", metavar="NAME",
                        help="study name; processes started with the same name and storage join it "
                             "(default: optimize)")
    parser.add_argument("--out", metavar="DIR", help="report directory (default: data/optimize/NAME)")
    parser.add_argument("--objective", choices=list(OBJECTIVES), help="default optimize.objective")
    parser.add_argument("--folds", type=_count, metavar="K",
                        help="walk-forward folds (0: one study over the whole span; default optimize.folds)")
    parser.add_argument("--seed", type=int, metavar="S", help="sampler seed (default optimize.seed)")
    parser.add_argument("--no-report", action="store_true",
                        help="run trials only (a worker host of a shared study): no report, charts or best.yml; "
                             "the same command without it reports the finished study")
    parser.set_defaults(handler=handle)


def setup_worker_logging() -> None:
    """Warnings of a ``--jobs`` worker process to stderr (the first process prints progress and the report)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)


def handle(args: argparse.Namespace) -> int:
    from arbframe_optimize.study import thaw

    frozen = gc.get_freeze_count()
    try:
        return _handle(args)
    finally:
        thaw(frozen)  # the recordings were kept out of the garbage collector's sight (study.preload)


def _handle(args: argparse.Namespace) -> int:
    from arbframe import config_schema, load_config
    from arbframe_optimize import report, schema, study
    from arbframe_optimize.folds import walk_forward
    from arbframe_optimize.space import parse_space

    config = load_config(args.configs)
    settings = schema.settings(config)
    for key, value in (("objective", args.objective), ("folds", args.folds), ("seed", args.seed),
                       ("trials", args.trials)):
        if value is not None:
            settings[key] = value
    params = parse_space(settings["space"], config_schema())
    data = args.data or ([(config.get("backtest") or {}).get("data")] if (config.get("backtest") or {}).get("data")
                         else None)
    if not data:
        raise ConfigError("arbframe optimize needs --data REC... (recordings made with `arbframe record`)")
    out = Path(args.out or Path("data") / "optimize" / args.study)
    storage_url = args.storage or str(out / "study.journal")
    t0 = time.perf_counter()
    reader = study.preload(data)
    span = reader.span()
    if span is None:
        raise ConfigError(f"--data: the recordings hold no snapshot ({', '.join(map(str, data))})")
    folds = walk_forward(span.first, span.last, int(settings["folds"]), anchored=bool(settings["anchored"]))
    for fold in folds:
        for what, window in (("training", fold.train), ("test", fold.test)):
            if window is not None and reader.window(*window).span() is None:
                raise ConfigError(
                    f"config error: optimize.folds: {fold.label}'s {what} window {window[0].isoformat()} .. "
                    f"{window[1].isoformat()} holds no snapshot (a gap in the recordings); use fewer folds"
                )
    data_note = (f"{len(data)} recording(s), {span.snapshots:,} snapshots, {span.first.isoformat()} .. "
                 f"{span.last.isoformat()} (read in {time.perf_counter() - t0:.1f}s)")
    plan = study.Plan(
        configs=list(args.configs), data=[str(p) for p in data], storage=storage_url, study=args.study,
        trials=int(settings["trials"]), folds=folds, params=params, settings=settings,
        shared="://" in storage_url,
        identity={
            "space": {p.path: p.as_dict() for p in params}, "objective": settings["objective"],
            "constraints": [settings["min_trades"], settings.get("max_drawdown_krw")],
            "drawdown_floor_krw": settings["drawdown_floor_krw"], "anchored": bool(settings["anchored"]),
            "config": study.config_fingerprint(config),
            "data": [span.first.isoformat(), span.last.isoformat(), span.snapshots],
        },
    )
    storage = study.open_storage(plan)
    studies = study.prepare_studies(plan, storage)
    log.info("[OPTIMIZE] study %r in %s: %d trial(s) per study, %s, objective %s, %d worker process(es); %s",
             plan.study, plan.shown_storage(), plan.trials,
             "no walk-forward" if folds[0].count == 0 else f"{len(folds)} walk-forward folds", plan.objective,
             args.jobs, data_note)
    children, ready, wake = _start_workers(plan, args.jobs - 1, reader, storage)
    try:
        with study.quiet_engine():
            worker = study.Worker(plan, 0, reader=reader, storage=storage, progress=study.Progress(plan),
                                  tick=lambda: _check_workers(children), wake=wake)
            study.wait_for_start(ready, 0)
            worker.run()
        for _, process in children:
            process.join()
        _check_workers(children)
    except BaseException:
        for _, process in children:
            if process.is_alive():
                process.terminate()  # our own worker processes, by handle
        raise
    finally:
        if wake is not None:
            wake.close()
    counts = [(f, sum(study.finished(t) for t in studies[f.index].get_trials(deepcopy=False))) for f in folds]
    short = [f"{f.label}: {n}/{plan.trials}" for f, n in counts if n < plan.trials]
    if short:
        raise study.StorageError(f"the study is not complete ({'; '.join(short)}); run the same command again to "
                                 "finish it")
    if args.no_report:
        print(f"[OPTIMIZE] study {plan.study!r} complete: {plan.trials} trial(s) per study, "
              f"{worker.trials_run} run by this process; run the command without --no-report for the report")
        return 0
    with study.quiet_engine():
        text, status = report.write(plan, worker.studies, worker.base, reader, out, data_note)
    sys.stdout.write(text)
    return status


def _start_workers(plan: Any, count: int, reader: Any, storage: Any) -> tuple[list[tuple[int, Any]], Any, Any]:
    """``count`` worker processes, the barrier every process (this one too) passes once it is ready to search
    (the search starts on all of them at once, so the first process does not run ahead during the others'
    start-up: the work is shared as ``--jobs`` says) and the :class:`~arbframe_optimize.study.Wake` each sets when
    it ends a trial (forked workers only; spawned ones poll).

    On Linux the workers are forked from this process, which has read the recordings already: they start with
    them in memory (shared copy-on-write) and with every module imported, in a fraction of a second, and the
    machine reads and decodes the recordings once, not once per process. Elsewhere (fork is unsafe on macOS)
    they are spawned and each reads the recordings itself."""
    if count <= 0:
        return [], None, None
    import multiprocessing

    from arbframe_optimize.study import Wake, worker_main

    fork = start_method() == "fork"
    ctx: Any = multiprocessing.get_context(start_method())
    if fork:
        # a forked child must not share this process's database connections: each worker opens its own storage,
        # and the pool here reconnects when it is used next
        engine = getattr(storage, "engine", None)
        if engine is not None:
            engine.dispose()
    ready = ctx.Barrier(count + 1)
    wake = Wake() if fork else None
    children = []
    for index in range(1, count + 1):
        process = ctx.Process(target=worker_main, args=(plan, index, ready, reader if fork else None, wake),
                              name=f"arbframe-optimize-{index}")
        process.start()
        children.append((index, process))
    return children, ready, wake


def start_method() -> str:
    """How ``--jobs`` starts its worker processes: ``fork`` on Linux, ``spawn`` elsewhere."""
    import multiprocessing

    return "fork" if sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods() \
        else "spawn"


_reported: set[int] = set()


def _check_workers(children: list[tuple[int, Any]]) -> None:
    """Note worker processes that ended badly (their running trials are failed and retried by the others)."""
    for index, process in children:
        if process.pid in _reported or process.is_alive():  # is_alive also reaps an exited child
            continue
        _reported.add(process.pid)
        code = process.exitcode
        if code:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
            log.warning("[OPTIMIZE] worker process %d (pid %d) %s; the others carry on", index, process.pid, how)

