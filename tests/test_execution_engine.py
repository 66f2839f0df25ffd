"""The engine over the live executor: one path for paper and live. Decisions go to the executor, its reports come
back on the next tick and become positions; every balance change at the venues belongs to a stored position."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal as D

from arbframe.core.models import FxRate, IdGenerator, PositionStatus
from arbframe.testing.execution_kit import live_pair
from arbframe.trading.accounting import FeeSchedule, SideFee, decode_changes
from arbframe.trading.engine import Engine, MarketSnapshot
from arbframe.trading.strategy import StrategyConfig

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
RATE = D(1350)  # upbit 100,000,000 KRW vs binance 70,000 USDT x 1350: a kimchi premium near 5.8 %


async def snap(pair, ts, rate=RATE) -> MarketSnapshot:
    up = await pair.up.fetch_order_book("BTC", 20)
    bn = await pair.bn.fetch_order_book("BTC", 20)
    return MarketSnapshot(ts, {("upbit", "BTC"): replace(up, ts=ts), ("binance", "BTC"): replace(bn, ts=ts)},
                          FxRate("fx", ts, rate, "static"))


def engine_for(pair, **overrides) -> Engine:
    section = {"domestic": "upbit", "foreign": "binance", "symbols": ["BTC"], "order_notional_krw": 1_000_000,
               "entry_threshold": 0.02, "exit_threshold": 0.005, "cooldown_seconds": 0, "max_book_age_seconds": 10,
               "stop_loss_premium": 0.5, "max_holding_seconds": 86400, "use_tether": False}
    section.update(overrides)
    fees = {"upbit": FeeSchedule.flat("0.0005"),
            "binance": FeeSchedule(SideFee(D("0.001"), "base"), SideFee(D("0.001"), "quote"))}
    return Engine(StrategyConfig.from_section(section), storage=pair.storage, fee_domestic=D("0.0005"),
                  fee_foreign=D("0.001"), fees=fees,
                  rules={(v, "BTC"): ex.market_rules("BTC") for v, ex in (("upbit", pair.up), ("binance", pair.bn))},
                  quote_currencies={"upbit": "KRW", "binance": "USDT"}, wallets={}, ids=IdGenerator(2),
                  executor=pair.executor)


def books_match_positions(pair) -> None:
    """Every balance change at the venues belongs to a stored position (latest row of each id)."""
    latest = {}
    for p in pair.storage.positions:
        latest[p.id] = p
    total: dict = {}
    for p in latest.values():
        for key, amount in decode_changes(p.balance_changes).items():
            total[key] = total.get(key, D(0)) + amount
    now = pair.balances()
    for key in set(now) | set(total):
        assert now.get(key, D(0)) - pair.start.get(key, D(0)) == total.get(key, D(0)), key


async def tick(engine, pair, ts, *, settle=True):
    result = engine.process(await snap(pair, ts))
    if settle:
        await pair.executor.wait_idle()
    return result


async def test_entry_and_exit_go_through_the_executor(caplog) -> None:
    caplog.set_level("INFO")
    pair = live_pair()
    engine = engine_for(pair)
    first = await tick(engine, pair, T0)
    assert not first.opened and pair.executor.in_flight == 0  # sent; the report waits for the next tick
    assert any("[BOT] ENTRY kimchi BTC qty=0.01" in r.getMessage() for r in caplog.records)
    second = await tick(engine, pair, T0 + timedelta(seconds=1))
    assert [p.qty for p in second.opened] == [D("0.01")]
    position = second.opened[0]
    assert position.entry_domestic_price < D(100_000_000) and position.status is PositionStatus.OPEN
    assert engine.positions == {position.id: position}
    pair.check(caplog)
    books_match_positions(pair)
    pair.binance.set_mid("BTC", 74_000)  # premium back near 0.1 %: exit
    await tick(engine, pair, T0 + timedelta(seconds=2))
    closed = (await tick(engine, pair, T0 + timedelta(seconds=3))).closed
    assert [(p.id, p.close_reason) for p in closed] == [(position.id, "exit")]
    assert engine.positions == {}
    pair.check(caplog)
    books_match_positions(pair)
    assert engine.stats.trades == 1 and engine.stats.total_pnl_krw == closed[0].realized_pnl_krw


async def test_a_failed_entry_is_a_zero_quantity_position_with_its_cost(caplog) -> None:
    caplog.set_level("INFO")
    pair = live_pair()
    engine = engine_for(pair)
    pair.binance.inject("reject", 1000)
    await tick(engine, pair, T0)
    result = await tick(engine, pair, T0 + timedelta(seconds=1), settle=False)
    assert not result.opened and [p.qty for p in result.closed] == [0]
    cost = result.closed[0]
    assert cost.close_reason == "open_unwound" and cost.realized_pnl_krw < 0  # fees and the spread paid
    assert engine.positions == {}
    assert any(e.kind == "execution" and "nothing hedged" in e.message for e in result.errors)
    pair.check(caplog)
    books_match_positions(pair)


async def test_a_partial_close_splits_the_position(caplog) -> None:
    caplog.set_level("INFO")
    pair = live_pair()
    engine = engine_for(pair)
    await tick(engine, pair, T0)
    await tick(engine, pair, T0 + timedelta(seconds=1))
    (position,) = engine.positions.values()
    pair.binance.set_mid("BTC", 74_000)
    pair.upbit.inject("partial", side="buy", fraction="0.5")  # the close buys back on upbit: half fills ...
    pair.upbit.inject("reject", 1000, side="buy")  # ... and no hedge retry gets more: binance's excess unwinds
    await tick(engine, pair, T0 + timedelta(seconds=2))
    result = await tick(engine, pair, T0 + timedelta(seconds=3), settle=False)
    assert [(p.id, p.qty) for p in result.closed] == [(position.id, D("0.005"))]
    (rest,) = engine.positions.values()
    assert rest.qty == D("0.005") and rest.id != position.id and rest.opened_at == position.opened_at
    assert any("partial close" in r.getMessage() for r in caplog.records)
    pair.check(caplog)
    books_match_positions(pair)


async def test_kill_switch_blocks_entries_and_flatten_closes_everything(caplog) -> None:
    caplog.set_level("INFO")
    pair = live_pair()
    engine = engine_for(pair)
    await tick(engine, pair, T0)
    await tick(engine, pair, T0 + timedelta(seconds=1))
    assert len(engine.positions) == 1
    await pair.executor.apply_kill(pair.executor.kill_switch.trip("operator", flatten=True, by="test"))
    assert engine.killed
    snapshot = await snap(pair, T0 + timedelta(seconds=2))
    result = engine.process(snapshot)
    assert engine.close_all(snapshot, result) == 1  # the runner does this for --flatten
    await pair.executor.wait_idle()
    closed = (await tick(engine, pair, T0 + timedelta(seconds=3))).closed
    assert [p.close_reason for p in closed] == ["kill"] and engine.positions == {}
    # still killed: the premium is there, no entry
    await tick(engine, pair, T0 + timedelta(seconds=4))
    assert engine.positions == {} and pair.executor.in_flight == 0
    assert any("entry on BTC blocked: kill switch" in r.getMessage() for r in caplog.records)
    pair.check(caplog)
    books_match_positions(pair)
