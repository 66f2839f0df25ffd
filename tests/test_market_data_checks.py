"""Market data is checked before it is traded (one check for live, paper and replay): one test per blocked-data
reason, the thin-book close, the stop-loss cooldown, and replay's split between malformed (stop) and untradeable
(block) data."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry

from arbframe import FxRate, OrderBook
from arbframe.builtins.storage import MemoryStorage
from arbframe.replay.backtest import build_engine, replay
from arbframe.replay.recording import BacktestDataError, RecordingReader
from arbframe.replay.synthetic import simulate_recording
from arbframe.trading.statistics import TradingMetrics
from tests.test_accounting_model import ENTRY_BOOKS, EXIT_BOOKS, T0, hand_engine, snap

D = Decimal


def blocked_count(metrics: TradingMetrics, reason: str) -> float:
    return metrics.data_blocked.labels(symbol="BTC", reason=reason)._value.get()


def with_books(books: dict, ts, rate: str = "1400", book_ts: dict | None = None, fx_ts=None) -> object:
    s = snap(books, ts, rate)
    if book_ts:
        fixed = {k: OrderBook(b.exchange, b.symbol, b.bids, b.asks, book_ts.get(k[0], b.ts))
                 for k, b in s.books.items()}
        s = type(s)(s.ts, fixed, s.fx)
    if fx_ts is not None:
        s = type(s)(s.ts, s.books, FxRate("fx-old", fx_ts, s.fx.rate, "static"))
    return s


def edited(books: dict, venue: str, side: int, levels: list[tuple[str, str]]) -> dict:
    out = {v: (list(b), list(a)) for v, (b, a) in books.items()}
    out[venue][side][:] = levels
    return out


CROSSED = edited(ENTRY_BOOKS, "upbit", 1, [("139950000", "1")])  # best ask below the best bid
LOCKED = edited(ENTRY_BOOKS, "binance", 0, [("96000", "1")])  # best bid equal to the best ask
BAD_LEVEL = edited(ENTRY_BOOKS, "binance", 1, [("96000", "0.002"), ("96010", "0"), ("96020", "1")])


@pytest.mark.parametrize(("reason", "make"), [
    ("crossed_book", lambda ts: with_books(CROSSED, ts)),
    ("locked_book", lambda ts: with_books(LOCKED, ts)),
    ("bad_level", lambda ts: with_books(BAD_LEVEL, ts)),
    ("stale_book", lambda ts: with_books(ENTRY_BOOKS, ts + timedelta(seconds=30), book_ts={"upbit": T0})),
    ("book_time_backwards", lambda ts: with_books(ENTRY_BOOKS, ts, book_ts={"binance": T0 - timedelta(seconds=1)})),
    ("fx_time_backwards", lambda ts: with_books(ENTRY_BOOKS, ts, fx_ts=T0 - timedelta(seconds=1))),
])
def test_each_reason_blocks_the_symbol_logs_once_and_counts(caplog, reason, make):
    engine = hand_engine()
    engine.cfg = engine.cfg.__class__(**{**engine.cfg.__dict__, "max_book_age_seconds": 30.0})
    engine.guard.max_book_age = 30.0
    engine.metrics = metrics = TradingMetrics.get(CollectorRegistry())
    # a first good tick sets the newest times seen (the entry signal is there, but a position is not wanted yet)
    engine.strategy.cfg = engine.cfg.__class__(**{**engine.cfg.__dict__, "entry_threshold": D("0.5")})
    first = engine.process(with_books(ENTRY_BOOKS, T0))
    assert first.quotes and not first.opened
    engine.strategy.cfg = engine.cfg  # now an entry would open, were the data good
    caplog.set_level(logging.INFO, logger="arbframe.engine")
    for i in (1, 2, 3):
        result = engine.process(make(T0 + timedelta(seconds=i)))
        assert not result.quotes and not result.opened and not result.spreads  # never traded on
    lines = [r.getMessage() for r in caplog.records if "blocked for trading" in r.getMessage()]
    assert len(lines) == 1 and f"BTC blocked for trading ({reason})" in lines[0]  # once per change
    assert blocked_count(metrics, reason) == 3
    assert not engine.positions
    # good data again: one line, and the entry opens
    good = engine.process(with_books(ENTRY_BOOKS, T0 + timedelta(seconds=60)))
    assert good.opened
    assert sum("usable again" in r.getMessage() for r in caplog.records) == 1


def test_an_open_position_is_not_closed_on_blocked_data_and_keeps_its_mark():
    engine = hand_engine()
    engine.process(with_books(ENTRY_BOOKS, T0))
    assert len(engine.positions) == 1
    mark = engine.stats.unrealized_pnl_krw
    result = engine.process(with_books(edited(EXIT_BOOKS, "upbit", 1, [("134800000", "1")]), T0 + timedelta(seconds=5)))
    assert not result.closed and engine.positions  # the exit signal on a crossed book is not taken
    assert engine.stats.unrealized_pnl_krw == mark


def test_a_timeout_due_on_blocked_data_waits_for_usable_data_with_one_line(caplog):
    """Blocked data is never traded on, a close included: a position past max_holding_seconds whose book is stale
    stays open (one line says why), keeps its last mark, and closes (timeout) on the first tick with usable data."""
    engine = hand_engine()
    cfg = engine.cfg.__class__(**{**engine.cfg.__dict__, "max_holding_seconds": 60.0, "max_book_age_seconds": 30.0})
    engine.cfg = engine.strategy.cfg = cfg
    engine.guard.max_book_age = 30.0
    engine.process(with_books(ENTRY_BOOKS, T0))
    (position,) = engine.positions.values()
    engine.process(with_books(ENTRY_BOOKS, T0 + timedelta(seconds=30)))  # marked, not due yet
    mark = engine.stats.unrealized_pnl_krw
    caplog.set_level(logging.INFO, logger="arbframe.engine")
    for i in (61, 62, 63):  # past the timeout, the Upbit book last updated at 30 s: stale
        result = engine.process(with_books(ENTRY_BOOKS, T0 + timedelta(seconds=i),
                                          book_ts={"upbit": T0 + timedelta(seconds=30)}))
        assert not result.closed and engine.positions and engine.stats.unrealized_pnl_krw == mark
    waits = [r for r in caplog.records if "is due to close" in r.getMessage()]
    assert len(waits) == 1 and waits[0].levelname == "WARNING"
    assert (f"BTC position {position.id} is due to close (timeout, held 61s) but its market data is blocked "
            "(stale_book)") in waits[0].getMessage()
    assert sum("BTC blocked for trading (stale_book)" in r.getMessage() for r in caplog.records) == 1
    result = engine.process(with_books(ENTRY_BOOKS, T0 + timedelta(seconds=64)))  # a fresh book: the timeout closes
    assert [p.close_reason for p in result.closed] == ["timeout"] and not engine.positions
    assert sum("is due to close" in r.getMessage() for r in caplog.records) == 1


def test_thin_book_marks_depth_plus_penalty_and_the_timeout_still_fires():
    engine = hand_engine()
    engine.cfg = engine.cfg.__class__(**{**engine.cfg.__dict__, "max_holding_seconds": 60.0})
    engine.strategy.cfg = engine.cfg
    storage = engine.storage
    engine.process(with_books(ENTRY_BOOKS, T0))
    (position,) = engine.positions.values()
    q = position.qty
    # Upbit asks hold 0.002 of the 0.0071 a close must buy; everything else is deep and the premium is high
    thin = edited(ENTRY_BOOKS, "upbit", 1, [("140100000", "0.002")])
    result = engine.process(with_books(thin, T0 + timedelta(seconds=30)))
    assert not result.closed
    # the mark by hand: the close buys 0.002 at 140,100,000 and the rest at that price + 5 %
    buy_price = (D("0.002") * D("140100000") + (q - D("0.002")) * D("140100000") * D("1.05")) / q
    sell_price = D("95990")  # Binance bids are deep
    mark = (D("140000000") + D("140100000")) / 2
    entry = engine._changes[position.id]
    krw = sum(v for (venue, a), v in entry.items() if a == "KRW") - q * buy_price * (1 + D("0.0025"))
    usdt = sum(v for (venue, a), v in entry.items() if a == "USDT") + q * sell_price * (1 - D("0.00075"))
    coin = sum(v for (venue, a), v in entry.items() if a == "BTC")  # the close buys q and sells q
    assert engine.stats.unrealized_pnl_krw == krw + usdt * D("1400") + coin * mark
    assert engine.stats.unrealized_pnl_krw != 0
    # past max_holding_seconds the timeout fires; the thin book cannot fill it: one error, the position stays
    for i in (61, 62, 63):
        result = engine.process(with_books(thin, T0 + timedelta(seconds=i)))
        assert not result.closed and engine.positions
    errors = [e for e in storage.errors if "close (timeout)" in e.message]
    assert len(errors) == 1 and "book too thin" in errors[0].message
    # depth comes back: the timeout closes it
    result = engine.process(with_books(ENTRY_BOOKS, T0 + timedelta(seconds=64)))
    assert [p.close_reason for p in result.closed] == ["timeout"]


def test_cooldown_after_a_stop_loss_counts_from_the_close():
    engine = hand_engine()
    cfg = engine.cfg.__class__(**{**engine.cfg.__dict__, "stop_loss_premium": D("0.01"), "cooldown_seconds": 60.0,
                                  "directions": engine.cfg.directions})
    engine.cfg = engine.strategy.cfg = cfg
    engine.process(with_books(ENTRY_BOOKS, T0))
    assert engine.positions
    # 50 s later the premium at closing prices is far above the entry premium: stop
    dear = {"upbit": ([("150000000", "1")], [("150100000", "1")]), "binance": ([("95000", "1")], [("95010", "1")])}
    stop = engine.process(with_books(dear, T0 + timedelta(seconds=50)))
    assert [p.close_reason for p in stop.closed] == ["stop"]
    # 1 s after the stop the entry signal is back (the entry was 51 s ago): the cooldown counts from the close
    again = engine.process(with_books(ENTRY_BOOKS, T0 + timedelta(seconds=51)))
    assert not again.opened and "cooldown" in (engine._blocked.get("BTC") or "")
    assert not engine.process(with_books(ENTRY_BOOKS, T0 + timedelta(seconds=109))).opened
    assert engine.process(with_books(ENTRY_BOOKS, T0 + timedelta(seconds=110))).opened


# ----------------------------------------------------------------------------------------------- replay
def _rewrite(rec, out, line: int, mutate, *, ensure_ascii: bool = True):
    lines = rec.read_text(encoding="utf-8").splitlines(keepends=True)
    row = json.loads(lines[line - 1])
    lines[line - 1] = json.dumps(mutate(row), separators=(",", ":"), ensure_ascii=ensure_ascii) + "\n"
    out.write_text("".join(lines), encoding="utf-8")
    return out


def test_replay_blocks_untradeable_data_and_stops_on_malformed_data(tmp_path, caplog):
    rec = simulate_recording(tmp_path / "rec.jsonl", snapshots=300, seed=5, depth=15, excursion_prob=0.03)

    def eth_ask_token(index: int, token: str):
        def mutate(row):
            bids, asks = row["b"]["binance"]["ETH"]
            parts = asks.split()
            parts[index] = token
            row["b"]["binance"]["ETH"] = [bids, " ".join(parts)]
            return row
        return mutate

    zero_deep_level = eth_ask_token(17, "0.00000")  # well formed, not tradeable: a zero quantity at level 9
    untradeable = _rewrite(rec, tmp_path / "zero.jsonl", 251, zero_deep_level)
    caplog.set_level(logging.WARNING, logger="arbframe.engine")
    reader = RecordingReader(untradeable)
    engine = build_engine(reader, {"arbitrage": {"symbols": ["BTC", "ETH"]}}, MemoryStorage(),
                          spread_log_interval_seconds=60.0)
    summary = replay(reader, engine)
    assert summary.snapshots == 300
    assert any("ETH blocked for trading (bad_level)" in r.getMessage() for r in caplog.records)

    malformed_level = eth_ask_token(1, "0.0x")  # not a number: stops the replay (the best level is always read)
    bad = _rewrite(rec, tmp_path / "bad.jsonl", 251, malformed_level)
    reader = RecordingReader(bad)
    engine = build_engine(reader, {"arbitrage": {"symbols": ["BTC", "ETH"]}}, MemoryStorage(),
                          spread_log_interval_seconds=60.0)
    with pytest.raises(BacktestDataError, match=r"bad.jsonl:251: book binance/ETH asks, level 1: price and quantity "
                                                r"must be decimal numbers, got '\S+' and '0.0x'"):
        replay(reader, engine)


def test_replay_fast_path_and_full_path_agree_on_blocked_data(tmp_path, monkeypatch, caplog):
    """Blocks met late in a recording (after the fast path took over) give the same output on both paths."""
    from arbframe.replay.fastpath import ReplayFastPath

    rec = simulate_recording(tmp_path / "rec.jsonl", snapshots=400, seed=5, depth=15, excursion_prob=0.03)
    lines = rec.read_text(encoding="utf-8").splitlines(keepends=True)
    for n, kind in ((300, "zero"), (320, "crossed"), (340, "backwards"), (360, "fx_backwards"), (380, "stale")):
        row = json.loads(lines[n])
        bids, asks = row["b"]["upbit"]["BTC"]
        if kind == "zero":
            parts = bids.split()
            parts[11] = "0"
            row["b"]["upbit"]["BTC"] = [" ".join(parts), asks]
        elif kind == "crossed":
            row["b"]["upbit"]["BTC"] = [asks.split()[0] + " 1 " + bids, asks]
        elif kind == "backwards":
            row["b"]["upbit"]["BTC"] = [bids, asks, "2025-12-31T23:00:00+00:00"]
        elif kind == "fx_backwards":
            row["fx"][2] = "2025-12-31T23:00:00+00:00"  # older than the rate the line before had
        else:  # the snapshot 100 s on, the Upbit BTC book still the one of the line before: 100 s old
            before = json.loads(lines[n - 1])["t"]
            row["t"] = row["fx"][2] = (datetime.fromisoformat(before) + timedelta(seconds=100)).isoformat()
            row["b"]["upbit"]["BTC"] = [bids, asks, before]
        lines[n] = json.dumps(row, separators=(",", ":")) + "\n"
    rec.write_text("".join(lines), encoding="utf-8")

    def run():
        reader = RecordingReader(rec)
        storage = MemoryStorage()
        engine = build_engine(reader, {"arbitrage": {"symbols": ["BTC", "ETH"], "cooldown_seconds": 5}}, storage,
                              spread_log_interval_seconds=60.0)
        return replay(reader, engine), storage, engine

    caplog.set_level(logging.WARNING, logger="arbframe.engine")
    fast = run()
    seen = " ".join(r.getMessage() for r in caplog.records)
    for reason in ("bad_level", "locked_book", "book_time_backwards", "fx_time_backwards", "stale_book"):
        assert f"BTC blocked for trading ({reason})" in seen
    monkeypatch.setattr(ReplayFastPath, "tick", lambda self, row, reader: None)
    full = run()
    assert fast[0] == full[0]
    for table in ("spreads", "positions", "orders", "trades", "fx_rates", "errors"):
        assert getattr(fast[1], table) == getattr(full[1], table), table
    assert fast[2]._data_blocked == full[2]._data_blocked and fast[2].marks == full[2].marks


@pytest.mark.parametrize(("text", "bad"), [
    ("1 0", True), ("0 1", True), ("1 0.000 2", True), ("1 .0", True), ("1 0.", True), ("1 00.0 2", True),
    ("1 -2", True), ("5 0.0000", True), ("1 0.5", False), ("100 0.001", False), ("1 2.0 3 .5", False),
    ("10 20", False), ("5 0.0001", False), ("", False), ("1 ..", True), ("1 . 2", True), ("1 0.. 2", True),
    # levels are split at any whitespace, so the check separates them the same way
    ("1 1\t0 2", True), ("1 1\n0.0 2", True), ("1\x1f0", True), ("1\u20030", True), ("1 1\xa0.0 2", True),
    ("1\t2 3\n4", False), ("1  2", False), ("1\u20032", False),
])
def test_the_text_check_finds_every_plain_zero_or_negative(text, bad):
    from arbframe.trading.marketdata import text_has_nonpositive

    assert text_has_nonpositive(text) is bad


def test_a_zero_not_written_as_a_plain_decimal_is_malformed():
    """The text check reads plain decimals; a zero spelt otherwise cannot slip past it into a fill."""
    from arbframe.replay.recording import LazyLevels

    levels = LazyLevels("10 1 9 0E+2", ("f", 3, "v", "S", "asks"))
    assert not levels.has_nonpositive()
    with pytest.raises(BacktestDataError, match="level 2: price and quantity must be decimal numbers"):
        list(levels)
    assert list(LazyLevels("10 1 9 2E-8", ("f", 3, "v", "S", "asks")))[1].qty == D("2E-8")  # positive: fine


@pytest.mark.parametrize(("space", "written"), [("\t", "\\t0 "), ("\u2003", "\u20030 ")])
def test_replay_blocks_a_zero_level_separated_by_other_whitespace_on_both_paths(tmp_path, monkeypatch, caplog, space,
                                                                                  written):
    """A deep level separated by a tab (escaped in the JSON line) or an em space (raw UTF-8) is read as a zero price
    by the decoder, so the check reads it so too; the fast path leaves such a line to the full path."""
    from arbframe.replay.fastpath import ReplayFastPath

    rec = simulate_recording(tmp_path / "rec.jsonl", snapshots=300, seed=5, depth=15, excursion_prob=0.03)

    def spaced(row):
        bids, asks = row["b"]["upbit"]["BTC"]
        parts = bids.split()
        parts[10] = "0"  # level 6's price
        row["b"]["upbit"]["BTC"] = [" ".join(parts[:10]) + space + " ".join(parts[10:]), asks]
        return row

    tab = _rewrite(rec, tmp_path / "tab.jsonl", 251, spaced, ensure_ascii=False)
    assert written in tab.read_text(encoding="utf-8").splitlines()[250]

    def run(preload: bool = False):
        reader = RecordingReader.preload(tab) if preload else RecordingReader(tab)
        storage = MemoryStorage()
        engine = build_engine(reader, {"arbitrage": {"symbols": ["BTC", "ETH"], "cooldown_seconds": 5}}, storage,
                              spread_log_interval_seconds=60.0)
        return replay(reader, engine), storage, engine

    caplog.set_level(logging.WARNING, logger="arbframe.engine")
    fast = run()
    assert sum("BTC blocked for trading (bad_level)" in r.getMessage() for r in caplog.records) == 1
    monkeypatch.setattr(ReplayFastPath, "tick", lambda self, row, reader: None)
    full = run()
    assert sum("BTC blocked for trading (bad_level)" in r.getMessage() for r in caplog.records) == 2
    monkeypatch.undo()
    held = run(preload=True)  # the fast path over rows held in memory (arbframe optimize) sees the escape too
    assert sum("BTC blocked for trading (bad_level)" in r.getMessage() for r in caplog.records) == 3
    for other in (full, held):
        assert fast[0] == other[0]
        for table in ("spreads", "positions", "orders", "trades", "fx_rates", "errors"):
            assert getattr(fast[1], table) == getattr(other[1], table), table
        assert fast[2].marks == other[2].marks


class _Counted:
    """A book level that counts how often its price is read."""

    reads = 0

    def __init__(self, price: str, qty: str) -> None:
        self._price, self.qty = D(price), D(qty)

    @property
    def price(self) -> Decimal:
        _Counted.reads += 1
        return self._price


def test_a_book_handed_again_is_not_read_level_by_level_again():
    """A venue without an update since the last tick hands the same level tuples: found clean once, they are not
    read again; new tuples are, and a zero in them blocks."""
    from arbframe.trading.marketdata import MarketDataGuard

    guard = MarketDataGuard(None)
    bids = tuple(_Counted(p, "1") for p in ("100", "99", "98"))
    asks = tuple(_Counted(p, "1") for p in ("101", "102", "103"))
    up = OrderBook("upbit", "BTC", bids, asks, T0)
    bn = OrderBook("binance", "BTC", (_Counted("70", "1"),), (_Counted("71", "1"),), T0)
    assert guard.check((up, bn), T0) is None
    reads = _Counted.reads
    assert reads >= 8  # every level's price once, and the best ones for crossed books
    again = OrderBook("upbit", "BTC", bids, asks, T0 + timedelta(seconds=1))  # same levels, newer book
    assert guard.check((again, bn), T0 + timedelta(seconds=1)) is None
    assert _Counted.reads - reads == 4  # only the best bid and ask of each book (crossed or locked?)
    zero = OrderBook("upbit", "BTC", bids, (*asks[:2], _Counted("0", "1")), T0 + timedelta(seconds=2))
    assert guard.check((zero, bn), T0 + timedelta(seconds=2))[0] == "bad_level"


def test_the_benchmark_switch_turns_every_check_off():
    """``MarketDataGuard.enabled`` (only benchmarks/bench_engine.py sets it) lets crossed books, bad levels and
    times going backwards through: the benchmark's baseline replays without the checks."""
    engine = hand_engine()
    engine.guard.enabled = False
    assert engine.process(with_books(ENTRY_BOOKS, T0)).opened
    for ts, books in ((T0 - timedelta(seconds=9), CROSSED), (T0 + timedelta(seconds=1), BAD_LEVEL)):
        result = engine.process(with_books(books, ts, fx_ts=T0 - timedelta(seconds=60)))
        assert result.quotes  # not blocked
    assert not engine._data_blocked
