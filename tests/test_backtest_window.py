"""Replay windows: a reader restricted to [start, end) never hands a row outside it to the decoder or the engine;
preloaded recordings (several files, read once) give the same rows and the same replay as the files."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from arbframe import BacktestDataError, RecordingReader, load_config, replay_recording
from arbframe.builtins.storage import MemoryStorage
from arbframe.replay.backtest import build_engine, replay
from arbframe.replay.synthetic import simulate_recording

SIM = {"excursion_prob": 0.08, "premium_reversion": 0.05}
CONFIG = {"arbitrage": {"symbols": ["BTC"], "cooldown_seconds": 5, "entry_threshold": 0.004,
                        "exit_threshold": 0.0}}


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _times(path: Path) -> list[datetime]:
    """Each snapshot's time, read with nothing but json and datetime."""
    return [datetime.fromisoformat(json.loads(line)["t"]) for line in _lines(path)[1:]]


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulate_recording(tmp_path_factory.mktemp("rec") / "rec.jsonl", snapshots=400, symbols=["BTC"], seed=5,
                              **SIM)


def _poisoned(recording: Path, tmp_path: Path, at: list[int]) -> Path:
    """A copy whose snapshots ``at`` (0-based) keep their time but cannot be replayed (books not an object)."""
    lines = _lines(recording)
    for i in at:
        row = json.loads(lines[1 + i])
        lines[1 + i] = json.dumps({"t": row["t"], "fx": row["fx"], "b": "poison"})
    out = tmp_path / "poisoned.jsonl"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def test_file_window_is_half_open(recording: Path) -> None:
    times = _times(recording)
    start, end = times[100], times[250]
    got = [datetime.fromisoformat(row["t"]) for row in RecordingReader(recording, start=start, end=end).rows()]
    assert got == times[100:250]
    assert got[0] == start and got[-1] < end
    # open ends
    assert [s.ts for s in RecordingReader(recording, end=times[3])] == times[:3]
    assert [s.ts for s in RecordingReader(recording, start=times[-2])] == times[-2:]


def test_rows_outside_the_window_never_reach_the_decoder(recording: Path, tmp_path: Path) -> None:
    times = _times(recording)
    bad = _poisoned(recording, tmp_path, [99, 250, 399])  # just before, at the end bound, the last
    config = load_config(overrides=CONFIG)
    inside = replay_recording(config, bad, start=times[100], end=times[250])
    assert inside.snapshots == 150
    assert inside.first_ts == times[100].isoformat() and inside.last_ts == times[249].isoformat()
    preloaded = RecordingReader.preload([bad])
    again = replay_recording(config, preloaded, start=times[100], end=times[250])
    assert again == inside
    # one step wider on either side reaches a poisoned row, named by file and line (header is line 1)
    with pytest.raises(BacktestDataError, match=r"poisoned\.jsonl:101: \"b\" must map"):
        replay_recording(config, preloaded, start=times[99], end=times[250])
    with pytest.raises(BacktestDataError, match=r"poisoned\.jsonl:252: \"b\" must map"):
        replay_recording(config, bad, start=times[100], end=times[251])


def test_window_replay_equals_the_backtest_of_a_file_cut_to_the_window(recording: Path, tmp_path: Path) -> None:
    times = _times(recording)
    lines = _lines(recording)
    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join([lines[0], *lines[1 + 120:1 + 380]]) + "\n", encoding="utf-8")
    config = load_config(overrides=CONFIG)
    reader = RecordingReader(cut)
    expected = replay(reader, build_engine(reader, config, MemoryStorage(), seed=42))
    assert expected.trades > 0, "the window must hold trades for the comparison to mean something"
    got = replay_recording(config, recording, start=times[120], end=times[380])
    assert got == expected
    assert replay_recording(config, RecordingReader.preload(recording), start=times[120], end=times[380]) == expected


