"""Engine, strategy and paper execution on scripted markets, with hand-computed results."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from decimal import Decimal as D

import pytest
from prometheus_client import CollectorRegistry

from arbframe import BookLevel, Direction, FxRate, IdGenerator, MarketRules, OrderBook, PositionStatus, Side
from arbframe.builtins.storage import MemoryStorage
from arbframe.trading.engine import Engine, MarketSnapshot
from arbframe.trading.paper import PaperWallet
from arbframe.trading.statistics import TradingMetrics, format_metrics_summary
from arbframe.trading.strategy import StrategyConfig

T0 = datetime(2026, 1, 1, 0, 0, tzinfo=timezone.utc)
FEE_UP, FEE_BN = D("0.0005"), D("0.001")


def book(exchange, bids, asks, ts, symbol="BTC"):
    return OrderBook(
        exchange, symbol,
        tuple(BookLevel(D(p), D(q)) for p, q in bids),
        tuple(BookLevel(D(p), D(q)) for p, q in asks),
        ts,
    )


def snapshot(ts, up_bids, up_asks, bn_bids, bn_asks, rate="1000", fx_ts=None):
    fx = FxRate("fx", fx_ts or ts, D(rate), "static")
    return MarketSnapshot(
        ts,
        {
            ("upbit", "BTC"): book("upbit", up_bids, up_asks, ts),
            ("binance", "BTC"): book("binance", bn_bids, bn_asks, ts),
        },
        fx,
    )


# premium ~3.9 % on VWAP for 9.52 coins, then back to 0.5 % at the close prices
HIGH = ([("105000", "5"), ("104000", "10")], [("105100", "5"), ("106000", "10")],
        [("99.9", "4"), ("99", "10")], [("100", "4"), ("101", "10")])
LOW = ([("100400", "20")], [("100500", "20")], [("100", "20")], [("100.1", "20")])
MID = ([("102000", "20")], [("102100", "20")], [("100", "20")], [("100.1", "20")])


def make_engine(storage=None, registry=None, wallets=None, **overrides):
    section = {
        "symbols": ["BTC"], "order_notional_krw": 1000000, "entry_threshold": 0.02, "exit_threshold": 0.005,
        "stop_loss_premium": 0.05, "max_holding_seconds": 3600, "cooldown_seconds": 0, "max_book_age_seconds": 10,
        "max_fx_age_seconds": 300,
    }
    section.update(overrides)
    cfg = StrategyConfig.from_section(section)
    rules = {
        ("upbit", "BTC"): MarketRules("BTC", None, D("0.01"), D("0.01"), D("5000")),
        ("binance", "BTC"): MarketRules("BTC", D("0.01"), D("0.01"), D("0.01"), D("5")),
    }
    wallets = wallets or {
        "upbit": PaperWallet("upbit", "KRW", {"KRW": "10000000", "BTC": "20"}),
        "binance": PaperWallet("binance", "USDT", {"USDT": "100000", "BTC": "20"}),
    }
    metrics = TradingMetrics.get(registry) if registry is not None else None
    return Engine(
        cfg, storage=storage or MemoryStorage(), fee_domestic=FEE_UP, fee_foreign=FEE_BN, rules=rules,
        quote_currencies={"upbit": "KRW", "binance": "USDT"}, wallets=wallets, ids=IdGenerator(1), metrics=metrics,
    )


def test_scripted_round_trip_gives_one_position_with_hand_computed_pnl():
    storage = MemoryStorage()
    registry = CollectorRegistry()
    engine = make_engine(storage, registry)
    r1 = engine.process(snapshot(T0, *HIGH))
    assert len(r1.opened) == 1 and not r1.closed
    pos = r1.opened[0]
    assert pos.direction is Direction.KIMCHI and pos.qty == D("9.52")
    assert pos.entry_domestic_price == D("995080") / D("9.52")
    # entry fees: 995080 * 0.0005 = 497.54 KRW; 957.52 * 0.001 = 0.95752 USDT = 957.52 KRW
    assert pos.entry_fees_krw == D("497.54") + D("957.52")
    # while the premium stays high: nothing else happens (one position per symbol)
    r2 = engine.process(snapshot(T0 + timedelta(seconds=1), *HIGH))
    assert not r2.opened and not r2.closed
    r3 = engine.process(snapshot(T0 + timedelta(seconds=2), *LOW))
    assert len(r3.closed) == 1 and not r3.opened
    closed = r3.closed[0]
    assert closed.id == pos.id and closed.status is PositionStatus.CLOSED and closed.close_reason == "exit"
    # entry: +995080 - 497.54 KRW, -(957.52 + 0.95752) USDT * 1000 -> +36104.94 KRW
    # exit: buy 9.52 @ 100500 = 956760 + 478.38 fee; sell 9.52 @ 100 = 952 - 0.952 USDT -> -6190.38 KRW
    assert closed.realized_pnl_krw == D("29914.56")
    assert closed.exit_fees_krw == D("478.38") + D("952")
    assert closed.exit_premium == D("0.005")
    r4 = engine.process(snapshot(T0 + timedelta(seconds=3), *LOW))
    assert not r4.opened and not r4.closed
    # exactly one position (opened + closed rows with the same id), four order legs, four trades
    assert {p.id for p in storage.positions} == {pos.id}
    assert len(storage.orders) == 4 and len(storage.trades) == 4
    sides = [(o.exchange, o.side) for o in storage.orders]
    assert sides == [("upbit", Side.SELL), ("binance", Side.BUY), ("upbit", Side.BUY), ("binance", Side.SELL)]
    assert all(o.position_id == pos.id for o in storage.orders)
    assert [o.fee_currency for o in storage.orders] == ["KRW", "USDT", "KRW", "USDT"]
    # wallets moved by exactly the fills and fees
    up, bn = engine.executor.wallets["upbit"], engine.executor.wallets["binance"]
    assert up.get("BTC") == D("20") and bn.get("BTC") == D("20")
    assert up.get("KRW") == D("10000000") + D("995080") - D("497.54") - D("956760") - D("478.38")
    assert bn.get("USDT") == D("100000") - D("957.52") - D("0.95752") + D("952") - D("0.952")
    # metrics computed for real
    snap = engine.stats.snapshot(T0 + timedelta(seconds=3))
    assert snap.total_pnl_krw == D("29914.56") and snap.num_trades == 1 and snap.win_rate == 1.0
    assert snap.daily_pnl_krw == D("29914.56") and snap.avg_trade_duration_seconds == 2.0
    assert "pnl=29,915₩ win_rate=100.0% trades=1 open_pos=0" in format_metrics_summary(snap)
    assert registry.get_sample_value("arbitrage_total_pnl_krw") == pytest.approx(29914.56)
    assert registry.get_sample_value("arbitrage_trades_total") == 1
    assert registry.get_sample_value("arbitrage_ticks_total") == 4
    assert registry.get_sample_value(
        "arbitrage_orders_total", {"exchange": "upbit", "side": "sell", "status": "filled"}) == 1
    assert registry.get_sample_value(
        "arbitrage_premium_ratio", {"symbol": "BTC", "direction": "kimchi"}) == pytest.approx(100400 / 100100 - 1)
    # spreads recorded every tick for both directions
    assert len(storage.spreads) == 8


def test_unrealized_pnl_is_marked_every_tick():
    engine = make_engine()
    engine.process(snapshot(T0, *HIGH))
    engine.process(snapshot(T0 + timedelta(seconds=1), *MID))
    # close at MID: buy 9.52 @ 102100 (+0.05 %), sell 9.52 @ 100 (-0.1 %) at 1000
    exit_cash = D("952") * D("0.999") * 1000 - D("9.52") * D("102100") * D("1.0005")
    assert engine.stats.unrealized_pnl_krw == D("36104.94") + exit_cash
    assert engine.stats.open_positions == 1


def test_stale_fx_blocks_entries_and_says_why(caplog):
    engine = make_engine()
    stale = snapshot(T0, *HIGH, fx_ts=T0 - timedelta(seconds=301))
    with caplog.at_level(logging.INFO, logger="arbframe.engine"):
        result = engine.process(stale)
        engine.process(snapshot(T0 + timedelta(seconds=1), *HIGH, fx_ts=T0 - timedelta(seconds=301)))
    assert not result.opened and result.spreads  # spreads still recorded, with the FX age
    assert all(s.fx_age_seconds == D("301.000") for s in result.spreads)
    stale_lines = [r.message for r in caplog.records if "new entries blocked" in r.message]
    assert len(stale_lines) == 1 and "301s old" in stale_lines[0]
    # fresh again: the entry happens
    assert engine.process(snapshot(T0 + timedelta(seconds=2), *HIGH)).opened


def test_stop_and_timeout_rules():
    engine = make_engine(stop_loss_premium=0.02)
    engine.process(snapshot(T0, *HIGH))
    worse = ([("110000", "20")], [("110100", "20")], [("100", "20")], [("100.1", "20")])  # close premium 10 %
    r = engine.process(snapshot(T0 + timedelta(seconds=1), *worse))
    assert [p.close_reason for p in r.closed] == ["stop"]
    assert r.closed[0].realized_pnl_krw < 0
    engine = make_engine(max_holding_seconds=60)
    engine.process(snapshot(T0, *HIGH))
    assert not engine.process(snapshot(T0 + timedelta(seconds=59), *MID)).closed
    r = engine.process(snapshot(T0 + timedelta(seconds=60), *MID))
    assert [p.close_reason for p in r.closed] == ["timeout"]


def test_limits_wallets_cooldown_and_minimums():
    # wallet holds only 3 BTC on upbit: the kimchi entry is cut to 3
    wallets = {
        "upbit": PaperWallet("upbit", "KRW", {"KRW": "10000000", "BTC": "3"}),
        "binance": PaperWallet("binance", "USDT", {"USDT": "100000", "BTC": "20"}),
    }
    engine = make_engine(wallets=wallets)
    assert engine.process(snapshot(T0, *HIGH)).opened[0].qty == D("3")
    # notional cap
    engine = make_engine(max_position_notional_krw=210000)
    assert engine.process(snapshot(T0, *HIGH)).opened[0].qty == D("2")
    # total notional already used up
    engine = make_engine(max_total_notional_krw=1000)
    assert not engine.process(snapshot(T0, *HIGH)).opened
    # below the venue minimum: 0.04 BTC * 105000 = 4200 KRW < 5000
    engine = make_engine(order_notional_krw=4300)
    assert not engine.process(snapshot(T0, *HIGH)).opened
    # cooldown: after a close, no re-entry within cooldown_seconds
    engine = make_engine(cooldown_seconds=600)
    engine.process(snapshot(T0, *HIGH))
    engine.process(snapshot(T0 + timedelta(seconds=1), *LOW))
    assert not engine.process(snapshot(T0 + timedelta(seconds=2), *HIGH)).opened
    assert engine.process(snapshot(T0 + timedelta(seconds=601), *HIGH)).opened
    # max open positions across symbols
    engine = make_engine(max_open_positions=0)
    assert not engine.process(snapshot(T0, *HIGH)).opened


def test_reverse_direction_and_daily_loss_limit():
    rev = ([("95000", "20")], [("95100", "20")], [("100", "20")], [("100.1", "20")])  # upbit 4.9 % cheap
    back = ([("100000", "20")], [("100100", "20")], [("100", "20")], [("100.1", "20")])
    engine = make_engine()
    r = engine.process(snapshot(T0, *rev))
    assert r.opened[0].direction is Direction.REVERSE
    r = engine.process(snapshot(T0 + timedelta(seconds=1), *back))
    assert r.closed and r.closed[0].realized_pnl_krw > 0
    engine = make_engine(max_daily_loss_krw=1, stop_loss_premium=0.02)
    engine.process(snapshot(T0, *HIGH))
    worse = ([("110000", "20")], [("110100", "20")], [("100", "20")], [("100.1", "20")])
    engine.process(snapshot(T0 + timedelta(seconds=1), *worse))
    assert engine.stats.daily_pnl() < 0
    assert not engine.process(snapshot(T0 + timedelta(seconds=2), *HIGH)).opened


def test_daily_pnl_day_boundary_in_seoul():
    engine = make_engine()
    # opened 14:59:58 UTC (23:59:58 KST), closed 15:00:01 UTC = 00:00:01 KST the next day
    start = datetime(2026, 1, 1, 14, 59, 58, tzinfo=timezone.utc)
    engine.process(snapshot(start, *HIGH))
    engine.process(snapshot(start + timedelta(seconds=3), *LOW))
    assert engine.stats.daily_pnl(start + timedelta(seconds=3)) == D("29914.56")
    assert engine.stats.daily_pnl(start) == 0  # the KST day before saw no close
    utc_engine = make_engine(timezone="UTC")
    utc_engine.process(snapshot(start, *HIGH))
    utc_engine.process(snapshot(start + timedelta(seconds=3), *LOW))
    assert utc_engine.stats.daily_pnl(start) == D("29914.56")  # same UTC day


def test_resume_open_position_once_and_close_it():
    storage = MemoryStorage()
    first = make_engine(storage)
    opened = first.process(snapshot(T0, *HIGH)).opened[0]
    loaded = storage.load_positions()
    second = make_engine(storage)
    assert second.resume(loaded) == [opened]
    assert second.resume(loaded) == []  # never duplicated
    r = second.process(snapshot(T0 + timedelta(seconds=1), *HIGH))
    assert not r.opened  # the resumed position occupies the symbol
    r = second.process(snapshot(T0 + timedelta(seconds=2), *LOW))
    assert [p.id for p in r.closed] == [opened.id]
    assert abs(r.closed[0].realized_pnl_krw - D("29914.56")) < D("1e-9")
    assert storage.load_positions() == []


def test_restore_history_feeds_totals_once():
    storage = MemoryStorage()
    first = make_engine(storage)
    first.process(snapshot(T0, *HIGH))
    closed = first.process(snapshot(T0 + timedelta(seconds=1), *LOW)).closed
    second = make_engine(MemoryStorage())
    assert second.restore_history(storage.positions) == 1
    assert second.restore_history(storage.positions) == 0
    assert second.stats.total_pnl_krw == closed[0].realized_pnl_krw and second.stats.trades == 1


class _History(MemoryStorage):
    def __init__(self, history):
        super().__init__()
        self.history = history

    def load_closed_positions(self):
        if isinstance(self.history, Exception):
            raise self.history
        return self.history


@pytest.mark.parametrize(("history", "level", "says"), [
    (None, logging.INFO, "PnL totals start at zero: _History keeps no closed positions"),
    (OSError("disk gone"), logging.WARNING,
     "PnL totals start at zero: _History could not load closed positions (OSError: disk gone)"),
])
def test_runner_totals_start_at_zero_when_storage_has_no_history(caplog, history, level, says):
    from types import SimpleNamespace

    from arbframe.service.runner import TradingService

    fake = SimpleNamespace(storage=_History(history), engine=make_engine(MemoryStorage()))
    with caplog.at_level(logging.INFO, logger="arbframe"):
        TradingService._restore_totals(fake)  # type: ignore[arg-type]
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(level, f"[BOT] {says}")]
    assert fake.engine.stats.trades == 0


def test_restored_losses_count_against_todays_daily_loss_limit():
    """A restart does not reset the daily loss limit: today's realized losses come back with the history."""
    from dataclasses import replace

    storage = MemoryStorage()
    first = make_engine(storage)
    first.process(snapshot(T0, *HIGH))
    closed = first.process(snapshot(T0 + timedelta(seconds=1), *LOW)).closed[0]
    loss = replace(closed, realized_pnl_krw=D("-60000"))
    cfg = {"max_daily_loss_krw": "50000"}
    second = make_engine(MemoryStorage(), **cfg)
    assert second.process(snapshot(T0 + timedelta(seconds=60), *HIGH)).opened  # no history: the limit is not hit
    third = make_engine(MemoryStorage(), **cfg)
    third.restore_history([loss])
    r = third.process(snapshot(T0 + timedelta(seconds=60), *HIGH))
    assert not r.opened and "daily loss limit" in (third._blocked.get("BTC") or "")
