"""The report of a finished search: tables, importances, charts and the best parameters as a config overlay.

Written to ``--out`` (``report.txt`` is also printed):

- ``report.txt`` / ``report.json``: per fold the training (in-sample) and test (out-of-sample) windows, trial
  counts, and the best trials with their in-sample figures beside the same parameters replayed on the test window;
  parameter importances (Optuna's PED-ANOVA where available);
- ``history.png``: each fold's objective per trial and the best so far; ``equity.png``: the best trial of the last
  fold, PnL over its training window and on through its test window (matplotlib, Agg, imported here only);
- ``best.yml``: the last fold's best parameters (the most recent training window) in the full ``arbitrage`` and
  ``paper`` sections the search replayed, so ``arbframe run -c best.yml`` runs exactly the evaluated strategy.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arbframe import RecordingReader, replay_recording
from arbframe_optimize.folds import Fold
from arbframe_optimize.objective import feasible, metrics, score, trial_feasible, violations
from arbframe_optimize.space import apply, overlay
from arbframe_optimize.study import Plan, finished, one_line, quiet_optuna

log = logging.getLogger("arbframe.optimize")

REPORT_TXT = "report.txt"
REPORT_JSON = "report.json"
HISTORY_PNG = "history.png"
EQUITY_PNG = "equity.png"
BEST_YML = "best.yml"
OOS_ATTR = "out_of_sample"


@dataclass
class Scored:
    """One trial's parameters with its in-sample and out-of-sample figures."""

    number: int
    params: dict[str, Any]
    value: float | None
    figures: dict[str, Any]
    feasible: bool
    oos_value: float | None = None
    oos_figures: dict[str, Any] | None = None
    oos_feasible: bool | None = None
    oos_error: str | None = None


@dataclass
class FoldReport:
    fold: Fold
    study: str
    counts: dict[str, int]
    top: list[Scored] = field(default_factory=list)
    importances: dict[str, float] | None = None
    importance_note: str = ""
    failures: list[tuple[int, str]] = field(default_factory=list)
    history: list[tuple[int, float, bool, dict[str, Any]]] = field(default_factory=list)  # trial, value, ok, params


def _counts(trials: list[Any], n: int) -> dict[str, int]:
    from optuna.trial import TrialState

    counts = {"counted": sum(finished(t) for t in trials), "complete": 0, "feasible": 0, "pruned": 0,
              "failed": 0, "retried": 0, "skipped": 0, "running": 0}
    for t in trials:
        if t.state == TrialState.COMPLETE:
            counts["complete"] += 1
            counts["feasible"] += trial_feasible(t)
        elif t.state == TrialState.PRUNED:
            counts["pruned"] += 1
        elif t.state == TrialState.FAIL:
            if "error" in t.user_attrs:
                counts["failed"] += 1
            elif "skipped" in t.user_attrs:
                counts["skipped"] += 1
            else:
                counts["retried"] += 1  # its worker died: queued again (or out of retries)
        elif t.state in (TrialState.RUNNING, TrialState.WAITING):
            counts["running"] += 1
    counts["trials"] = n
    return counts


def ranked(trials: list[Any]) -> list[Any]:
    """Complete trials, feasible first, best value first (ties: the earlier trial)."""
    from optuna.trial import TrialState

    done = [t for t in trials if t.state == TrialState.COMPLETE]
    return sorted(done, key=lambda t: (not trial_feasible(t), -t.value, t.number))


def _out_of_sample(plan: Plan, base: Mapping[str, Any], reader: RecordingReader, fold: Fold, study: Any,
                   top: list[Scored]) -> None:
    """Replay each of ``top`` on the fold's test window (results kept in the study: the next report reuses them)."""
    if fold.test is None:
        return
    settings = plan.settings
    cache = dict(study.user_attrs.get(OOS_ATTR) or {})
    changed = False
    for row in top:
        key = str(row.number)
        entry = cache.get(key)
        if entry is None:
            try:
                summary = replay_recording(apply(base, row.params), reader, start=fold.test[0], end=fold.test[1])
            except Exception as exc:
                entry = {"error": one_line(exc) or type(exc).__name__}
            else:
                entry = {"figures": metrics(summary)}
            cache[key] = entry
            changed = True
        if "error" in entry:
            row.oos_error = str(entry["error"])
            continue
        figures = entry["figures"]
        row.oos_figures = figures
        row.oos_value = score(figures, plan.objective, float(settings["drawdown_floor_krw"]))
        row.oos_feasible = feasible(violations(figures, int(settings["min_trades"]), settings.get("max_drawdown_krw")))
    if changed:
        study.set_user_attr(OOS_ATTR, cache)