def test_reader_window_and_call_window_intersect(recording: Path) -> None:
    times = _times(recording)
    config = load_config(overrides=CONFIG)
    reader = RecordingReader.preload(recording).window(times[50], times[200])
    got = replay_recording(config, reader, start=times[100], end=times[300])
    assert (got.snapshots, got.first_ts, got.last_ts) == (100, times[100].isoformat(), times[199].isoformat())
    assert replay_recording(config, reader, start=times[250]).snapshots == 0
    span = reader.span()
    assert span is not None and (span.first, span.last, span.snapshots) == (times[50], times[199], 150)
    file_span = RecordingReader(recording, start=times[50], end=times[200]).span()
    assert file_span == span


def test_preload_orders_files_by_time_and_names_each_file(recording: Path, tmp_path: Path) -> None:
    lines = _lines(recording)
    times = _times(recording)
    first, second = tmp_path / "b-first.jsonl", tmp_path / "a-second.jsonl"
    first.write_text("\n".join([lines[0], *lines[1:201]]) + "\n", encoding="utf-8")
    rows = lines[201:]
    rows[9] = json.dumps({**json.loads(rows[9]), "b": "poison"})  # snapshot 209, line 11 of the second file
    second.write_text("\n".join([lines[0], *rows]) + "\n", encoding="utf-8")
    reader = RecordingReader.preload([second, first])  # given out of order
    assert [s.ts for s in reader.window(end=times[209])] == times[:209]
    assert [datetime.fromisoformat(r["t"]) for r in reader.window(times[210]).rows()] == times[210:]
    with pytest.raises(BacktestDataError, match=r"a-second\.jsonl:11: \"b\" must map"):
        list(reader.window(times[195]))
    assert reader.span() == (times[0], times[-1], 400)


def test_preload_refuses_recordings_that_disagree(recording: Path, tmp_path: Path) -> None:
    lines = _lines(recording)
    header = json.loads(lines[0])
    header["fees"] = {k: "0.01" for k in header["fees"]}
    other = tmp_path / "other.jsonl"
    other.write_text("\n".join([json.dumps(header), lines[-1]]) + "\n", encoding="utf-8")
    with pytest.raises(BacktestDataError, match=r"other\.jsonl:1: the header's 'fees' differs"):
        RecordingReader.preload([recording, other])


def test_unordered_rows_are_filtered_by_time(recording: Path, tmp_path: Path) -> None:
    lines = _lines(recording)
    times = _times(recording)
    shuffled = tmp_path / "shuffled.jsonl"
    body = lines[1:]
    body[10], body[300] = body[300], body[10]  # the clock jumps back once
    shuffled.write_text("\n".join([lines[0], *body]) + "\n", encoding="utf-8")
    reader = RecordingReader.preload(shuffled)
    got = [datetime.fromisoformat(r["t"]) for r in reader.window(times[5], times[20]).rows()]
    assert got == [*times[5:10], *times[11:20], times[10]]  # in file order, the late row included
    via_file = [datetime.fromisoformat(r["t"]) for r in RecordingReader(shuffled, start=times[5], end=times[20]).rows()]
    assert via_file == got


def test_window_bounds_are_checked(recording: Path) -> None:
    naive = datetime(2026, 1, 1)
    with pytest.raises(ValueError, match="aware datetime"):
        RecordingReader(recording, start=naive)
    t = datetime(2026, 1, 1, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match=r"ends .* before it starts"):
        RecordingReader.preload(recording).window(t, t - timedelta(seconds=1))


def test_a_row_without_a_valid_time_fails_in_a_window(recording: Path, tmp_path: Path) -> None:
    lines = _lines(recording)
    lines[5] = json.dumps({**json.loads(lines[5]), "t": "yesterday"})
    bad = tmp_path / "badtime.jsonl"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    times = _times(recording)
    with pytest.raises(BacktestDataError, match=r"badtime\.jsonl:6: \"t\" is not an ISO-8601 timestamp"):
        list(RecordingReader(bad, start=times[100]).rows())
    with pytest.raises(BacktestDataError, match=r"badtime\.jsonl:6: \"t\" is not an ISO-8601"):
        RecordingReader.preload(bad)
