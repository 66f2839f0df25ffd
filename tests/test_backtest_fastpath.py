"""The replay fast path (snapshots on which nothing can happen skip the decoder and the engine) changes no output:
every record, the summary and the chart points equal those of the full path on the same recording."""

from __future__ import annotations

import pytest

import arbframe.backtest as backtest
from arbframe.backtest import RecordingReader, build_engine, replay, simulate_recording
from arbframe.engine import MemoryStorage

CONFIGS = [
    {"arbitrage": {"symbols": ["BTC", "ETH"], "cooldown_seconds": 5}},
    {"arbitrage": {"symbols": ["BTC", "ETH"], "cooldown_seconds": 0, "entry_threshold": "0.01",
                   "exit_threshold": "0.002"}},
    {"arbitrage": {"symbols": ["BTC", "ETH"], "max_holding_seconds": 120, "stop_loss_premium": "0.005",
                   "cooldown_seconds": 0, "max_positions_per_symbol": 2}},
    {"arbitrage": {"symbols": ["ETH", "BTC"], "directions": ["kimchi"], "exit_threshold": "0.02",
                   "max_open_positions": 1}},
]


def _run(rec, config, interval, chart):
    reader = RecordingReader(rec)
    storage = MemoryStorage()
    engine = build_engine(reader, config, storage, seed=7, spread_log_interval_seconds=interval)
    points = [] if chart else None
    summary = replay(reader, engine, chart_points=points)
    return summary, storage, points, engine


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("interval", [60.0, 0.0])
def test_fast_path_matches_full_path(tmp_path, monkeypatch, config, interval):
    rec = simulate_recording(tmp_path / "rec.jsonl", snapshots=800, seed=5, depth=15, excursion_prob=0.03)
    hits = []
    real = backtest._fast_tick

    def counting(*args):
        out = real(*args)
        hits.append(out is not None)
        return out

    monkeypatch.setattr(backtest, "_fast_tick", counting)
    fast = _run(rec, config, interval, chart=True)
    monkeypatch.setattr(backtest, "_fast_tick", lambda *args: None)
    full = _run(rec, config, interval, chart=True)
    assert fast[0] == full[0]
    for table in ("spreads", "positions", "orders", "trades", "fx_rates", "errors"):
        assert getattr(fast[1], table) == getattr(full[1], table), table
    assert fast[2] == full[2]
    assert fast[3].stats.unrealized_pnl_krw == full[3].stats.unrealized_pnl_krw
    assert fast[3]._blocked == full[3]._blocked and fast[3].ticks == full[3].ticks
    if interval > 0:
        assert sum(hits) > len(hits) // 2  # most snapshots take the fast path
    else:
        assert not any(hits)  # every spread recorded: the full path each time
