"""The progress line: a rate only once the run is long enough to measure one, and the final line printed once."""

from __future__ import annotations

import io
from types import SimpleNamespace

import optuna
from arbframe_optimize import study as study_mod
from optuna.trial import TrialState, create_trial


def _studies(values: list[float]) -> dict[int, optuna.Study]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = optuna.create_study(direction="maximize")
    for v in values:
        s.add_trial(create_trial(value=v, state=TrialState.COMPLETE, params={}, distributions={}))
    return {0: s}


def test_rate_waits_for_a_measurable_span_and_the_final_line_prints_once(monkeypatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(study_mod.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(study_mod, "trial_feasible", lambda t: True)
    plan = SimpleNamespace(trials=4, folds=[SimpleNamespace(index=0, count=0, label="all")])
    out = io.StringIO()
    progress = study_mod.Progress(plan, stream=out, min_interval=0.0)  # type: ignore[arg-type]
    progress.start(_studies([]))
    clock[0] += 0.01  # a trial pruned at once: 1 trial in 10 ms would read as 6,000 trials/min
    progress.update(_studies([1.0]))
    clock[0] += 58.0  # 3 more in the next 58 s: 4 trials in 58.01 s
    progress.update(_studies([1.0, 2.0, 3.0, 2.5]), final=True)
    progress.update(_studies([1.0, 2.0, 3.0, 2.5]), final=True)
    lines = out.getvalue().splitlines()
    assert lines[0] == "[OPTIMIZE] 1/4 trials, best 1.00 (trial 0), rate unknown, ETA unknown"
    assert lines[1:] == ["[OPTIMIZE] 4/4 trials, best 3.00 (trial 2), 4.1 trials/min, done"]  # 4 / 58.01 s * 60
