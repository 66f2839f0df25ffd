"""Record and replay: format round trip, deterministic replay, clear errors for bad recorded data."""

from __future__ import annotations

import filecmp
import gzip
import itertools
import json
import os
import subprocess
import sys
from decimal import Decimal as D
from importlib import metadata
from pathlib import Path

import pytest

from arbframe import Side
from arbframe.builtins.storage import MemoryStorage
from arbframe.market.simulation import SimulatedMarket
from arbframe.replay.backtest import build_engine, replay
from arbframe.replay.recording import BacktestDataError, LazyLevels, RecordingReader, encode_snapshot
from arbframe.replay.synthetic import simulate_recording

SIM = {"excursion_prob": 0.08, "premium_reversion": 0.05}
CONFIG = {
    "arbitrage": {"symbols": ["BTC", "ETH"], "cooldown_seconds": 5},
    "backtest": {"spread_log_interval_seconds": 10},
}


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    return env


def arbframe(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "arbframe", *args], cwd=tmp_path, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=120)


def test_encode_decode_round_trip(tmp_path):
    market = SimulatedMarket(["BTC"], seed=3)
    market.step()
    books = {(v, "BTC"): market.order_book(v, "BTC") for v in ("upbit", "binance")}
    from arbframe.trading.engine import MarketSnapshot

    snap = MarketSnapshot(market.now, books, market.fx_rate(), True)
    path = simulate_recording(tmp_path / "r.jsonl", snapshots=1, symbols=["BTC"], seed=3)
    reader = RecordingReader(path)
    decoded = reader.decode(json.loads(encode_snapshot(snap)))
    assert decoded.ts == snap.ts and decoded.fx == snap.fx
    for key, book in books.items():
        got = decoded.books[key]
        assert got.ts == book.ts and got.simulated
        assert got.bids == book.bids and got.asks == book.asks  # LazyLevels compare equal to tuples
        assert tuple(got.bids[2:5]) == book.bids[2:5] and len(got.asks) == len(book.asks)
        for qty in (D("0.001"), D("0.5"), D("3"), D("1000")):
            for side in Side:
                assert got.vwap(side, qty) == book.vwap(side, qty)
                levels = got.asks if side is Side.BUY else got.bids
                assert levels.vwap(qty) == book.vwap(side, qty)
    reader.close()


def test_replay_is_deterministic_and_summarized(tmp_path):
    rec = simulate_recording(tmp_path / "rec.jsonl.gz", snapshots=600, seed=11, **SIM)

    def run(out: Path):
        reader = RecordingReader(rec)
        storage = MemoryStorage()
        engine = build_engine(reader, CONFIG, storage, seed=42)
        return replay(reader, engine), storage

    (s1, st1), (s2, st2) = run(tmp_path / "a"), run(tmp_path / "b")
    assert s1 == s2
    assert st1.positions == st2.positions and st1.orders == st2.orders and st1.spreads == st2.spreads
    assert s1.snapshots == 600 and s1.trades >= 3 and s1.simulated
    assert D(s1.max_drawdown_krw) >= 0
    kim = s1.premium_range["kimchi"]
    assert D(kim["min"]) < D("0.02") < D(kim["max"])
    closed = [p for p in st1.positions if not p.is_open]
    assert D(s1.realized_pnl_krw) == sum((p.realized_pnl_krw for p in closed), D(0)).quantize(D("0.0001"))
    assert s1.win_rate == pytest.approx(sum(p.realized_pnl_krw > 0 for p in closed) / len(closed))
    # timestamps come from the data, spreads at most every 10 s of market time
    assert all(p.opened_at.year == 2026 and p.opened_at.month == 1 for p in st1.positions)
    stamps = sorted({s.ts for s in st1.spreads})
    assert all((b - a).total_seconds() >= 10 for a, b in itertools.pairwise(stamps))


def _plugins_installed() -> bool:
    return "csv" in {ep.name for ep in metadata.entry_points(group="arbframe.storage")}