def _importances(study: Any) -> tuple[dict[str, float] | None, str]:
    optuna = quiet_optuna()
    evaluator_cls = getattr(optuna.importance, "PedAnovaImportanceEvaluator", None)
    try:
        evaluator = evaluator_cls() if evaluator_cls is not None else None
        values = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except Exception as exc:  # too few trials, one value only, a missing optional library
        return None, one_line(exc)[:200]
    return {k: float(v) for k, v in values.items()}, ""


def collect(plan: Plan, studies: Mapping[int, Any], base: Mapping[str, Any], reader: RecordingReader
            ) -> list[FoldReport]:
    top_n = int(plan.settings["report_top"])
    reports = []
    for fold in plan.folds:
        study = studies[fold.index]
        trials = study.get_trials(deepcopy=False)
        report = FoldReport(fold, study.study_name, _counts(trials, plan.trials))
        for t in ranked(trials)[:top_n]:
            report.top.append(Scored(t.number, dict(t.params), float(t.value), dict(t.user_attrs.get("result") or {}),
                                     trial_feasible(t)))
        _out_of_sample(plan, base, reader, fold, study, report.top)
        report.importances, report.importance_note = _importances(study)
        report.failures = [(t.number, str(t.user_attrs["error"])) for t in trials if "error" in t.user_attrs]
        from optuna.trial import TrialState

        report.history = [(t.number, float(t.value), trial_feasible(t), dict(t.params))
                          for t in sorted(trials, key=lambda t: t.number) if t.state == TrialState.COMPLETE]
        reports.append(report)
    return reports


# ------------------------------------------------------------------------------------------------------ text
def _window(w: tuple[Any, Any] | None) -> str:
    if w is None:
        return "-"
    return f"{w[0].isoformat(timespec='seconds')} .. {w[1].isoformat(timespec='seconds')}"


