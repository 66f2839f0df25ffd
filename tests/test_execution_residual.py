"""Residual exposure (arbframe.execution.residual): netted per symbol, kept in storage (memory, CSV, a file for a
storage without control records), restored by the start-up reconciliation after a restart, cleared only by
``arbframe resume --flattened``. Every KRW figure is computed by hand in the comments."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from arbframe.builtins.storage import MemoryStorage, NullStorage
from arbframe.execution.control import KillState, KillSwitch
from arbframe.execution.reconcile import Reconciler
from arbframe.execution.residual import Residual, ResidualStore, exposure, record_name, total_krw
from arbframe.testing.execution_kit import live_pair
from tests.test_execution_live import Q, hedge

TS1, TS2 = "2025-01-02T01:00:00+00:00", "2025-01-02T02:00:00+00:00"


def test_exposure_nets_each_symbol_at_its_latest_mark() -> None:
    residuals = [
        Residual("p1", "open", "BTC", "upbit", D("-0.01"), D("148000000"), TS1),
        Residual("p2", "open", "BTC", "binance", D("0.004"), D("150000000"), TS2),
        Residual("p3", "close", "ETH", "upbit", D("0.5"), D("5200000"), TS1),
    ]
    by_symbol = exposure(residuals)
    # BTC: -0.01 + 0.004 = -0.006 coin, at the latest mark 150,000,000 -> -900,000 KRW
    assert (by_symbol["BTC"].coin, by_symbol["BTC"].krw) == (D("-0.006"), D("-900000"))
    assert by_symbol["BTC"].venues == {"upbit": D("-0.01"), "binance": D("0.004")}
    # ETH: 0.5 x 5,200,000 = 2,600,000 KRW
    assert by_symbol["ETH"].krw == D("2600000")
    # total: |-900,000| + |2,600,000| = 3,500,000
    assert total_krw(residuals) == D("3500000")
    assert by_symbol["BTC"].describe() == \
        "BTC -0.006 (binance +0.004, upbit -0.01) = 900,000 KRW at 150000000 (hedge price)"
    # a long and a short of the same size on two venues are no exposure
    assert total_krw([residuals[0], Residual("p4", "open", "BTC", "binance", D("0.01"), D("148000000"), TS2)]) == 0
    assert residuals[0].describe() == ("BTC -0.01 on upbit (short: buy 0.01 there to flatten; -1,480,000 KRW at "
                                       f"148000000; hedge p1 open, since {TS1})")
    assert residuals[2].key == "p3:close" and Residual.from_dict(residuals[2].as_dict()) == residuals[2]


@pytest.mark.parametrize("kind", ["memory", "csv", "null"])
def test_residual_records_are_kept_per_book_symbol(tmp_path: Path, kind: str) -> None:
    if kind == "csv":
        from arbframe_storage_csv.storage import CsvStorage

        def storage():
            return CsvStorage({"data_dir": str(tmp_path / "csv")})
    elif kind == "memory":
        shared = MemoryStorage()

        def storage():
            return shared
    else:
        def storage():
            return NullStorage()

    one = ResidualStore(storage(), "upbit", "binance", ["BTC", "eth"], tmp_path / "data")
    btc = Residual("p1", "open", "BTC", "upbit", D("-0.01"), D("148000000"), TS1)
    eth = Residual("p2", "close", "ETH", "binance", D("0.5"), D("5200000"), TS2)
    one.save("BTC", [btc, eth], by="bot-a")  # only BTC's go into BTC's record
    one.save("ETH", [btc, eth], by="bot-a")
    two = ResidualStore(storage(), "upbit", "binance", ["ETH", "BTC"], tmp_path / "data")  # a restarted process
    assert two.load() == [btc, eth]
    assert ResidualStore(storage(), "upbit", "binance", ["ETH"], tmp_path / "data").load() == [eth]
    assert ResidualStore(storage(), "bithumb", "binance", ["BTC"], tmp_path / "data").load() == []  # another book
    two.save("BTC", [], note="flattened by hand")
    assert two.load() == [eth]
    assert record_name("upbit", "binance", "btc") == "residual.upbit-binance-BTC"
    if kind == "null":  # no control records: files in the data dir (one host), as the kill switch
        assert (tmp_path / "data" / "control" / "residual.upbit-binance-ETH.json").exists()
        assert "files under" in two.where


async def test_a_residual_survives_a_restart_and_clears_only_when_flattened(caplog) -> None:
    caplog.set_level("INFO", logger="arbframe.execution")
    registry = CollectorRegistry()
    pair = live_pair(max_residual_krw=D(1000), registry=registry)
    Reconciler(pair.executor)  # as the runner builds it: a hedge the engine records is marked settled
    pair.binance.inject("reject", 1000)
    pair.upbit.inject("reject", 1000, side="buy")  # the unwind (buy back on upbit) is refused too
    report = await hedge(pair)
    await pair.executor.wait_idle()  # the automatic kill switch trip is written off the event loop
    assert (report.residual, report.residual_venue) == (-Q, "upbit")
    # sold 0.01 BTC on upbit at the decision VWAP: the best bid, mid 100,000,000 less one 1,000 KRW tick
    # = 99,999,000 KRW; 0.01 x 99,999,000 = 999,990 KRW unhedged
    assert pair.executor.risk.residual_krw == D("999990")
    assert registry.get_sample_value("arbframe_residual_exposure_krw") == 999990
    assert pair.executor.health().details["residual_exposure"] == \
        "BTC -0.01 (upbit -0.01) = 999,990 KRW at 99999000 (hedge price)"
    assert pair.storage.read_control("residual.upbit-binance-BTC") is None  # not before the engine records it
    pair.executor.settled(report)  # the engine records the hedge: its residual is stored first
    stored = pair.storage.read_control("residual.upbit-binance-BTC")["residuals"]
    assert [(r["position_id"], r["purpose"], r["venue"], r["coin"], r["mark_krw"]) for r in stored] == \
        [("p1", "open", "upbit", "-0.01", "99999000")]
    pair.check(caplog, residual=-Q)

    # a restart: the reconciliation restores it before the first entry and says so
    caplog.clear()
    pair.upbit.clear()
    pair.binance.clear()
    restarted = CollectorRegistry()
    ex = pair.restart(registry=restarted)
    assert ex.risk.residual_krw == 0
    await Reconciler(ex).on_start()
    assert ex.risk.residual_krw == D("999990")
    assert restarted.get_sample_value("arbframe_residual_exposure_krw") == 999990
    why = ("residual exposure 999,990 KRW (BTC -0.01 (upbit -0.01) = 999,990 KRW at 99999000 (hedge price)) over "
           "live.max_residual_krw=1000")
    assert ex.entry_block("BTC", D(1)) == why
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("[RECON]")]
    assert lines[0].startswith("[RECON] residual exposure BTC -0.01 on upbit (short: buy 0.01 there to flatten; "
                               "-999,990 KRW at 99999000; hedge p1 open, since ")
    assert lines[0].endswith("recorded before the restart; flatten it by hand, then arbframe resume --flattened")
    assert lines[-1] == f"[RECON] start-up reconciliation done: 0 hedge(s) settled; entries blocked: {why}"

    # `arbframe resume` alone releases the kill switch; the residual still blocks entries
    state = ex.kill_switch.read()
    assert state.killed and "residual exposure" in state.reason
    await ex.apply_kill(state)
    await ex.apply_kill(ex.kill_switch.resume(by="ops"))
    assert not ex.killed and ex.entry_block("BTC", D(1)) == why
    assert ex.health().status.value == "WARN"
    # `arbframe resume --flattened` names what the operator flattened: dropped, and the record cleared
    await ex.apply_kill(ex.kill_switch.resume(by="ops", flattened=("p1:open",)))
    assert ex.entry_block("BTC", D(1)) is None and ex.risk.residual_krw == 0
    assert restarted.get_sample_value("arbframe_residual_exposure_krw") == 0
    record = pair.storage.read_control("residual.upbit-binance-BTC")
    assert record["residuals"] == [] and "flattened by hand" in record["note"]
    assert any("residual exposure BTC -0.01 on upbit" in r.getMessage() and "cleared: flattened by hand" in
               r.getMessage() for r in caplog.records)
    # nothing comes back after another restart
    ex = pair.restart()
    await Reconciler(ex).on_start()
    assert ex.risk.residual_krw == 0 and ex.entry_block("BTC", D(1)) is None


async def test_a_residual_recorded_after_the_flattened_resume_is_kept(caplog) -> None:
    """The kill switch record keeps naming what was flattened: a later residual (another key) stays."""
    pair = live_pair(max_residual_krw=D(10_000_000))
    ex = pair.executor
    await ex.apply_kill(KillState(False, ts="t1", by="ops", flattened=("p1:open",)))
    pair.binance.inject("reject", 1000)
    pair.upbit.inject("reject", 1000, side="buy")
    report = await hedge(pair, pid="p2")
    ex.settled(report)
    await ex.apply_kill(KillState(False, ts="t1", by="ops", flattened=("p1:open",)))  # the next tick reads it again
    assert [r.key for r in ex.risk.residuals.values()] == ["p2:open"]
    # under live.max_residual_krw: recorded and shown, entries allowed, the kill switch not tripped
    assert not ex.killed and ex.entry_block("BTC", D(1)) is None
    assert ex.health().details["residual_exposure"] == "BTC -0.01 (upbit -0.01) = 999,990 KRW at 99999000 (hedge price)"
    assert ex.health().message == ("live orders; 0 hedge(s) in flight; residual exposure BTC -0.01 (upbit -0.01) = "
                                   "999,990 KRW at 99999000 (hedge price) (under live.max_residual_krw)")


async def test_a_residual_is_marked_to_market_and_blocks_once_the_price_moves_it_over(caplog) -> None:
    """The same residual as above (-0.01 BTC recorded at 99,999,000), marked at the engine's coin mark: under the
    limit at the hedge's price, over it once the mark moves up."""
    pair = live_pair(max_residual_krw=D(1_000_000))
    ex = pair.executor
    pair.binance.inject("reject", 1000)
    pair.upbit.inject("reject", 1000, side="buy")
    ex.settled(await hedge(pair))
    # no mark known: at the hedge's price, |-0.01 x 99,999,000| = 999,990 KRW, under 1,000,000
    assert ex.risk.residual_krw == D("999990") and ex.entry_block("BTC", D(1)) is None
    marks = {"BTC": D("99000000")}
    ex.risk.mark_source = lambda: marks
    # marked to market: 0.01 x 99,000,000 = 990,000 KRW
    assert ex.risk.residual_krw == D("990000") and ex.entry_block("BTC", D(1)) is None
    assert ex.health().details["residual_exposure"] == "BTC -0.01 (upbit -0.01) = 990,000 KRW at 99000000 (market mark)"
    marks["BTC"] = D("100000001")  # the short loses: 0.01 x 100,000,001 = 1,000,000.01 KRW, over the limit
    assert ex.risk.residual_krw == D("1000000.01")
    assert ex.entry_block("BTC", D(1)) == ("residual exposure 1,000,000 KRW (BTC -0.01 (upbit -0.01) = 1,000,000 KRW "
                                           "at 100000001 (market mark)) over live.max_residual_krw=1000000")
    assert exposure(ex.risk.residuals.values(), {"ETH": D(1)})["BTC"].marked is False  # another symbol's mark


