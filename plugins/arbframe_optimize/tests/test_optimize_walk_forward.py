"""Walk-forward folds never let a trial see its scoring window: the windows are disjoint and ordered, every trial
of a fold replays only its training window, and a row that cannot be replayed in a test window fails the
out-of-sample score, never a trial."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from arbframe_optimize.folds import walk_forward

from arbframe import ConfigError

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("anchored", [False, True])
def test_windows_are_ordered_and_each_test_window_follows_its_training(anchored: bool) -> None:
    last = T0 + timedelta(seconds=1000, microseconds=-1)  # windows end just after the last snapshot: 200 s each
    folds = walk_forward(T0, last, 4, anchored=anchored)
    assert [f.index for f in folds] == [1, 2, 3, 4] and all(f.count == 4 for f in folds)
    tests = [f.test for f in folds]
    assert tests[0] is not None and tests[0][0] == T0 + timedelta(seconds=200)
    assert tests[-1] is not None and tests[-1][1] == last + timedelta(microseconds=1)  # the last snapshot is in
    for fold, test in zip(folds, tests, strict=True):
        assert test is not None
        train_start, train_end = fold.train
        assert train_start < train_end == test[0] < test[1]  # the next window, right after the training one
        assert train_start == (T0 if anchored else test[0] - (test[1] - test[0]))
    for a, b in itertools.pairwise(tests):
        assert a is not None and b is not None and a[1] == b[0]  # test windows tile the span after the first


def test_no_walk_forward_is_one_window_over_everything() -> None:
    last = T0 + timedelta(seconds=10)
    (fold,) = walk_forward(T0, last, 0)
    assert fold.train == (T0, last + timedelta(microseconds=1)) and fold.test is None and fold.count == 0
    with pytest.raises(ConfigError, match=r"optimize\.folds"):
        walk_forward(T0, T0, 3)  # one instant cannot be cut into windows


def test_trials_never_replay_their_scoring_window(kit, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every row of the last window (the last fold's scoring window, which rolling and anchored folds never train
    on) is poisoned: a replay reaching it fails with its line number. No trial fails; the out-of-sample score of
    the last fold does; every trial's replayed snapshots lie inside its fold's training window."""
    premiums = kit.premium_path(blocks=4)
    n = len(premiums)
    cut = n * 3 // 4 + 1  # inside the last of the 4 equal windows

    def poison(i: int, row: dict) -> dict:
        return {**row, "b": "poison"} if i >= cut else row

    rec = kit.write_recording(tmp_path / "poisoned.jsonl", premiums, rows=poison)
    for anchored in (False, True):
        out_dir = tmp_path / f"out-{anchored}"
        status = kit.main(["optimize", "-c", str(kit.study_config(tmp_path, folds=3, anchored=anchored)), "--data",
                       str(rec), "--trials", "8", "--out", str(out_dir), "--study", f"wf-{anchored}"])
        out, err = capsys.readouterr()
        assert status == 0, err
        report = json.loads((out_dir / "report.json").read_text())
        folds = report["folds"]
        assert len(folds) == 3
        for fold in folds:
            train = [datetime.fromisoformat(t) for t in fold["train"]]
            test = [datetime.fromisoformat(t) for t in fold["test"]]
            assert train[1] <= test[0]
            assert fold["counts"]["complete"] == 8 and fold["counts"]["failed"] == 0
            for entry in fold["top"]:
                seen = entry["in_sample"]
                assert train[0] <= datetime.fromisoformat(seen["first_ts"])
                assert datetime.fromisoformat(seen["last_ts"]) < train[1]
        # the poisoned rows are only in the last fold's scoring window: its out-of-sample replays fail there
        line = cut + 2  # the header is line 1, snapshot 0 line 2
        for entry in folds[-1]["top"]:
            assert entry["out_of_sample"] == {"error": f'{rec}:{line}: "b" must map venue -> symbol -> [bids, asks]'}
        for fold in folds[:-1]:
            assert all("error" not in e["out_of_sample"] for e in fold["top"])
        assert f"{rec}:{line}" in out


def test_studies_of_different_folds_are_separate(kit, spikes: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """One Optuna study per fold: what the sampler learnt in one fold's windows is not in another's study."""
    import optuna

    out_dir = tmp_path / "out"
    assert kit.main(["optimize", "-c", str(kit.study_config(tmp_path, folds=2)), "--data", str(spikes), "--trials", "3",
                 "--out", str(out_dir), "--study", "sep"]) == 0
    capsys.readouterr()
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out_dir /
                                                                                           "study.journal")))
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage))
    assert names == ["sep.fold1", "sep.fold2"]
    for name in names:
        study = optuna.load_study(study_name=name, storage=storage)
        assert len(study.trials) == 3
        fold = study.user_attrs["arbframe"]["fold"]
        assert fold["fold"] == int(name[-1]) and fold["train"][1] <= fold["test"][0]
