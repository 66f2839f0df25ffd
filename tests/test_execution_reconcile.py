"""Reconciliation (arbframe.execution.reconcile) after a crash between the two legs, balance drift checks, and the
kill switch kept in storage."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D
from pathlib import Path

from arbframe.builtins.storage import MemoryStorage, NullStorage
from arbframe.core.models import OrderStatus
from arbframe.execution.control import KillSwitch
from arbframe.execution.orders import client_order_id
from arbframe.execution.reconcile import SETTLED, Reconciler
from arbframe.testing.execution_kit import live_pair
from tests.test_execution_live import Q, hedge, states


def cid(leg, attempt, kind="first", pid="p1"):
    return client_order_id(pid, "open", leg, kind, attempt)


async def crash_after_first_leg(pair, *, binance_places: bool) -> None:
    """Run a hedge until upbit filled and binance's 'sent' is stored, then stop it as a kill -9 would (the task
    dies; nothing after that point runs). ``binance_places``: the venue got the order before the process died."""
    gate = asyncio.Event()
    real = pair.bn.place_order

    async def dying(request):
        if binance_places:
            pair.binance.place_limit(request.symbol, request.side.value, request.price, request.qty,
                                     request.client_order_id)
        await gate.wait()  # never answers: the process dies here
        return await real(request)

    pair.bn.place_order = dying
    task = asyncio.create_task(hedge(pair))
    while OrderStatus.SENT not in states(pair, cid("foreign", 0)) or \
            OrderStatus.FILLED not in states(pair, cid("domestic", 0)):
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    pair.bn.place_order = real


async def test_crash_between_legs_then_restart_unwinds(caplog) -> None:
    caplog.set_level("INFO", logger="arbframe.execution")
    pair = live_pair()
    await crash_after_first_leg(pair, binance_places=False)
    ex = pair.restart()
    reports = await Reconciler(ex).on_start()
    assert [r.status for r in reports] == ["unwound"]
    assert states(pair, cid("foreign", 0))[-1] is OrderStatus.REJECTED  # the venue never had it
    assert cid("foreign", 0) not in pair.binance.placements
    unwinds = [o for o in reports[0].orders if o.client_order_id == cid("domestic", 1, "unwind")]
    assert unwinds and unwinds[0].status is OrderStatus.FILLED  # a new attempt number, never the stored ones
    assert ex.entry_block("BTC") is None
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("[RECON]")]
    assert any("stored sent -> not at the venue: never placed" in line for line in lines)
    assert any("was not recorded" in line and "unwinding the excess on upbit" in line for line in lines)
    assert lines[-1].startswith("[RECON] start-up reconciliation done: 1 hedge(s) settled")
    pair.check(caplog)
    # the engine records the report; a second restart finds nothing left to settle
    ex.settled(reports[0])
    again = await Reconciler(pair.restart()).on_start()
    assert again == []


async def test_crash_after_the_venue_filled_both_legs_adopts_the_fills(caplog) -> None:
    caplog.set_level("INFO", logger="arbframe.execution")
    pair = live_pair()
    await crash_after_first_leg(pair, binance_places=True)
    ex = pair.restart()
    reports = await Reconciler(ex).on_start()
    assert [(r.status, r.hedged_qty) for r in reports] == [("filled", Q)]
    assert states(pair, cid("foreign", 0))[-1] is OrderStatus.FILLED
    assert len(pair.upbit.placements) == 1 and len(pair.binance.placements) == 1  # nothing new was sent
    assert ex.storage.read_control(SETTLED) is None  # marked only when the engine records it
    pair.check(caplog)


async def test_drift_pauses_entries_until_balances_match(caplog) -> None:
    caplog.set_level("INFO", logger="arbframe.execution")
    pair = live_pair(max_balance_drift=D("0.001"))
    recon = Reconciler(pair.executor)
    assert await recon.on_start() == []
    await hedge(pair)  # the books follow the hedge's changes
    await recon.refresh_balances()
    assert pair.executor.risk.drift is None
    pair.binance.balances["USDT"] -= D(500)  # a withdrawal nobody told us about
    await recon.refresh_balances()
    block = pair.executor.entry_block("BTC", D(1000))
    assert block.startswith("balance drift: binance USDT holds")
    assert any("[RECON] binance USDT: holds" in r.getMessage() for r in caplog.records)
    pair.binance.balances["USDT"] += D(500)
    await recon.refresh_balances()
    assert pair.executor.entry_block("BTC", D(1000)) is None


def test_kill_switch_lives_in_storage(tmp_path: Path) -> None:
    from arbframe_storage_csv.storage import CsvStorage

    one = KillSwitch(CsvStorage({"data_dir": str(tmp_path / "csv")}))
    two = KillSwitch(CsvStorage({"data_dir": str(tmp_path / "csv")}))  # another process on the same store
    assert not two.read().killed
    one.trip("too many errors", flatten=True, by="ops@host")
    state = two.read()
    assert (state.killed, state.flatten, state.reason, state.by) == (True, True, "too many errors", "ops@host")
    two.resume(by="ops@host")
    assert not one.read().killed
    memory = MemoryStorage()
    KillSwitch(memory).trip("x")
    assert KillSwitch(memory).read().killed
    # a storage without control records: a file in the data dir (one host)
    null_switch = KillSwitch(NullStorage(), tmp_path / "data")
    null_switch.trip("y")
    assert KillSwitch(NullStorage(), tmp_path / "data").read().killed
    assert (tmp_path / "data" / "control" / "kill_switch.json").exists()
    assert "file" in null_switch.where


def test_unreadable_store_keeps_the_last_state(caplog) -> None:
    class Broken(MemoryStorage):
        fail = False

        def read_control(self, name):
            if self.fail:
                raise ConnectionError("database away")
            return super().read_control(name)

    storage = Broken()
    switch = KillSwitch(storage)
    switch.trip("stop")
    storage.fail = True
    assert switch.read().killed  # never un-kills because the store cannot answer
    assert any("kill switch could not be read" in r.getMessage() for r in caplog.records)


async def test_unknown_stored_order_is_settled_once_the_venue_answers(caplog) -> None:
    caplog.set_level("INFO", logger="arbframe.execution")
    pair = live_pair()
    await crash_after_first_leg(pair, binance_places=True)
    ex = pair.restart()
    pair.binance.inject("unavailable", path="fetch_order")
    recon = Reconciler(ex)
    assert await recon.on_start() == []  # not settled blind: the binance leg may have filled (it did)
    assert ex.entry_block("BTC", D(1)).startswith("1 order(s) with an unknown outcome")
    reports = await recon.settle_pending()
    assert [(r.status, r.hedged_qty) for r in reports] == [("filled", Q)]
    assert ex.entry_block("BTC", D(1)) is None
    pair.check(caplog)


async def test_unreadable_settled_record_blocks_entries_instead_of_settling_twice() -> None:
    pair = live_pair()
    await crash_after_first_leg(pair, binance_places=False)
    ex = pair.restart()

    readable = pair.storage.read_control

    def broken(name):
        if name == SETTLED:  # (a store that cannot say what residual is recorded blocks too: test_execution_residual)
            raise ConnectionError("database away")
        return readable(name)

    pair.storage.read_control = broken
    assert await Reconciler(ex).on_start() == []
    assert "settled hedges could not be read" in ex.entry_block("BTC", D(1))
    assert len(pair.upbit.placements) == 1  # nothing unwound blind


async def test_each_book_settles_only_its_own_symbols_hedges(caplog) -> None:
    """Runners with separate books share a store: a reconciliation touches (looks up, cancels, settles) only the
    orders of its book's symbols, and each symbol's settled hedges are a record of their own."""
    import dataclasses

    from arbframe.execution.reconcile import settled_record

    caplog.set_level("INFO", logger="arbframe.execution")
    pair = live_pair()
    await crash_after_first_leg(pair, binance_places=False)
    other = pair.restart()
    assert await Reconciler(other, symbols=("ETH",)).on_start() == []  # BTC's hedge is not this book's
    assert states(pair, cid("foreign", 0))[-1] is OrderStatus.SENT  # not even looked up
    ex = pair.restart()
    recon = Reconciler(ex, symbols=("btc",))
    [report] = await recon.on_start()
    assert report.status == "unwound"
    ex.settled(report)
    eth = Reconciler(pair.restart(), symbols=("ETH",))
    eth.mark_settled(dataclasses.replace(report, symbol="ETH", orders=report.orders[:1]))
    btc_ids = {o.client_order_id for o in report.orders}
    stored = ex.storage.read_control(settled_record("upbit", "binance", "BTC"))["ids"]
    assert set(stored) == btc_ids  # the ETH book's write left BTC's record alone
    assert ex.storage.read_control(settled_record("upbit", "binance", "ETH"))["ids"] == \
        [report.orders[0].client_order_id]
    assert ex.storage.read_control(SETTLED) is None  # the shared record of earlier versions is never written
    assert await Reconciler(pair.restart(), symbols=("BTC",)).on_start() == []


async def test_the_shared_settled_record_of_earlier_versions_is_still_read() -> None:
    pair = live_pair()
    await crash_after_first_leg(pair, binance_places=True)
    ids = [o.client_order_id for o in pair.storage.orders]
    pair.storage.write_control(SETTLED, {"ids": ids})  # written by a runner of an earlier version
    assert await Reconciler(pair.restart(), symbols=("BTC",)).on_start() == []
