"""The search: it finds the threshold a hand-built recording makes clearly best, reports it in and out of sample,
and writes a best.yml that `arbframe config validate` and `arbframe run -c best.yml` accept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

FX, FOREIGN_PRICE, ROUND_TRIP = 1400, 100_000, 0.003  # the spikes recording's (conftest.py)
QTY = 0.007  # 1,000,000 KRW at the entry price 142.8M KRW/BTC, on the foreign venue's 0.00001 step
ENTRY, EXIT = 0.020, -0.001  # kimchi premium at which the best trades open and close


def _trade_pnl() -> float:
    """One trade of the optimum, from the books alone: sell 0.007 BTC on the domestic venue at the bid of premium
    2.0 %, buy it abroad at the ask; buy it back at the domestic ask of premium -0.1 % (bid + 500 KRW), sell abroad
    at the bid; 0.05 % (domestic) and 0.1 % (foreign) fees on every leg."""
    krw = FOREIGN_PRICE * FX
    d_sell, d_buy = QTY * krw * (1 + ENTRY), QTY * (krw * (1 + EXIT) + 500)
    f_buy, f_sell = QTY * (FOREIGN_PRICE + 0.01), QTY * FOREIGN_PRICE
    domestic = d_sell - d_buy - 0.0005 * (d_sell + d_buy)
    foreign = (f_sell - f_buy - 0.001 * (f_sell + f_buy)) * FX
    return domestic + foreign


def optimize(kit, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = kit.main(["optimize", *args])
    out, err = capsys.readouterr()
    return status, out, err


def test_search_finds_the_known_optimum(spikes: Path, tmp_path: Path, kit, capsys: pytest.CaptureFixture[str]) -> None:
    """Each training window holds one spike to 1 %, three to 2 % and one to 3 % (net of the 0.3 % round trip:
    0.7 %, 1.7 %, 2.7 %), each falling back to -0.1 % where positions close. A threshold t opens a position on
    every spike whose net peak reaches t, at a premium near t + 0.3 %, so the PnL is about t x (spikes reaching t):
    3.4 % of the notional just below 1.7 % against 2.7 % just below 2.7 % and 2.4 % just below 0.7 %."""
    config = kit.study_config(tmp_path, folds=3)
    out_dir = tmp_path / "out"
    status, out, err = optimize(kit, capsys, "-c", str(config), "--data", str(spikes), "--trials", "30",
                                "--out", str(out_dir))
    assert status == 0, err
    best = yaml.safe_load((out_dir / "best.yml").read_text())
    threshold = best["arbitrage"]["entry_threshold"]
    # entered at 2.0 % (net 1.7 %) rather than one 0.1 % step of the ramp lower: 1.6 % < t <= 1.7 %
    assert 0.016 < threshold <= 0.020 - ROUND_TRIP, threshold
    report = json.loads((out_dir / "report.json").read_text())
    expected = 4 * _trade_pnl()  # three middle spikes and the high one, each entered at 2.0 %
    for fold in report["folds"]:
        top = fold["top"][0]
        assert top["in_sample"]["trades"] == 4 and top["in_sample"]["feasible"]
        assert top["in_sample"]["pnl"] == pytest.approx(expected, rel=1e-3)
        # the windows repeat the same block: the best parameters earn the same on the next window
        assert top["out_of_sample"]["pnl"] == pytest.approx(expected, rel=1e-3)
        assert fold["counts"]["counted"] == fold["counts"]["complete"] == 30
    # every trial outside that interval earned less; the search tried both sides of it
    history = report["folds"][0]["history"]
    best_value = max(h["value"] for h in history)
    outside = [h for h in history if not 0.016 < h["params"]["arbitrage.entry_threshold"] <= 0.017]
    assert any(h["params"]["arbitrage.entry_threshold"] > 0.017 for h in outside)
    assert any(h["params"]["arbitrage.entry_threshold"] < 0.007 for h in outside)
    assert all(h["value"] < best_value for h in outside)
    # the report names both sides and the files
    assert "in sample (training window) vs out of sample" in out and "best trials, fold 3/3" in out
    for name in ("best.yml", "history.png", "equity.png", "report.txt", "report.json"):
        assert (out_dir / name).is_file(), name
    assert (out_dir / "history.png").read_bytes()[:4] == b"\x89PNG"
    assert (out_dir / "equity.png").read_bytes()[:4] == b"\x89PNG"
    # progress while it ran: trials done / N, the best so far, an ETA
    progress = [line for line in err.splitlines() if line.startswith("[OPTIMIZE] ")]
    assert progress and progress[-1].startswith("[OPTIMIZE] 90/90 trials") and "best " in progress[-1]
    assert any("ETA" in line for line in progress) and progress[-1].endswith("done")
    # the engine's per-position lines stay out of a search's output
    assert "[BOT] OPEN" not in err


def test_best_overlay_is_a_config_the_service_accepts(spikes: Path, tmp_path: Path, kit,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "out"
    status, _, err = optimize(kit, capsys, "-c", str(kit.study_config(tmp_path, folds=0)), "--data", str(spikes),
                              "--trials", "12", "--out", str(out_dir))
    assert status == 0, err
    best = out_dir / "best.yml"
    assert kit.main(["config", "validate", "-c", str(best)]) == 0
    assert "config OK" in capsys.readouterr().out
    backtest = tmp_path / "bt"
    assert kit.main(["run", "-c", str(best), "--mode", "backtest", "--data", str(spikes), "--output", str(backtest),
                 "-q"]) == 0
    capsys.readouterr()
    summary = json.loads((backtest / "summary.json").read_text())
    report = json.loads((out_dir / "report.json").read_text())
    # folds 0: the study's window is the whole recording, so the service's backtest replays what the trial did
    assert summary["trades"] == report["folds"][0]["top"][0]["in_sample"]["trades"]
    assert float(summary["realized_pnl_krw"]) == pytest.approx(report["folds"][0]["top"][0]["in_sample"]
                                                               ["realized_pnl"], abs=1e-6)


def test_a_finished_study_is_reported_again_without_new_trials(spikes: Path, tmp_path: Path, kit,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    args = ["-c", str(kit.study_config(tmp_path, folds=1)), "--data", str(spikes), "--trials", "6", "--out",
            str(tmp_path / "out")]
    assert optimize(kit, capsys, *args)[0] == 0
    first = json.loads((tmp_path / "out" / "report.json").read_text())
    assert optimize(kit, capsys, *args)[0] == 0
    again = json.loads((tmp_path / "out" / "report.json").read_text())
    assert again["folds"] == first["folds"]
    # more trials extend the same study
    status, _, _ = optimize(kit, capsys, *args[:-4], "--trials", "9", "--out", str(tmp_path / "out"))
    assert status == 0
    assert json.loads((tmp_path / "out" / "report.json").read_text())["folds"][0]["counts"]["counted"] == 9


def test_no_feasible_trial_writes_no_overlay(spikes: Path, tmp_path: Path, kit,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "out"
    status, out, _ = optimize(kit, capsys, "-c", str(kit.study_config(tmp_path, folds=0, min_trades=1000)), "--data",
                              str(spikes), "--trials", "4", "--out", str(out_dir))
    assert status == 1
    assert "no trial of whole span met the constraints" in out and not (out_dir / "best.yml").exists()