def _num(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return lines


def render(plan: Plan, reports: list[FoldReport], data_note: str, written: list[str]) -> str:
    lines = [
        f"arbframe optimize: study {plan.study!r}, objective {plan.objective}, "
        f"{'no walk-forward' if plan.folds[0].count == 0 else f'{len(plan.folds)} walk-forward folds'}, "
        f"{plan.trials} trials per study, storage {plan.shown_storage()}",
        f"data: {data_note}",
        f"constraints: at least {plan.settings['min_trades']} closed position(s)"
        + (f", drawdown at most {plan.settings['max_drawdown_krw']:,} KRW"
           if plan.settings.get("max_drawdown_krw") is not None else ""),
        "",
        "in sample (training window) vs out of sample (the next window, never replayed by the fold's trials):",
    ]
    rows = []
    for r in reports:
        best = r.top[0] if r.top and r.top[0].feasible else None
        c = r.counts
        done = f"{c['counted']}/{c['trials']}"
        extra = ", ".join(f"{c[k]} {k}" for k in ("pruned", "failed", "retried", "skipped") if c[k])
        rows.append([
            r.fold.label, _window(r.fold.train), _window(r.fold.test), done + (f" ({extra})" if extra else ""),
            "-" if best is None else f"#{best.number}",
            _num(None if best is None else best.value), _num(None if best is None else best.oos_value),
            _num(None if best is None else best.figures.get("pnl")),
            _num(None if best is None or best.oos_figures is None else best.oos_figures.get("pnl")),
            "-" if best is None else f"{best.figures.get('trades')} / "
            f"{'-' if best.oos_figures is None else best.oos_figures.get('trades')}",
            _num(None if best is None else best.figures.get("max_drawdown")) + " / "
            + _num(None if best is None or best.oos_figures is None else best.oos_figures.get("max_drawdown")),
        ])
    lines += _table(["fold", "train (in sample)", "test (out of sample)", "trials", "best", "IS objective",
                     "OOS objective", "IS PnL", "OOS PnL", "trades IS/OOS", "max DD IS/OOS"], rows)
    param_names = [p.path for p in plan.params]
    for r in reports:
        lines += ["", f"best trials, {r.fold.label} ({r.study}):"]
        if not r.top:
            lines.append("  no complete trial")
        else:
            rows = []
            for rank, s in enumerate(r.top, 1):
                oos = s.oos_error if s.oos_error else None
                rows.append([
                    str(rank), f"#{s.number}", *(_num(s.params.get(n), 6) for n in param_names),
                    _num(s.value), _num(s.figures.get("pnl")), str(s.figures.get("trades", "-")),
                    _num(s.figures.get("max_drawdown")), "yes" if s.feasible else "no",
                    "|", oos or _num(s.oos_value), "" if oos else _num((s.oos_figures or {}).get("pnl")),
                    "" if oos else str((s.oos_figures or {}).get("trades", "-")),
                    "" if oos else _num((s.oos_figures or {}).get("max_drawdown")),
                    "" if oos or s.oos_feasible is None else ("yes" if s.oos_feasible else "no"),
                ])
            lines += ["  " + line for line in _table(
                ["rank", "trial", *param_names, "IS objective", "IS PnL", "IS trades", "IS max DD", "feasible",
                 "|", "OOS objective", "OOS PnL", "OOS trades", "OOS max DD", "OOS feasible"], rows)]
        if r.importances:
            shown = ", ".join(f"{k} {v:.2f}" for k, v in r.importances.items())
            lines.append(f"  parameter importances: {shown}")
        elif r.importance_note:
            lines.append(f"  parameter importances: n/a ({r.importance_note})")
        for number, reason in r.failures[:5]:
            lines.append(f"  trial #{number} failed: {reason}")
        if len(r.failures) > 5:
            lines.append(f"  ... and {len(r.failures) - 5} more failed trials")
    if written:
        lines += ["", "written: " + ", ".join(written)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------- charts
def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("[OPTIMIZE] no charts: matplotlib is not installed")
        return None
    return plt


def history_chart(reports: list[FoldReport], path: Path) -> bool:
    plt = _pyplot()
    if plt is None:
        return False
    fig, axes = plt.subplots(len(reports), 1, figsize=(9, 2.6 * len(reports) + 0.6), squeeze=False)
    for ax, r in zip(axes[:, 0], reports, strict=True):
        ok = [(n, v) for n, v, f, _ in r.history if f]
        bad = [(n, v) for n, v, f, _ in r.history if not f]
        if ok:
            ax.scatter([n for n, _ in ok], [v for _, v in ok], s=12, color="tab:blue", label="feasible")
            best, line = None, []
            for n, v in ok:
                best = v if best is None or v > best else best
                line.append((n, best))
            ax.step([n for n, _ in line], [b for _, b in line], where="post", color="tab:red", linewidth=1,
                    label="best so far")
        if bad:
            ax.scatter([n for n, _ in bad], [v for _, v in bad], s=12, marker="x", color="tab:gray",
                       label="infeasible")
        ax.set_title(f"{r.fold.label}: trained on {_window(r.fold.train)}", fontsize=9)
        ax.set_ylabel("objective")
        if ok or bad:
            ax.legend(fontsize=7, loc="lower right")
    axes[-1, 0].set_xlabel("trial")
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return True


def equity_chart(plan: Plan, base: Mapping[str, Any], reader: RecordingReader, report: FoldReport,
                 path: Path) -> bool:
    """The best trial of ``report``: premium and PnL over its training window, then its test window."""
    best = report.top[0] if report.top else None
    if best is None:
        return False
    plt = _pyplot()
    if plt is None:
        return False
    config = apply(base, best.params)
    fold = report.fold
    inside: list[tuple[Any, ...]] = []
    replay_recording(config, reader, start=fold.train[0], end=fold.train[1], chart_points=inside)
    outside: list[tuple[Any, ...]] = []
    if fold.test is not None and best.oos_error is None:
        replay_recording(config, reader, start=fold.test[0], end=fold.test[1], chart_points=outside)
    fig, (ax1, ax2) = plt.subplots(2, 1, sharex=True, figsize=(10, 6))
    offset = inside[-1][2] if inside else 0.0
    for points, colour, label, shift in ((inside, "tab:blue", "in sample", 0.0),
                                         (outside, "tab:orange", "out of sample", offset)):
        if not points:
            continue
        xs = [p[0] for p in points]
        ax1.plot(xs, [None if p[1] is None else p[1] * 100 for p in points], linewidth=0.7, color=colour)
        ax2.plot(xs, [p[2] + shift for p in points], linewidth=0.9, color=colour, label=label)
    if fold.test is not None:
        for ax in (ax1, ax2):
            ax.axvline(fold.test[0], color="gray", linestyle="--", linewidth=0.8)
    ax1.set_ylabel("kimchi premium (%)")
    ax2.set_ylabel("PnL (KRW)")
    ax2.legend(fontsize=8, loc="upper left")
    ax1.set_title(f"best trial #{best.number} of {fold.label}: "
                  + ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.params.items()),
                  fontsize=9)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return True


# ---------------------------------------------------------------------------------------------- best overlay
def best_overlay(plan: Plan, base: Mapping[str, Any], report: FoldReport) -> tuple[str, dict[str, Any]] | None:
    """The text of ``best.yml`` and its content: the replayed strategy with the best parameters filled in."""
    import yaml

    best = report.top[0] if report.top and report.top[0].feasible else None
    if best is None:
        return None
    config = apply(base, best.params)
    content: dict[str, Any] = {"arbitrage": config.get("arbitrage") or {}, "paper": config.get("paper") or {}}
    for section, values in overlay(best.params).items():
        if section not in content:
            content[section] = values
    fold = report.fold
    oos = "-" if best.oos_value is None else f"{best.oos_value:,.4f}"
    head = [
        f"# arbframe optimize: study {plan.study!r}, {fold.label}, trial #{best.number}",
        f"# trained on {_window(fold.train)}",
        f"# objective {plan.objective}: in sample {best.value:,.4f}, out of sample {oos}"
        + ("" if fold.test is None else f" ({_window(fold.test)})"),
        "# tuned: " + ", ".join(f"{k} = {v!r}" for k, v in best.params.items()),
        "# run it: arbframe run -c best.yml   (or overlay it on your config: -c your.yml -c best.yml)",
    ]
    text = "\n".join(head) + "\n" + yaml.safe_dump(content, sort_keys=False, allow_unicode=True)
    return text, content


def write(plan: Plan, studies: Mapping[int, Any], base: Mapping[str, Any], reader: RecordingReader, out: Path,
          data_note: str) -> tuple[str, int]:
    """Build and write the report; returns its text and the exit status (1: no feasible trial in the last fold)."""
    out.mkdir(parents=True, exist_ok=True)
    reports = collect(plan, studies, base, reader)
    written = []
    if history_chart(reports, out / HISTORY_PNG):
        written.append(str(out / HISTORY_PNG))
    final = reports[-1]
    status = 0
    best = best_overlay(plan, base, final)
    if best is not None:
        (out / BEST_YML).write_text(best[0], encoding="utf-8")
        written.append(str(out / BEST_YML))
        if equity_chart(plan, base, reader, final, out / EQUITY_PNG):
            written.append(str(out / EQUITY_PNG))
    else:
        (out / BEST_YML).unlink(missing_ok=True)
        status = 1
    written += [str(out / REPORT_TXT), str(out / REPORT_JSON)]
    text = render(plan, reports, data_note, written)
    if best is None:
        text += (f"\nno trial of {final.fold.label} met the constraints: no best.yml written (loosen "
                 "optimize.min_trades / optimize.max_drawdown_krw, widen the space or add trials)\n")
    (out / REPORT_TXT).write_text(text, encoding="utf-8")
    (out / REPORT_JSON).write_text(json.dumps(_as_json(plan, reports, data_note, best), indent=2, default=str) + "\n",
                                   encoding="utf-8")
    return text, status


def _as_json(plan: Plan, reports: list[FoldReport], data_note: str, best: tuple[str, dict[str, Any]] | None
             ) -> dict[str, Any]:
    return {
        "study": plan.study, "storage": plan.shown_storage(), "objective": plan.objective, "trials": plan.trials,
        "data": data_note, "space": {p.path: p.as_dict() for p in plan.params},
        "folds": [{
            **r.fold.as_dict(), "study": r.study, "counts": r.counts,
            "top": [{
                "trial": s.number, "params": s.params, "in_sample": {"objective": s.value, **s.figures,
                                                                    "feasible": s.feasible},
                "out_of_sample": None if r.fold.test is None else (
                    {"error": s.oos_error} if s.oos_error else
                    {"objective": s.oos_value, **(s.oos_figures or {}), "feasible": s.oos_feasible}),
            } for s in r.top],
            "importances": r.importances, "failures": [{"trial": n, "error": e} for n, e in r.failures],
            "history": [{"trial": n, "value": v, "feasible": f, "params": p} for n, v, f, p in r.history],
        } for r in reports],
        "best_params": None if best is None else reports[-1].top[0].params,
    }
