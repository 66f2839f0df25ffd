"""The replay fast path (snapshots on which nothing can happen skip the decoder and the engine) changes no output:
every record, the summary and the chart points equal those of the full path on the same recording."""

from __future__ import annotations

import json

import pytest

import arbframe.replay.recording as recording
from arbframe.builtins.storage import MemoryStorage
from arbframe.replay.backtest import build_engine, replay
from arbframe.replay.fastpath import ReplayFastPath
from arbframe.replay.recording import BacktestDataError, RecordingReader
from arbframe.replay.synthetic import simulate_recording

CONFIGS = [
    {"arbitrage": {"symbols": ["BTC", "ETH"], "cooldown_seconds": 5}},
    {"arbitrage": {"symbols": ["BTC", "ETH"], "cooldown_seconds": 0, "entry_threshold": "0.01",
                   "exit_threshold": "0.002"}},
    {"arbitrage": {"symbols": ["BTC", "ETH"], "max_holding_seconds": 120, "stop_loss_premium": "0.005",
                   "cooldown_seconds": 0, "max_positions_per_symbol": 2}},
    {"arbitrage": {"symbols": ["ETH", "BTC"], "directions": ["kimchi"], "exit_threshold": "0.02",
                   "max_open_positions": 1}},
]


def count_fast_hits(monkeypatch) -> list[bool]:
    """Patch the fast path to record, per snapshot, whether it took the snapshot."""
    hits: list[bool] = []
    real = ReplayFastPath.tick

    def counting(self, row, reader):
        out = real(self, row, reader)
        hits.append(out is not None)
        return out

    monkeypatch.setattr(ReplayFastPath, "tick", counting)
    return hits


def _run(rec, config, interval, chart):
    reader = RecordingReader(rec)
    storage = MemoryStorage()
    engine = build_engine(reader, config, storage, seed=7, spread_log_interval_seconds=interval)
    points = [] if chart else None
    summary = replay(reader, engine, chart_points=points)
    return summary, storage, points, engine


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("interval", [60.0, 0.0])
@pytest.mark.parametrize("chart", [True, False])
def test_fast_path_matches_full_path(tmp_path, monkeypatch, config, interval, chart):
    rec = simulate_recording(tmp_path / "rec.jsonl", snapshots=800, seed=5, depth=15, excursion_prob=0.03)
    hits = count_fast_hits(monkeypatch)
    fast = _run(rec, config, interval, chart=chart)
    monkeypatch.setattr(ReplayFastPath, "tick", lambda self, row, reader: None)
    full = _run(rec, config, interval, chart=chart)
    assert fast[0] == full[0]
    for table in ("spreads", "positions", "orders", "trades", "fx_rates", "errors"):
        assert getattr(fast[1], table) == getattr(full[1], table), table
    assert fast[2] == full[2]
    assert fast[3].stats.unrealized_pnl_krw == full[3].stats.unrealized_pnl_krw
    assert fast[3]._blocked == full[3]._blocked and fast[3].ticks == full[3].ticks
    assert fast[3].last_fx == full[3].last_fx
    if interval > 0:
        assert sum(hits) > len(hits) // 2  # most snapshots take the fast path
    else:
        assert not any(hits)  # every spread recorded: the full path each time


def _late_bad(tmp_path, mutate):
    rec = simulate_recording(tmp_path / "good.jsonl", snapshots=400, seed=5, depth=15, excursion_prob=0.03)
    lines = rec.read_text(encoding="utf-8").splitlines(keepends=True)
    row = json.loads(lines[350])  # line 351: long after the fast path took over
    lines[350] = json.dumps(mutate(row), separators=(",", ":")) + "\n"
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(lines), encoding="utf-8")
    return bad


def _fx(row):
    row["fx"][0] = "-1"
    return row


def _bid(row):
    bids, asks = row["b"]["upbit"]["BTC"]
    row["b"]["upbit"]["BTC"] = ["12x " + bids, asks]
    return row


