"""A recording that fails in the middle of a study fails the trials that reach the bad data, with the reason,
not the study; config combinations the kernel's rules refuse are pruned, not run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

BAD_ROW = 100  # of the 158 snapshots of one block


def test_a_bad_row_fails_only_the_trials_that_read_it(kit, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Snapshot 100's domestic bids end in a lone number where the second level's quantity is missing: an order of
    1,000,000 KRW (0.007 BTC) walks past the 0.005 BTC of the first level and reads it, one of 500,000 KRW does
    not. Trials of the large size fail
    with the file and line; the study still gets its N results and the report names the failures."""

    def bad_depth(i: int, row: dict) -> dict:
        if i == BAD_ROW:
            bids, asks = row["b"]["upbit"]["BTC"]
            price = bids.split()[0]
            row["b"]["upbit"]["BTC"] = [f"{price} 0.005 {int(price) - 1000}", asks]
        return row

    rec = kit.write_recording(tmp_path / "bad-depth.jsonl", kit.premium_path(blocks=1), rows=bad_depth)
    config = tmp_path / "study.yml"
    config.write_text(yaml.safe_dump({
        "arbitrage": {"symbols": ["BTC"], "directions": ["kimchi"], "cooldown_seconds": 0, "exit_threshold": 0.0,
                      "stop_loss_premium": None, "max_daily_loss_krw": None},
        "optimize": {"folds": 0, "startup_trials": 20, "space": {
            "arbitrage.entry_threshold": {"low": 0.001, "high": 0.02},
            "arbitrage.order_notional_krw": {"choices": [500000, 1000000]}}},
    }))
    out_dir = tmp_path / "out"
    status = kit.main(["optimize", "-c", str(config), "--data", str(rec), "--trials", "12", "--out", str(out_dir)])
    out, err = capsys.readouterr()
    assert status == 0, err
    report = json.loads((out_dir / "report.json").read_text())
    (fold,) = report["folds"]
    counts = fold["counts"]
    assert counts["counted"] == 12 and counts["complete"] + counts["failed"] == 12
    assert counts["failed"] >= 1 and counts["complete"] >= 1
    reason = f"{rec}:{BAD_ROW + 2}: book upbit/BTC bids: expected price/quantity pairs, got a lone"
    assert fold["failures"] and all(f["error"].startswith(reason) for f in fold["failures"])
    assert all(t["params"]["arbitrage.order_notional_krw"] == 500000 for t in fold["top"])
    assert f"trial #{fold['failures'][0]['trial']} failed: {reason}" in out
    assert reason in err  # logged as it happened
    assert "arbframe: error" not in err


def test_parameter_combinations_the_rules_refuse_are_pruned(kit, spikes: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """exit_threshold above entry_threshold breaks a kernel rule: such trials are pruned with the rule's text (they
    count as results, the sampler learns to avoid them) and never replayed."""
    config = kit.study_config(tmp_path, folds=0, startup_trials=30, space={
        "arbitrage.entry_threshold": {"low": 0.001, "high": 0.01},
        "arbitrage.exit_threshold": {"low": -0.01, "high": 0.01},
    })
    out_dir = tmp_path / "out"
    status = kit.main(["optimize", "-c", str(config), "--data", str(spikes), "--trials", "10", "--out", str(out_dir)])
    capsys.readouterr()
    assert status == 0
    import optuna

    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out_dir /
                                                                                           "study.journal")))
    trials = optuna.load_study(study_name="optimize", storage=storage).trials
    assert len(trials) == 10
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned, "the seeded sampler draws exit above entry in some of its first 10 trials"
    for t in pruned:
        assert t.params["arbitrage.exit_threshold"] > t.params["arbitrage.entry_threshold"]
        assert "arbitrage.exit_threshold" in t.user_attrs["pruned"] and "result" not in t.user_attrs
    for t in trials:
        if t.state == optuna.trial.TrialState.COMPLETE:
            assert t.params["arbitrage.exit_threshold"] <= t.params["arbitrage.entry_threshold"]
