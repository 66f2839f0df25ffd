"""Storage for live execution through the kernel's writer: an order state is on disk when write_order_states
returns (in the order journal by default, in the driver with ``order_journal: off``), survives a kill -9 and is
handed to the driver exactly once after it, order rows read back, control records pass through."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from arbframe.builtins.storage import MemoryStorage, NullStorage
from arbframe.core.models import Order, OrderStatus, OrderType, Side, utcnow
from arbframe.core.records import order_row, to_row
from arbframe.execution.orders import latest_states
from arbframe.kernel.config import order_journal_mode
from arbframe.kernel.storage_writer import StorageWriter


def order(seq: int, status: OrderStatus, ts=None) -> Order:
    return Order(id=f"af00-odn0.{seq}", ts=ts or utcnow(), exchange="upbit", symbol="BTC", side=Side.SELL,
                 order_type=OrderType.LIMIT, qty=Decimal("0.01"), price=Decimal(1), status=status,
                 position_id="p1", client_order_id="af00-odn0")


def foreign(seq: int, status: OrderStatus) -> Order:
    return replace(order(seq, status), id=f"af00-ofn0.{seq}", exchange="binance", side=Side.BUY,
                   client_order_id="af00-ofn0")


def test_order_state_is_durable_when_the_call_returns(tmp_path) -> None:
    """``order_journal: off``: the driver has it on disk when the call returns (and what was logged before it)."""
    from arbframe_storage_csv.storage import CsvStorage

    writer = StorageWriter(CsvStorage({"data_dir": str(tmp_path / "csv")}), spool_dir=tmp_path / "spool",
                           order_journal="off")
    try:
        assert not writer.order_states_local and writer.journal_path is None
        writer.log_order(order(1, OrderStatus.SENT))
        writer.write_order_state(order(2, OrderStatus.FILLED))
        text = (tmp_path / "csv" / "orders.csv").read_text()  # on disk, not in a queue
        assert "af00-odn0.1" in text and "af00-odn0.2" in text
        assert [o.status for o in writer.load_orders()] == [OrderStatus.SENT, OrderStatus.FILLED]
        assert writer.load_orders(utcnow() + timedelta(hours=1)) == []
        writer.write_control("kill_switch", {"killed": True})
        assert writer.read_control("kill_switch") == {"killed": True}
        assert (tmp_path / "csv" / "control" / "kill_switch.json").exists()
    finally:
        writer.close()


class Held(MemoryStorage):
    """A driver that takes nothing until ``release`` is set (a slow disk, a database holding a lock)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def log_order(self, order) -> None:
        self.release.wait(10)
        super().log_order(order)


def journal_rows(path: Path) -> list[list[str]]:
    return [json.loads(line)["r"] for line in path.read_text().splitlines()]


def test_journaled_states_are_on_disk_before_the_driver_has_them(tmp_path) -> None:
    """The default (``os``): one journal write, the driver not waited for; the journal empties once the driver has
    flushed every state in it."""
    held = Held()
    writer = StorageWriter(held, spool_dir=tmp_path / "spool", instance_id="runner-1")
    try:
        assert writer.order_states_local and writer.order_journal == "os"
        writer.write_order_states([order(1, OrderStatus.SENT), foreign(1, OrderStatus.SENT)])
        rows = journal_rows(writer.journal_path)  # on disk when the call returned
        assert [r[0] for r in rows] == ["af00-odn0.1", "af00-ofn0.1"]
        assert [r[-1] for r in rows] == ["runner-1", "runner-1"]  # stamped like every record
        assert held.orders == [] and writer.journal_depth == 2  # the driver has not got them
        held.release.set()
        assert writer.sync(5)
        assert [o.id for o in held.orders] == ["af00-odn0.1", "af00-ofn0.1"]
        assert writer.journal_depth == 0 and writer.journal_path.read_text() == ""
        assert [o.status for o in writer.load_orders()] == [OrderStatus.SENT, OrderStatus.SENT]
    finally:
        held.release.set()
        writer.close()


def test_journal_rows_read_back_exactly(tmp_path) -> None:
    """``order_row`` (the journal's fast path) spells an order as ``to_row`` does, so a journaled state reads
    back as the order it was."""
    t = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=9)))
    full = replace(order(3, OrderStatus.PARTIALLY_FILLED, t), filled_qty=Decimal("0.004"),
                   avg_price=Decimal("1.50"), fee=Decimal("0.0000001"), fee_currency="KRW", exchange_order_id="x-9",
                   simulated=True, instance_id="i")
    bare = Order(id="b.0", ts=utcnow(), exchange="binance", symbol="ETH", side=Side.BUY,
                 order_type=OrderType.MARKET, qty=Decimal("1E-8"))
    for o in (full, bare):
        assert order_row(o) == to_row(o)
    writer = StorageWriter(Held(), spool_dir=tmp_path / "spool")
    try:
        writer.write_order_states([full, bare])
        items, _ = writer._journal.read()
        assert [record for _m, record in items] == [full, replace(bare, ts=bare.ts)]
    finally:
        writer.inner.release.set()
        writer.close()


