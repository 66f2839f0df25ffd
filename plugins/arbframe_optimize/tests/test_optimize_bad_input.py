"""Bad input stops before any trial with exit status 2 and one line naming it; `arbframe config validate` checks the
optimize section wherever the plugin is installed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml


def _run(kit, capsys: pytest.CaptureFixture[str], tmp_path: Path, spikes: Path, space: Any = None,
         extra: tuple[str, ...] = (), **optimize: Any) -> tuple[int, str]:
    config: dict[str, Any] = {"optimize": {**optimize}}
    if space is not None:
        config["optimize"]["space"] = space
    path = tmp_path / "study.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    status = kit.main(["optimize", "-c", str(path), "--data", str(spikes), "--trials", "2", "--out",
                   str(tmp_path / "out"), *extra])
    err = capsys.readouterr().err
    assert not (tmp_path / "out" / "study.journal").exists(), "no study may start on bad input"
    return status, err


@pytest.mark.parametrize(("space", "expected"), [
    ({"arbitrage.entry_treshold": {"low": 0.001, "high": 0.01}},
     "optimize.space.arbitrage.entry_treshold: unknown parameter path (did you mean 'arbitrage.entry_threshold'?)"),
    ({"arbitrage.entry_threshold": {"low": 0.001, "high": 20}},
     "optimize.space.arbitrage.entry_threshold: range 0.001 .. 20: high 20 is outside the schema's bounds "
     "(expected <= 10)"),
    ({"arbitrage.order_notional_krw": {"low": 0, "high": 1000000}},
     "optimize.space.arbitrage.order_notional_krw: range 0 .. 1000000: low 0 is outside the schema's bounds "
     "(expected > 0)"),
    ({"arbitrage.max_open_positions": {"low": 1.5, "high": 4}},
     "optimize.space.arbitrage.max_open_positions: low must be a whole number for this integer key, got 1.5"),
    ({"arbitrage.max_open_positions": {"choices": [1, -2]}},
     "optimize.space.arbitrage.max_open_positions: choice -2 is outside the schema's bounds (expected >= 0)"),
    ({"arbitrage.directions": {"choices": ["kimchi"]}},
     "optimize.space.arbitrage.directions: names a section or a list, not a single value"),
    ({"arbitrage": {"low": 1, "high": 2}}, "optimize.space.arbitrage: unknown parameter path"),
    ({"storage.csv.fsync": {"choices": [True, False]}},
     "optimize.space.storage.csv.fsync: a replay does not read it"),
    ({"arbitrage.domestic": {"choices": ["upbit", "bithumb"]}},
     "optimize.space.arbitrage.domestic: tuning it changes nothing: a replay takes its venues from the recording "
     "header"),
    ({"arbitrage.entry_threshold": {"low": 0.02, "high": 0.01}},
     "optimize.space.arbitrage.entry_threshold: low 0.02 must be below high 0.01"),
    ({"arbitrage.entry_threshold": {"low": 0.0, "high": 0.01, "log": True}},
     "optimize.space.arbitrage.entry_threshold: a log scale needs low > 0, got 0.0"),
    ({"arbitrage.order_notional_krw": {"low": 100000, "high": 250000, "step": 100000}},
     "optimize.space.arbitrage.order_notional_krw: high 250000 must be low 100000 plus a whole number of steps"),
    ({}, "optimize.space: empty"),
])
def test_bad_space_exits_2_naming_the_path(space: Any, expected: str, spikes: Path, tmp_path: Path, kit,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    status, err = _run(kit, capsys, tmp_path, spikes, space)
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("arbframe: error: config error: "), err
    assert expected in lines[0]


def test_config_validate_checks_the_section(kit, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    example = Path(__file__).resolve().parents[1] / "study.example.yml"  # the documented study config
    assert kit.main(["config", "validate", "-c", str(example)]) == 0
    good = tmp_path / "good.yml"
    good.write_text(yaml.safe_dump({"optimize": {"objective": "pnl_over_drawdown", "space": {
        "arbitrage.entry_threshold": {"low": 0.002, "high": 0.03, "log": True}}}}))
    assert kit.main(["config", "validate", "-c", str(good)]) == 0
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump({"optimize": {"space": {"arbitrage.entry_threshold": {"lo": 0.002, "high": 1}}}}))
    capsys.readouterr()
    assert kit.main(["config", "validate", "-c", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "optimize.space.arbitrage.entry_threshold.lo: unknown key (did you mean 'low'?)" in err
    wrong = tmp_path / "wrong.yml"
    wrong.write_text(yaml.safe_dump({"optimize": {"objective": "sharpe"}}))
    assert kit.main(["config", "validate", "-c", str(wrong)]) == 2
    assert "optimize.objective: 'sharpe' is not allowed" in capsys.readouterr().err


def test_bad_data_and_options_exit_2(kit, spikes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    space = {"arbitrage.entry_threshold": {"low": 0.001, "high": 0.01}}
    missing = tmp_path / "missing.jsonl"
    status, err = _run(kit, capsys, tmp_path, missing, space)
    assert status == 2 and f"recording not found: {missing}" in err
    not_a_recording = tmp_path / "notes.jsonl"
    not_a_recording.write_text('{"hello": 1}\n')
    status, err = _run(kit, capsys, tmp_path, not_a_recording, space)
    assert status == 2 and "notes.jsonl:1: not an arbframe recording header" in err
    status, err = _run(kit, capsys, tmp_path, spikes, space, folds=100)
    assert status == 2 and "optimize.folds: 100 is out of range" in err
    with pytest.raises(SystemExit) as exc:
        kit.main(["optimize", "--data", str(spikes), "--trials", "0"])
    assert exc.value.code == 2
    assert "--trials: must be a positive integer, got 0" in capsys.readouterr().err


def test_a_gap_that_leaves_a_window_empty_is_named(kit, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    premiums = kit.premium_path(blocks=1)
    first = kit.write_recording(tmp_path / "a.jsonl", premiums)
    later = kit.START.replace(hour=6)  # six hours later: the windows between hold nothing
    second = kit.write_recording(tmp_path / "b.jsonl", premiums, start=later)
    config = tmp_path / "study.yml"
    config.write_text(yaml.safe_dump({"optimize": {"folds": 3, "space": {
        "arbitrage.entry_threshold": {"low": 0.001, "high": 0.01}}}}))
    status = kit.main(["optimize", "-c", str(config), "--data", str(first), str(second), "--trials", "2", "--out",
                   str(tmp_path / "out")])
    assert status == 2
    assert "optimize.folds: fold 1/3's test window" in capsys.readouterr().err