def _usdt(row):
    bids, asks = row["b"]["upbit"]["USDT"]
    row["b"]["upbit"]["USDT"] = [bids, "0x " + asks]
    return row


def _ts(row):
    row["t"] = "2026-13-01T00:00:00+00:00"
    return row


def _extra_book(row):  # a book nothing reads, malformed
    row["b"]["upbit"]["XRP"] = [1, 2]
    return row


def _usdt_swapped(row):  # as many books as usual, but the one in the USDT book's place is not read
    del row["b"]["upbit"]["USDT"]
    row["b"]["upbit"]["XRP"] = ["1 1", None]
    return row


def _side_not_text(row):
    row["b"]["binance"]["ETH"][0] = 5
    return row


def _usdt_side_not_text(row):
    row["b"]["upbit"]["USDT"][1] = None
    return row


def _entry_not_list(row):
    row["b"]["binance"]["BTC"] = "96000 1"
    return row


@pytest.mark.parametrize(("mutate", "message"), [
    (_fx, ":351: FX rate must be a positive decimal string"),
    (_bid, ":351: book upbit/BTC bids, level 1: price and quantity must be decimal numbers"),
    (_usdt, ":351: book upbit/USDT asks, level 1: price and quantity must be decimal numbers"),
    (_ts, ':351: "t" is not an ISO-8601 timestamp'),
    (_extra_book, ":351: book upbit/XRP: bids and asks must be strings"),
    (_usdt_swapped, ":351: book upbit/XRP: bids and asks must be strings"),
    (_side_not_text, ":351: book binance/ETH: bids and asks must be strings"),
    (_usdt_side_not_text, ":351: book upbit/USDT: bids and asks must be strings"),
    (_entry_not_list, ":351: book binance/BTC must be [bids, asks] or [bids, asks, ts]"),
])
def test_bad_data_after_the_fast_path_took_over_names_its_line(tmp_path, monkeypatch, mutate, message):
    hits = count_fast_hits(monkeypatch)
    reader = RecordingReader(_late_bad(tmp_path, mutate))
    engine = build_engine(reader, CONFIGS[0], MemoryStorage(), spread_log_interval_seconds=60.0)
    with pytest.raises(BacktestDataError) as info:
        replay(reader, engine)
    assert message in str(info.value)
    assert len(hits) == 350 and sum(hits[:349]) > 250 and not hits[349]  # line 351 is snapshot 350


def test_stdlib_json_and_orjson_replay_alike(tmp_path, monkeypatch):
    """The optional orjson decoder gives the same replay; a line only json reads (NaN) still replays."""
    pytest.importorskip("orjson")
    rec = simulate_recording(tmp_path / "rec.jsonl", snapshots=300, seed=5, depth=15, excursion_prob=0.03)
    lines = rec.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[100] = lines[100].rstrip("\n")[:-1] + ',"note":NaN}\n'
    rec.write_text("".join(lines), encoding="utf-8")
    fast = _run(rec, CONFIGS[0], 60.0, chart=True)
    monkeypatch.setattr(recording, "_fast_loads", lambda: json.loads)
    plain = _run(rec, CONFIGS[0], 60.0, chart=True)
    assert fast[0] == plain[0] and fast[2] == plain[2] and fast[0].snapshots == 300
    for table in ("spreads", "positions", "orders", "trades", "fx_rates", "errors"):
        assert getattr(fast[1], table) == getattr(plain[1], table), table


def test_fx_rates_hold_the_rates_spreads_and_positions_used(tmp_path):
    rec = simulate_recording(tmp_path / "rec.jsonl", snapshots=800, seed=5, depth=15, excursion_prob=0.03)
    summary, storage, _, _ = _run(rec, CONFIGS[0], 60.0, chart=False)
    logged = [fx.rate for fx in storage.fx_rates]
    assert len(logged) == len(set(fx.id for fx in storage.fx_rates))  # each rate once
    used = {s.fx_rate for s in storage.spreads}
    used |= {p.entry_fx_rate for p in storage.positions} | {p.exit_fx_rate for p in storage.positions}
    used.discard(None)
    assert storage.spreads and summary.trades > 0
    assert set(logged) == used
    assert len(logged) < summary.snapshots // 4  # not one row per snapshot