CHILD = """
import os, signal, sys, threading
from pathlib import Path
sys.path.insert(0, {root!r})
from tests.test_execution_storage import order, foreign, OrderStatus
from arbframe.kernel.storage_writer import StorageWriter
from arbframe_storage_csv.storage import CsvStorage

class Stuck(CsvStorage):
    def log_order(self, order):  # the driver never gets it: only the journal holds the states
        threading.Event().wait()

tmp = Path({tmp!r})
writer = StorageWriter(Stuck({{"data_dir": str(tmp / "csv")}}), spool_dir=tmp / "spool", instance_id="r1")
writer.log_order(order(0, OrderStatus.NEW))  # the writer thread is stuck in the driver from now on
writer.write_order_states([order(1, OrderStatus.SENT), foreign(1, OrderStatus.SENT)])
print("stored", flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # as if killed between the write and the send
"""


def test_kill_9_after_the_journal_write_then_restart_finds_the_states(tmp_path) -> None:
    """A real SIGKILL right after ``write_order_states`` returned, with the driver never having had the states:
    the next writer on the same store hands them to the driver before any read, once; reads find them by client
    id."""
    from arbframe_storage_csv.storage import CsvStorage

    root = str(Path(__file__).resolve().parents[1])
    proc = subprocess.run([sys.executable, "-c", CHILD.format(root=root, tmp=str(tmp_path))], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert proc.stdout.strip() == "stored"
    csv_orders = tmp_path / "csv" / "orders.csv"
    assert not csv_orders.exists() or "af00-odn0.1" not in csv_orders.read_text()
    for _restart in range(2):  # the second start finds the journal empty: nothing handed over twice
        writer = StorageWriter(CsvStorage({"data_dir": str(tmp_path / "csv")}), spool_dir=tmp_path / "spool",
                               instance_id="r1")
        try:
            states = latest_states(writer.load_orders() or [])
            assert {cid: o.status for cid, o in states.items()} == {"af00-odn0": OrderStatus.SENT,
                                                                    "af00-ofn0": OrderStatus.SENT}
        finally:
            writer.close()
    ids = [line.split(",")[0] for line in csv_orders.read_text().splitlines()[1:]]
    assert sorted(ids) == ["af00-odn0.1", "af00-ofn0.1"]  # each once: the journal is not replayed again


def test_a_journal_the_driver_already_holds_is_not_handed_over_twice(tmp_path) -> None:
    """A process killed after the driver flushed but before the journal was emptied: the copies are skipped by
    id; a torn last line (a write the killed process did not finish) is cut off."""
    from arbframe_storage_csv.storage import CsvStorage

    sent, filled = order(1, OrderStatus.SENT), order(2, OrderStatus.FILLED)
    csv = CsvStorage({"data_dir": str(tmp_path / "csv")})
    csv.log_order(sent)
    csv.close()
    spool = tmp_path / "spool"
    spool.mkdir()
    line = '{"m":"log_order","t":"orders","r":%s}\n'
    (spool / "csv-default.journal").write_text(
        line % json.dumps(to_row(sent)) + line % json.dumps(to_row(filled)) + '{"m":"log_order","t":"ord')
    writer = StorageWriter(CsvStorage({"data_dir": str(tmp_path / "csv")}), spool_dir=spool)
    try:
        writer.write_order_state(order(3, OrderStatus.FILLED))  # appended after the cut: a whole line
        assert [o.id for o in writer.load_orders()] == ["af00-odn0.1", "af00-odn0.2", "af00-odn0.3"]
    finally:
        writer.close()
    assert writer.journal_path.read_text() == ""


def test_journal_failure_raises_and_nothing_is_queued(tmp_path, monkeypatch) -> None:
    held = Held()
    held.release.set()
    writer = StorageWriter(held, spool_dir=tmp_path / "spool")
    try:
        def full(fd, data):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr("arbframe.kernel.storage_writer.os.write", full)
        with pytest.raises(OSError, match="No space"):
            writer.write_order_states([order(1, OrderStatus.SENT)])
        monkeypatch.undo()
        assert writer.sync(5) and held.orders == [] and writer.journal_depth == 0
        writer.write_order_states([order(2, OrderStatus.SENT)])
        assert writer.sync(5) and [o.id for o in held.orders] == ["af00-odn0.2"]
    finally:
        writer.close()


def test_fsync_mode_syncs_each_write_and_is_not_local(tmp_path, monkeypatch) -> None:
    synced = []
    monkeypatch.setattr("arbframe.kernel.storage_writer.os.fdatasync", synced.append)
    writer = StorageWriter(MemoryStorage(), spool_dir=tmp_path / "spool", order_journal="fsync")
    try:
        assert not writer.order_states_local  # a disk flush: the executor calls it off the event loop
        writer.write_order_states([order(1, OrderStatus.SENT), foreign(1, OrderStatus.SENT)])
        assert len(synced) == 1  # both legs, one flush
    finally:
        writer.close()


def test_journal_is_kept_while_a_guard_still_holds_records(tmp_path) -> None:
    """The service's isolation guard swallows a driver's failed flush: the journal must not be emptied on it."""
    from prometheus_client import CollectorRegistry

    from arbframe.service.isolation import IsolatedStorage

    class Failing(MemoryStorage):
        fail = True

        def flush(self) -> None:
            if self.fail:
                raise OSError("disk full")
            super().flush()

    driver = Failing()
    writer = StorageWriter(IsolatedStorage(driver, "storage:memory", CollectorRegistry()),
                           spool_dir=tmp_path / "spool")
    try:
        writer.write_order_states([order(1, OrderStatus.SENT)])
        assert writer.sync(5)
        assert writer.journal_depth == 1  # the flush failed (and was isolated): still journaled
        driver.fail = False
        assert writer.sync(5)
        assert writer.journal_depth == 0
    finally:
        writer.close()


def test_order_journal_mode_follows_csv_fsync() -> None:
    assert order_journal_mode({"storage": {"backend": "csv"}}) == "os"
    assert order_journal_mode({"storage": {"backend": "csv", "csv": {"fsync": True}}}) == "fsync"
    assert order_journal_mode({"storage": {"csv": {"fsync": True}, "writer": {"order_journal": "off"}}}) == "off"
    with pytest.raises(ValueError, match="order_journal"):
        StorageWriter(MemoryStorage(), spool_dir=Path("/nonexistent"), order_journal="sometimes")


def test_a_storage_without_orders_or_controls_says_so(tmp_path) -> None:
    writer = StorageWriter(NullStorage(), spool_dir=tmp_path / "spool")
    try:
        assert writer.load_orders() is None
        with pytest.raises(NotImplementedError):
            writer.read_control("kill_switch")
    finally:
        writer.close()


def on_disk(writer: StorageWriter, csv_dir: Path) -> dict[str, list[str]]:
    """What a process killed now would leave for the next start: client id -> stored states, from the order
    journal and from the CSV driver's file."""
    from arbframe.core.records import columns

    cols = columns(Order)
    rows = journal_rows(writer.journal_path)
    path = csv_dir / "orders.csv"
    if path.exists():
        import csv

        with path.open(newline="") as fh:
            rows += [[r[c] for c in cols] for r in csv.DictReader(fh)]
    out: dict[str, list[str]] = {}
    for row in rows:
        out.setdefault(row[cols.index("client_order_id")], []).append(row[cols.index("status")])
    return out


async def test_sent_is_on_disk_before_each_request_is_sent(tmp_path) -> None:
    """The live executor over the kernel's writer and the CSV driver: when a venue's ``place_order`` is called,
    that order's ``sent`` state is already on disk (journal or CSV), so a kill -9 at that moment leaves it for the
    reconciliation to look up by client id."""
    from arbframe_storage_csv.storage import CsvStorage

    from arbframe.testing.execution_kit import live_pair
    from tests.test_execution_live import Q, hedge

    writer = StorageWriter(CsvStorage({"data_dir": str(tmp_path / "csv")}), spool_dir=tmp_path / "spool",
                           instance_id="r1")
    try:
        pair = live_pair(storage=writer, data_dir=tmp_path / "data")
        assert pair.executor._inline  # the journal write runs on the loop: no thread hop before sending
        seen: dict[str, list[str]] = {}
        for exchange in (pair.up, pair.bn):
            def wrap(real):
                async def place(request):
                    seen[request.client_order_id] = on_disk(writer, tmp_path / "csv").get(
                        request.client_order_id, [])
                    return await real(request)
                return place
            exchange.place_order = wrap(exchange.place_order)
        report = await hedge(pair)
        assert (report.status, report.hedged_qty) == ("filled", Q)
        assert len(seen) == 2 and all(states == ["sent"] for states in seen.values()), seen
        assert writer.sync(5)
        pair.check()
        stored = latest_states(writer.load_orders() or [])
        assert {o.status for o in stored.values()} == {OrderStatus.FILLED} and set(stored) == set(seen)
    finally:
        writer.close()


async def test_a_state_the_storage_refuses_is_never_sent() -> None:
    from arbframe.testing.execution_kit import live_pair
    from tests.test_execution_live import hedge

    class Refusing(MemoryStorage):
        def write_order_states(self, orders) -> None:
            raise OSError("No space left on device")

    pair = live_pair(storage=Refusing())
    report = await hedge(pair)
    assert report.status == "rejected" and "storage did not take its state" in report.reason
    assert pair.upbit.placements == [] and pair.binance.placements == []
