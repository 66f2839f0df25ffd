"""The live executor against two in-process fake venues (arbframe.testing.execution_kit): hedges, unknown
outcomes, leg risk, the kill switch. Every scenario ends with LivePair.check: venue balances == start + what the
stored orders say, net coin exposure zero (or the recorded residual), no client order id sent twice, a log line
per stored order state."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from decimal import Decimal as D

import pytest

from arbframe.core.models import OrderStatus
from arbframe.execution.base import HedgeReport
from arbframe.execution.control import KillState
from arbframe.execution.orders import client_order_id, parse_client_order_id
from arbframe.testing.execution_kit import live_pair

T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
Q = D("0.01")


async def hedge(pair, direction="kimchi", qty=Q, pid="p1", purpose="open", gross_up=True) -> HedgeReport:
    legs = await pair.legs(direction, qty, gross_up=gross_up)
    plan = pair.executor.plan(legs, D(qty), T0, pid, purpose=purpose, direction=None)
    return await pair.executor.run_hedge(plan)


def states(pair, cid):
    return [o.status for o in pair.storage.orders if o.client_order_id == cid]


def cid(pid, leg, attempt, kind="first", purpose="open"):
    return client_order_id(pid, purpose, leg, kind, attempt)


async def test_both_legs_fill(caplog) -> None:
    caplog.set_level("INFO", logger="arbframe.execution")
    pair = live_pair()
    report = await hedge(pair)
    assert (report.status, report.hedged_qty, report.residual) == ("filled", Q, 0)
    up, bn = cid("p1", "domestic", 0), cid("p1", "foreign", 0)
    assert states(pair, up) == [OrderStatus.SENT, OrderStatus.FILLED]
    assert states(pair, bn) == [OrderStatus.SENT, OrderStatus.FILLED]
    assert pair.upbit.placements == [up] and pair.binance.placements == [bn]
    # IOC limit orders at the VWAP bound: upbit sells at or above it, binance buys at or below it
    sell, buy = pair.upbit.get_order(client_id=up), pair.binance.get_order(client_id=bn)
    assert sell.tif == "IOC" and buy.tif == "IOC"
    assert sell.price <= report.domestic_price and buy.price >= report.foreign_price
    # the trades and balance changes the report carries are the venues' own figures
    assert report.changes[("upbit", "KRW")] == sell.quote_qty - sell.fee
    assert report.changes[("binance", "BTC")] == buy.filled_qty - buy.fee
    pair.check(caplog)


async def test_one_leg_rejected_then_hedged_on_retry(caplog) -> None:
    caplog.set_level("INFO", logger="arbframe.execution")
    pair = live_pair()
    pair.binance.inject("reject")
    report = await hedge(pair)
    assert report.status == "filled" and report.hedged_qty == Q
    first, retry = cid("p1", "foreign", 0), cid("p1", "foreign", 1, "hedge")
    assert states(pair, first) == [OrderStatus.SENT, OrderStatus.REJECTED]
    assert states(pair, retry)[-1] is OrderStatus.FILLED
    assert parse_client_order_id(retry).kind == "hedge"
    pair.check(caplog)


async def test_one_leg_always_rejected_is_unwound(caplog) -> None:
    caplog.set_level("INFO", logger="arbframe.execution")
    pair = live_pair()
    pair.binance.inject("reject", 1000)
    report = await hedge(pair)
    assert report.status == "unwound" and report.hedged_qty == 0 and report.residual == 0
    unwind = [o for o in report.orders if parse_client_order_id(o.client_order_id).kind == "unwind"]
    assert unwind and unwind[-1].exchange == "upbit" and unwind[-1].status is OrderStatus.FILLED
    assert pair.executor.risk.consecutive_failures == 1
    assert any("leg risk" in r.getMessage() for r in caplog.records)
    assert any("unwinding" in r.getMessage() for r in caplog.records)
    # the summary line reads as plain decimals (upbit sold Q and bought Q back: Q - Q), never "0E-2"
    summary = [r.getMessage() for r in caplog.records if ": unwound, hedged " in r.getMessage()]
    assert summary and "hedged 0.00 of 0.01 (upbit 0.00, binance 0)" in summary[-1], summary
    pair.check(caplog)


async def test_partial_fill_is_completed_on_the_same_venue(caplog) -> None:
    caplog.set_level("INFO", logger="arbframe.execution")
    pair = live_pair()
    pair.binance.inject("partial", fraction="0.4")
    report = await hedge(pair)
    assert report.status == "filled"
    bn_orders = [o for o in report.orders if o.exchange == "binance"]
    assert [o.status for o in bn_orders] == [OrderStatus.CANCELED, OrderStatus.FILLED]  # IOC rest canceled
    assert bn_orders[0].filled_qty > 0
    pair.check(caplog)


@pytest.mark.parametrize("venue", ["upbit", "binance"])
@pytest.mark.parametrize("fault", ["accept_then_timeout", "error_after_accept"])
async def test_lost_answer_is_unknown_until_looked_up(venue, fault, caplog) -> None:
    caplog.set_level("INFO", logger="arbframe.execution")
    pair = live_pair()
    pair.fakes[venue].inject(fault)
    report = await hedge(pair)
    assert report.status == "filled" and report.hedged_qty == Q
    leg = "domestic" if venue == "upbit" else "foreign"
    assert states(pair, cid("p1", leg, 0)) == [OrderStatus.SENT, OrderStatus.UNKNOWN, OrderStatus.FILLED]
    # nothing else went to that venue while the order was unknown
    assert pair.fakes[venue].placements == [cid("p1", leg, 0)]
    lookups = [c for c in (pair.up if venue == "upbit" else pair.bn).calls if c[0] == "fetch_order"]
    assert lookups and all(c[1] == cid("p1", leg, 0) for c in lookups)
    pair.check(caplog)


async def test_unknown_that_was_never_placed_becomes_rejected_then_a_new_attempt(caplog) -> None:
    caplog.set_level("INFO", logger="arbframe.execution")
    pair = live_pair()
    pair.binance.inject("timeout", path="place_order")  # the request never reached the venue
    report = await hedge(pair)
    first = cid("p1", "foreign", 0)
    assert states(pair, first) == [OrderStatus.SENT, OrderStatus.UNKNOWN, OrderStatus.REJECTED]
    assert report.status == "filled" and pair.binance.placements == [cid("p1", "foreign", 1, "hedge")]
    pair.check(caplog)


async def test_429_mid_hedge_resends_the_same_request(caplog) -> None:
    caplog.set_level("INFO", logger="arbframe.execution")
    pair = live_pair()
    pair.binance.inject("partial", fraction="0.5")
    report_task = asyncio.create_task(hedge(pair))
    while not pair.binance.placements:  # the first binance order is in: the hedge retry comes next
        await asyncio.sleep(0)
    pair.binance.inject("rate_limited", 2, path="place_order", retry_after=0.001)
    report = await report_task
    assert report.status == "filled"
    retry = cid("p1", "foreign", 1, "hedge")
    sends = [c for c in pair.bn.calls if c == ("place_order", retry)]
    assert len(sends) == 3  # two 429s (refused before acting), then placed: the venue saw the id once
    assert pair.binance.placements.count(retry) == 1
    assert sum("not placed; the same request goes again" in r.getMessage() for r in caplog.records) == 2
    pair.check(caplog)


async def test_delayed_fill_is_found_by_lookup(caplog) -> None:
    caplog.set_level("INFO", logger="arbframe.execution")
    pair = live_pair()
    pair.upbit.inject("delayed_fill", polls=2)
    report = await hedge(pair)
    assert report.status == "filled"
    assert states(pair, cid("p1", "domestic", 0)) == [OrderStatus.SENT, OrderStatus.OPEN, OrderStatus.FILLED]
    pair.check(caplog)


async def test_kill_switch_mid_hedge_stops_retries_and_unwinds(caplog) -> None:
    caplog.set_level("INFO", logger="arbframe.execution")
    pair = live_pair(hedge_timeout_seconds=5.0, hedge_retry_interval_seconds=0.01)
    pair.binance.inject("reject", 1000)
    task = asyncio.create_task(hedge(pair))
    while len(pair.binance.placements) < 3:  # hedge retries are going on
        await asyncio.sleep(0.001)
    await pair.executor.apply_kill(pair.executor.kill_switch.trip("operator", by="test"))
    report = await asyncio.wait_for(task, 2.0)  # well before the 5 s hedge timeout
    assert report.status == "unwound" and report.residual == 0
    tried = len(pair.binance.placements)
    assert pair.executor.entry_block("BTC", D(1)).startswith("kill switch")
    assert any("kill switch tripped" in r.getMessage() for r in caplog.records)
    assert pair.executor.kill_switch.read().killed  # stored, not only in this process
    assert len(pair.binance.placements) == tried
    pair.check(caplog)
    await pair.executor.apply_kill(KillState(False, by="test"))
    assert pair.executor.entry_block("BTC", D(1)) is None


async def test_unwind_that_cannot_fill_leaves_a_recorded_residual_and_trips(caplog) -> None:
    caplog.set_level("INFO", logger="arbframe.execution")
    pair = live_pair(max_residual_krw=D(1000))
    pair.binance.inject("reject", 1000)
    pair.upbit.inject("reject", 1000, side="buy")  # the unwind (buy back on upbit) is refused too
    report = await hedge(pair)
    assert report.status == "unwound" and report.residual == -Q and report.residual_venue == "upbit"
    risk = pair.executor.risk
    assert risk.residual_krw > D(1000)
    assert pair.executor.killed and "residual exposure" in risk.killed_reason
    assert pair.executor.entry_block("ETH", D(1)).startswith("kill switch")
    pair.check(caplog, residual=-Q)
    # a plain resume releases the switch; the residual still blocks entries
    await pair.executor.apply_kill(KillState(False, by="ops"))
    assert not pair.executor.killed and pair.executor.entry_block("ETH", D(1)).startswith("residual exposure")
    assert any("residual exposure still recorded" in r.getMessage() for r in caplog.records)
    # the runbook: flatten the residual by hand, then `arbframe resume --flattened` (it names what was flattened)
    await pair.executor.apply_kill(KillState(False, by="ops", flattened=("p1:open",)))
    assert pair.executor.entry_block("ETH", D(1)) is None and risk.residual_krw == 0


async def test_dry_run_never_fills(caplog) -> None:
    caplog.set_level("INFO", logger="arbframe.execution")
    pair = live_pair(dry_run=True)
    report = await hedge(pair)
    assert report.status == "rehearsed" and report.hedged_qty == 0 and report.changes == {}
    assert pair.upbit.orders == {} and pair.binance.orders == {}
    assert [c[0] for c in pair.up.calls] == ["fetch_order_book", "place_order"]
    assert all(o.status in (OrderStatus.SENT, OrderStatus.CANCELED) for o in pair.storage.orders)
    pair.check(caplog)


async def test_dry_run_refusal_is_reported() -> None:
    pair = live_pair(dry_run=True, upbit_balances={"KRW": 100_000_000, "BTC": "0.001"})
    report = await hedge(pair)  # kimchi sells 0.01 BTC on upbit: the test endpoint refuses
    assert report.status == "rehearsed"
    assert [o.status for o in report.orders if o.exchange == "upbit"] == [OrderStatus.REJECTED]


async def test_consecutive_failures_trip_the_kill_switch() -> None:
    pair = live_pair()
    pair.executor.risk.limits = type(pair.executor.risk.limits)(max_consecutive_failures=2)
    for n in range(2):
        pair.binance.inject("reject", 1000)
        await hedge(pair, pid=f"f{n}")
        pair.binance.clear()
        pair.upbit.step()
        pair.binance.step()
    assert pair.executor.killed and "consecutive" in pair.executor.risk.killed_reason


async def test_client_ids_are_derived_and_never_reused() -> None:
    assert cid("p1", "domestic", 0) == cid("p1", "domestic", 0)
    assert len({cid("p1", leg, n, kind) for leg in ("domestic", "foreign") for n in range(3)
                for kind in ("first", "hedge", "unwind")}) == 18
    parsed = parse_client_order_id(cid("p1", "foreign", 12, "unwind", "close"))
    assert (parsed.purpose, parsed.leg, parsed.kind, parsed.attempt) == ("close", "foreign", "unwind", 12)
    assert len(cid("a" * 32, "foreign", 999)) <= 36 and parse_client_order_id("manual-order") is None
    pair = live_pair()
    pair.executor.used_ids.add(cid("p1", "domestic", 0))
    from arbframe.execution.live import DuplicateClientOrderId

    with pytest.raises(DuplicateClientOrderId):
        await hedge(pair)
    assert pair.upbit.placements == []


async def test_sent_lines_come_after_the_write_and_before_the_answers(caplog) -> None:
    """The plan line and both ``sent`` lines are logged once the requests are out: before the first answer is
    taken, or ``ANNOUNCE_AFTER_SECONDS`` after sending when no answer comes (a held request still shows ``sent``)."""
    from arbframe.execution.live import ANNOUNCE_AFTER_SECONDS

    caplog.set_level("INFO", logger="arbframe.execution")
    pair = live_pair()
    gate = asyncio.Event()
    real = pair.bn.place_order

    async def held(request):
        await gate.wait()
        return await real(request)

    pair.bn.place_order = held
    task = asyncio.create_task(hedge(pair))
    up, bn = cid("p1", "domestic", 0), cid("p1", "foreign", 0)

    def lines():
        return [r.getMessage() for r in caplog.records if r.name == "arbframe.execution"]

    while not any(f"[{up}]: filled" in m for m in lines()):
        await asyncio.sleep(0.001)
    text = lines()
    first_sent = next(i for i, m in enumerate(text) if m.endswith(": sent"))
    assert text[first_sent - 1].startswith("[EXEC] open kimchi BTC p1 qty=")
    assert [m for m in text if m.endswith(": sent")] == [m for m in text[first_sent:first_sent + 2]]
    assert first_sent < next(i for i, m in enumerate(text) if f"[{up}]: filled" in m)
    await asyncio.sleep(ANNOUNCE_AFTER_SECONDS)
    assert not any(f"[{bn}]:" in m and "filled" in m for m in lines())  # still held: sent shown, no answer
    gate.set()
    report = await task
    assert report.status == "filled"
    pair.bn.place_order = real
    pair.check(caplog)


async def test_sent_lines_show_while_both_requests_are_held(caplog) -> None:
    from arbframe.execution.live import ANNOUNCE_AFTER_SECONDS

    caplog.set_level("INFO", logger="arbframe.execution")
    pair = live_pair()
    gate = asyncio.Event()
    reals = pair.up.place_order, pair.bn.place_order

    def hold(real):
        async def held(request):
            await gate.wait()
            return await real(request)
        return held

    pair.up.place_order, pair.bn.place_order = hold(reals[0]), hold(reals[1])
    task = asyncio.create_task(hedge(pair))
    await asyncio.sleep(ANNOUNCE_AFTER_SECONDS * 3)
    sent = [r.getMessage() for r in caplog.records if r.getMessage().endswith(": sent")]
    assert len(sent) == 2  # no answer yet: logged by the timer
    gate.set()
    assert (await task).status == "filled"
    pair.up.place_order, pair.bn.place_order = reals
    pair.check(caplog)