@pytest.mark.slow
def test_cli_backtest_two_runs_identical_files(tmp_path):
    if not _plugins_installed():
        pytest.skip("CSV storage plugin not installed (run `make install`)")
    rec = simulate_recording(tmp_path / "rec.jsonl.gz", snapshots=500, seed=11, **SIM)
    cfg = tmp_path / "bt.yml"
    cfg.write_text(json.dumps(CONFIG), encoding="utf-8")
    outs = []
    for name in ("one", "two"):
        proc = arbframe(tmp_path, "run", "--mode", "backtest", "--data", str(rec), "--output", name, "-c", str(cfg))
        assert proc.returncode == 0, proc.stderr
        assert "[BACKTEST] summary [simulated data]" in proc.stdout
        assert "trades (closed positions)" in proc.stdout and "max drawdown (KRW)" in proc.stdout
        outs.append(tmp_path / name)
    files = sorted(p.name for p in outs[0].iterdir())
    assert {"spreads.csv", "positions.csv", "orders.csv", "trades.csv", "fx_rates.csv", "summary.json"} <= set(files)
    match, mismatch, errors = filecmp.cmpfiles(outs[0], outs[1], files, shallow=False)
    assert not mismatch and not errors and len(match) == len(files)
    summary = json.loads((outs[0] / "summary.json").read_text())
    assert summary["snapshots"] == 500 and summary["trades"] >= 1
    # a third run into a used directory refuses, --force replaces
    proc = arbframe(tmp_path, "run", "--mode", "backtest", "--data", str(rec), "--output", "one", "-c", str(cfg))
    assert proc.returncode == 2 and "--force" in proc.stderr
    proc = arbframe(tmp_path, "run", "--mode", "backtest", "--data", str(rec), "--output", "one", "-c", str(cfg),
                    "--force")
    assert proc.returncode == 0, proc.stderr
    assert filecmp.cmp(outs[0] / "positions.csv", outs[1] / "positions.csv", shallow=False)


@pytest.mark.slow
def test_cli_record_then_replay(tmp_path):
    if not _plugins_installed():
        pytest.skip("plugins not installed (run `make install`)")
    proc = arbframe(tmp_path, "record", "--mock", "--interval", "0.05", "--max-iterations", "3", "-o", "r.jsonl.gz")
    assert proc.returncode == 0, proc.stderr
    assert "[RECORD] done: 3 snapshots" in proc.stderr
    with gzip.open(tmp_path / "r.jsonl.gz", "rt", encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    assert len(lines) == 4
    header = json.loads(lines[0])
    assert header["arbframe_recording"] == 1 and header["simulated"] is True
    assert header["domestic"] == "upbit" and set(header["rules"]) == {"upbit", "binance"}
    snap = json.loads(lines[1])
    assert set(snap["b"]["upbit"]) == {"BTC", "ETH", "USDT"}
    proc = arbframe(tmp_path, "run", "--mode", "backtest", "--data", "r.jsonl.gz", "--output", "bt")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "bt" / "summary.json").read_text())["snapshots"] == 3


def _bad(tmp_path: Path, mutate) -> Path:
    rec = simulate_recording(tmp_path / "good.jsonl", snapshots=3, symbols=["BTC"], seed=1)
    lines = rec.read_text(encoding="utf-8").splitlines(keepends=True)
    lines = mutate(lines)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(lines), encoding="utf-8")
    return bad


def _replay_error(path: Path) -> str:
    reader = RecordingReader(path)
    engine = build_engine(reader, {"arbitrage": {"symbols": ["BTC"]}}, MemoryStorage())
    with pytest.raises(BacktestDataError) as info:
        replay(reader, engine)
    return str(info.value)