async def test_a_store_that_cannot_say_keeps_entries_blocked(caplog) -> None:
    class Broken(MemoryStorage):
        def read_control(self, name):
            if name.startswith("residual."):
                raise ConnectionError("database away")
            return super().read_control(name)

    pair = live_pair(storage=Broken())
    ex = pair.restart()
    await Reconciler(ex).on_start()
    assert "residual exposure could not be read" in ex.entry_block("BTC", D(1))
    assert any("[RECON] residual exposure could not be read" in r.getMessage() for r in caplog.records)


async def test_a_residual_record_that_cannot_be_written_is_retried(caplog) -> None:
    class Flaky(MemoryStorage):
        fail = True

        def write_control(self, name, value):
            if self.fail and name.startswith("residual."):
                raise ConnectionError("database away")
            super().write_control(name, value)

    storage = Flaky()
    pair = live_pair(storage=storage, max_residual_krw=D(10_000_000))
    pair.binance.inject("reject", 1000)
    pair.upbit.inject("reject", 1000, side="buy")
    report = await hedge(pair)
    pair.executor.settled(report)
    assert any("residual exposure of BTC NOT stored" in r.getMessage() for r in caplog.records)
    assert storage.read_control("residual.upbit-binance-BTC") is None
    storage.fail = False
    await pair.executor.apply_kill(KillState())  # the next tick
    assert [r["coin"] for r in storage.read_control("residual.upbit-binance-BTC")["residuals"]] == ["-0.01"]