def _stamp_books(rec, out, seed=3):
    """Give books their own times, as a recording of real venues has: a book's time never goes backwards, is
    mostly a few seconds old, and now and then freezes for longer than ``max_book_age_seconds`` (30 s, a feed that
    stalls); one book keeps the snapshot's time."""
    import random
    from datetime import datetime, timedelta

    rng = random.Random(seed)
    lines = rec.read_text(encoding="utf-8").splitlines(keepends=True)
    stamped = [lines[0]]
    last: dict[tuple[str, str], datetime] = {}
    frozen: dict[tuple[str, str], datetime] = {}  # book -> time its stall ends
    for line in lines[1:]:
        row = json.loads(line)
        t = datetime.fromisoformat(row["t"])
        for venue, books in row["b"].items():
            for symbol, entry in books.items():
                key = (venue, symbol)
                if key == ("binance", "ETH"):
                    continue  # stamped with the snapshot's time
                if key in frozen and t < frozen[key]:
                    when = last[key]
                else:
                    frozen.pop(key, None)
                    when = max(last.get(key, t - timedelta(days=1)), t - timedelta(seconds=rng.uniform(0, 3)))
                    if rng.random() < 0.003:
                        frozen[key] = t + timedelta(seconds=rng.uniform(31, 40))
                last[key] = when
                entry.append(when.isoformat())
        stamped.append(json.dumps(row, separators=(",", ":")) + "\n")
    out.write_text("".join(stamped), encoding="utf-8")
    return out


@pytest.mark.parametrize("config", CONFIGS[:2])
def test_books_with_their_own_times_match_the_full_path(tmp_path, monkeypatch, config):
    rec = simulate_recording(tmp_path / "rec.jsonl", snapshots=800, seed=5, depth=15, excursion_prob=0.03)
    rec = _stamp_books(rec, tmp_path / "stamped.jsonl")
    hits = count_fast_hits(monkeypatch)
    fast = _run(rec, config, 60.0, chart=False)
    monkeypatch.setattr(ReplayFastPath, "tick", lambda self, row, reader: None)
    full = _run(rec, config, 60.0, chart=False)
    assert fast[0] == full[0] and fast[0].trades > 0
    for table in ("spreads", "positions", "orders", "trades", "fx_rates", "errors"):
        assert getattr(fast[1], table) == getattr(full[1], table), table
    assert fast[3]._blocked == full[3]._blocked and fast[3].stats.unrealized_pnl_krw == full[3].stats.unrealized_pnl_krw
    assert sum(hits) > len(hits) // 2
    assert "stale_book" in _blocks_seen(rec, config)  # stale books were met


def _blocks_seen(rec, config):
    """Every market-data block reason the engine met during a full-path replay (to show stale books were met)."""
    notes = []
    reader = RecordingReader(rec)
    engine = build_engine(reader, config, MemoryStorage(), seed=7, spread_log_interval_seconds=60.0)
    real = engine._note_data

    def spy(symbol, problem):
        notes.append(problem and problem[0])
        real(symbol, problem)

    engine._note_data = spy
    for snap in reader:
        engine.process(snap)
    return notes


def test_a_bad_book_time_after_the_fast_path_took_over_names_its_line(tmp_path):
    def bad_time(row):
        row["b"]["binance"]["ETH"].append("not a time")
        return row

    reader = RecordingReader(_late_bad(tmp_path, bad_time))
    engine = build_engine(reader, CONFIGS[0], MemoryStorage(), spread_log_interval_seconds=60.0)
    with pytest.raises(BacktestDataError) as info:
        replay(reader, engine)
    assert ":351: book binance/ETH timestamp is not an ISO-8601 timestamp: 'not a time'" in str(info.value)