def test_truncated_line_names_the_line(tmp_path):
    bad = _bad(tmp_path, lambda ls: [*ls[:3], ls[3][: len(ls[3]) // 2]])
    message = _replay_error(bad)
    assert message.startswith(f"{bad}:4: not valid JSON (truncated line?)")


def test_wrong_types_name_the_line(tmp_path):
    def wrong_ts(ls):
        row = json.loads(ls[2])
        row["t"] = 12345
        return [ls[0], ls[1], json.dumps(row) + "\n", ls[3]]

    message = _replay_error(_bad(tmp_path, wrong_ts))
    assert f"{tmp_path / 'bad.jsonl'}:3: \"t\" must be an ISO-8601 timestamp string" in message

    def bad_price(ls):
        row = json.loads(ls[1])
        bids, asks = row["b"]["upbit"]["BTC"]
        row["b"]["upbit"]["BTC"] = ["abc 1 " + bids, asks]
        return [ls[0], json.dumps(row) + "\n", *ls[2:]]

    message = _replay_error(_bad(tmp_path, bad_price))
    assert ":2: book upbit/BTC bids, level 1: price and quantity must be decimal numbers" in message

    def list_books(ls):
        row = json.loads(ls[1])
        row["b"]["binance"]["BTC"] = [[1, 2], [3, 4]]
        return [ls[0], json.dumps(row) + "\n", *ls[2:]]

    assert ":2: book binance/BTC: bids and asks must be strings" in _replay_error(_bad(tmp_path, list_books))

    def bad_fx(ls):
        row = json.loads(ls[3])
        row["fx"] = ["-5", "static", row["t"], "x"]
        return [*ls[:3], json.dumps(row) + "\n"]

    assert ":4: FX rate must be a positive decimal string" in _replay_error(_bad(tmp_path, bad_fx))

    def not_object(ls):
        return [ls[0], "[1, 2, 3]\n", *ls[2:]]

    assert ":2: a snapshot must be a JSON object" in _replay_error(_bad(tmp_path, not_object))


def test_bad_header_and_missing_file(tmp_path):
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"hello": 1}\n', encoding="utf-8")
    with pytest.raises(BacktestDataError, match=r"x.jsonl:1: not an arbframe recording header"):
        RecordingReader(bad)
    with pytest.raises(BacktestDataError, match="recording not found"):
        RecordingReader(tmp_path / "missing.jsonl")


@pytest.mark.slow
def test_cli_bad_data_exit_status_and_message(tmp_path):
    if not _plugins_installed():
        pytest.skip("plugins not installed (run `make install`)")
    bad = _bad(tmp_path, lambda ls: [*ls[:3], ls[3][:40]])
    proc = arbframe(tmp_path, "run", "--mode", "backtest", "--data", str(bad), "--output", "o")
    assert proc.returncode == 2
    assert "bad.jsonl:4: not valid JSON (truncated line?)" in proc.stderr


def test_lazy_levels_errors_and_sequence_behaviour():
    levels = LazyLevels("10 1 9 2", ("f", 1, "v", "S", "bids"))
    assert len(levels) == 2 and bool(levels) and levels[-1].price == D(9)
    assert levels.vwap(D(2)) == D(19) / 2 and levels.vwap(D(4)) is None
    with pytest.raises(IndexError):
        levels[2]
    assert not LazyLevels("", ("f", 1, "v", "S", "bids"))
    with pytest.raises(BacktestDataError, match="odd count"):
        len(LazyLevels("10 1 9", ("f", 1, "v", "S", "bids")))
    with pytest.raises(BacktestDataError, match="f:1: book v/S bids, level 2"):
        list(LazyLevels("10 1 9 x2", ("f", 1, "v", "S", "bids")))


def test_chart_is_optional(tmp_path, monkeypatch):
    from datetime import datetime, timezone

    from arbframe.replay.charts import write_chart

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the plot extra were not installed
    points = [(datetime(2026, 1, 1, tzinfo=timezone.utc), 0.02, 0.0)]
    assert write_chart(points, tmp_path / "c.png") is False
    assert not (tmp_path / "c.png").exists()


def test_lazy_levels_best_level_parsed_at_once_bad_values_still_reported_when_read():
    good = LazyLevels("10 1 9 2", ("f", 1, "v", "S", "bids"))
    assert good.top_price() == D(10) and good.vwap(D("0.5")) == D(10) and good.vwap(D(0)) is None
    for packed, message in (("abc 1 9 2", "level 1: price and quantity must be decimal numbers"),
                            ("10 NaN", "level 1: price and quantity must be decimal numbers"),
                            ("10", "got a lone '10'")):
        levels = LazyLevels(packed, ("f", 3, "v", "S", "asks"))  # no error until the side is read
        with pytest.raises(BacktestDataError, match=f"f:3: book v/S asks.*{message}"):
            levels.top_price()
    # well-formed but not positive: no error, the market-data check blocks the symbol for the tick
    for packed in ("10 -1", "10 1 0 2", "10 1 9 0.000"):
        levels = LazyLevels(packed, ("f", 3, "v", "S", "asks"))
        assert levels.has_nonpositive() and levels.top_price() is not None
    assert not LazyLevels("10 1 9 0.5 8 .5", ("f", 3, "v", "S", "asks")).has_nonpositive()


def test_order_size_cache_keeps_the_exact_spelling():
    from arbframe.trading.strategy import Strategy, StrategyConfig

    strategy = Strategy(StrategyConfig(order_notional_krw=D("1000000")))
    step = D("0.01")
    plain = strategy.order_qty(D("100"), step)
    assert plain == D("10000") and str(plain) == str((D("1000000") / D("100") / step).to_integral_value() * step)
    spelled = strategy.order_qty(D("1.00E+2"), step)  # equal value, other exponent: computed, not the cached text
    expected = (D("1000000") / D("1.00E+2") / step).to_integral_value() * step
    assert str(spelled) == str(expected)
    assert strategy.order_qty(D("100"), step) is plain


def test_a_line_that_is_not_utf8_names_the_line(tmp_path):
    rec = simulate_recording(tmp_path / "good.jsonl", snapshots=3, symbols=["BTC"], seed=1)
    lines = rec.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2][:10] + b"\xff\xfe" + lines[2][10:]
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"".join(lines))
    assert _replay_error(bad) == f"{bad}:3: not UTF-8 text (byte 11 of the line)"