def test_the_kill_switch_record_carries_the_flattened_keys(tmp_path: Path) -> None:
    from arbframe_storage_csv.storage import CsvStorage

    KillSwitch(CsvStorage({"data_dir": str(tmp_path)})).resume(by="ops", flattened=("p1:open", "p2:close"))
    state = KillSwitch(CsvStorage({"data_dir": str(tmp_path)})).read()
    assert (state.killed, state.flattened) == (False, ("p1:open", "p2:close"))
    assert KillState.from_mapping({"killed": False, "flattened": "garbage"}).flattened == ()


async def test_resume_takes_a_new_balance_baseline_also_when_the_switch_was_not_tripped(caplog) -> None:
    """A trade by hand (a residual flattened, a deposit) shows as balance drift and pauses entries; `arbframe resume`
    (plain or --flattened) takes the venues' balances as the new baseline even though nothing was killed."""
    from decimal import Decimal

    from arbframe.service.runner import TradingService

    pair = live_pair()
    service = TradingService.__new__(TradingService)  # only what before_tick reads
    service.executor, service.kill_switch = pair.executor, pair.executor.kill_switch
    service.reconciler, service.engine = Reconciler(pair.executor), None
    service._kill_read_failed, service._resume_seen = False, None
    await service.reconciler.refresh_balances(baseline=True)
    await service.before_tick()  # the first read: no baseline taken (the start-up reconciliation took one)
    pair.upbit.balances["BTC"] += Decimal("0.01")  # bought back by hand
    await service.reconciler.refresh_balances()
    assert pair.executor.entry_block("BTC", D(1)).startswith("balance drift: upbit BTC holds 1.01")
    await service.before_tick()  # the same stored state: still paused
    assert pair.executor.entry_block("BTC", D(1)).startswith("balance drift")
    pair.executor.kill_switch.resume(by="ops")
    await service.before_tick()
    assert pair.executor.entry_block("BTC", D(1)) is None
    assert pair.executor.wallets["upbit"].get("BTC") == D("1.01")


async def test_a_hedge_settled_by_the_reconciliation_can_leave_a_residual(caplog) -> None:
    """kill -9 between the legs; at the restart Upbit refuses the unwind: the reconciliation records the residual
    (valued at the Upbit order's own price bound: the process that knew the decision's VWAP is gone) and blocks
    entries before the first one; the engine's record of the hedge stores it."""
    from tests.test_execution_reconcile import crash_after_first_leg

    caplog.set_level("INFO", logger="arbframe.execution")
    pair = live_pair(max_residual_krw=D(1000))
    await crash_after_first_leg(pair, binance_places=False)
    pair.upbit.inject("reject", 1000, side="buy")
    ex = pair.restart()
    [report] = await Reconciler(ex).on_start()
    assert (report.status, report.residual, report.residual_venue) == ("unwound", -Q, "upbit")
    # the Upbit sell's bound: VWAP 99,999,000 less 20 bps = 99,799,002, on the 1,000 KRW grid towards the book:
    # 99,800,000; 0.01 x 99,800,000 = 998,000 KRW
    assert ex.risk.residual_krw == D("998000")
    assert ex.entry_block("BTC", D(1)) == ("kill switch: auto: residual exposure 998,000 KRW (BTC -0.01 (upbit "
                                          "-0.01) = 998,000 KRW at 99800000 (hedge price)) over "
                                          "live.max_residual_krw=1000")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("[RECON]")]
    assert any("was not recorded" in line and "unwinding the excess on upbit" in line for line in lines)
    assert lines[-1].startswith("[RECON] start-up reconciliation done: 1 hedge(s) settled; entries blocked: "
                                "residual exposure 998,000 KRW")
    ex.settled(report)  # the engine's first tick records it
    stored = pair.storage.read_control("residual.upbit-binance-BTC")["residuals"]
    assert [(r["coin"], r["mark_krw"]) for r in stored] == [("-0.01", "99800000")]
    pair.check(caplog, residual=-Q)


async def test_a_residual_on_a_symbol_no_longer_traded_is_shown_not_counted(caplog) -> None:
    """XRP left a residual, then was taken out of the runner's symbols: the restart says so (the venue pair's index
    finds it) but does not count it against this book's entries; its own runner (or status) still does."""
    caplog.set_level("INFO", logger="arbframe.execution")
    pair = live_pair()
    xrp = Residual("x1", "open", "XRP", "upbit", D("100"), D("3100"), TS1)
    ResidualStore(pair.storage, "upbit", "binance", ["XRP"]).save("XRP", [xrp])
    assert pair.storage.read_control("residual.upbit-binance")["symbols"] == ["XRP"]
    ex = pair.restart()  # trades BTC only
    await Reconciler(ex).on_start()
    assert ex.risk.residual_krw == 0 and ex.entry_block("BTC", D(1)) is None
    assert any(r.getMessage().startswith("[RECON] residual exposure XRP +100 on upbit (long: sell 100 there to "
                                         "flatten; 310,000 KRW at 3100; hedge x1 open") and
               "on a symbol this runner does not trade" in r.getMessage() for r in caplog.records)
    assert ResidualStore(pair.storage, "upbit", "binance", ["BTC"]).load(every_symbol=True) == [xrp]
    ResidualStore(pair.storage, "upbit", "binance", ["XRP"]).save("XRP", [])  # flattened: out of the index too
    assert pair.storage.read_control("residual.upbit-binance")["symbols"] == []
