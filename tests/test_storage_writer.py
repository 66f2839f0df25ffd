"""The kernel's StorageWriter: the tick never waits for the driver; stalls spool; close is bounded; order kept."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

from arbframe.builtins.storage import MemoryStorage
from arbframe.kernel.book import BookKey
from arbframe.kernel.interfaces import HealthStatus
from arbframe.kernel.storage_writer import StorageWriter
from arbframe.testing.storage_kit import closed, sample_position


class Gate(MemoryStorage):
    """MemoryStorage whose flush blocks while the gate is closed (a hung server)."""

    name = "gate"

    def __init__(self) -> None:
        super().__init__()
        self.open = threading.Event()
        self.open.set()
        self.closed_calls = 0
        self.abandoned = False

    def flush(self) -> None:
        self.open.wait()
        super().flush()

    def close(self) -> None:
        self.open.wait()
        self.closed_calls += 1

    def abandon(self) -> None:
        self.abandoned = True


def wait_for(cond, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def writer(tmp_path: Path, inner: Gate, **kw) -> StorageWriter:
    book = BookKey("upbit", "binance", ("BTC",), "bot-a")
    return StorageWriter(inner, spool_dir=tmp_path / "spool", instance_id="bot-a", book=book, **kw)


def test_records_pass_through_in_order_stamped_with_the_instance(tmp_path: Path) -> None:
    inner = Gate()
    w = writer(tmp_path, inner)
    p = sample_position("p1")
    w.log_position_open(p)
    w.log_position_close(closed(p))
    w.flush()
    assert w.sync(5)
    got = [(x.id, x.is_open, x.instance_id) for x in inner.positions]
    assert got == [("p1", True, "bot-a"), ("p1", False, "bot-a")]
    assert w.health().status is HealthStatus.OK and w.active_backend() == "gate"
    w.close()
    assert inner.closed_calls == 1


def test_a_hung_driver_never_blocks_the_tick_spools_and_replays_in_order(tmp_path: Path) -> None:
    inner = Gate()
    w = writer(tmp_path, inner, stall_seconds=0.1)
    inner.open.clear()
    w.log_position_open(sample_position("p1"))
    w.flush()  # the writer now hangs in inner.flush
    assert wait_for(lambda: w.stalled_for() > 0.15)
    worst = 0.0
    for i in range(200):
        started = time.perf_counter()
        w.log_position_open(sample_position(f"q{i}"))
        w.flush()
        worst = max(worst, time.perf_counter() - started)
    assert worst < 0.05
    assert w.diverting and w.spool_depth == 200 and "spool" in w.active_backend()
    assert w.health().status is HealthStatus.WARN
    w.log_position_close(closed(sample_position("q0")))
    inner.open.set()
    assert wait_for(lambda: not w.diverting and w.spool_depth == 0)
    assert w.sync(5)
    ids = [p.id for p in inner.positions]
    assert ids[0] == "p1" and ids[1:201] == [f"q{i}" for i in range(200)] and ids[-1] == "q0"
    assert not inner.positions[-1].is_open
    w.close()


def test_close_is_bounded_and_keeps_everything_for_the_next_run(tmp_path: Path) -> None:
    inner = Gate()
    w = writer(tmp_path, inner, close_seconds=1.0)
    inner.open.clear()
    for i in range(5):
        w.log_position_open(sample_position(f"p{i}"))
    w.flush()
    assert wait_for(lambda: w.stalled_for() > 0.05)
    w.log_position_open(sample_position("late"))
    started = time.monotonic()
    w.close()
    assert time.monotonic() - started < 2.0
    assert inner.abandoned
    # the next run replays what the hung driver may not have made durable, and the late record
    nxt = Gate()
    w2 = writer(tmp_path, nxt)
    assert {p.id for p in w2.load_positions()} == {"p0", "p1", "p2", "p3", "p4", "late"}
    assert w2.sync(5)
    assert w2.spool_depth == 0 and {p.id for p in nxt.positions} == {"p0", "p1", "p2", "p3", "p4", "late"}
    w2.close()
    inner.open.set()


def test_a_full_queue_spools_instead_of_waiting(tmp_path: Path) -> None:
    inner = Gate()
    w = writer(tmp_path, inner, queue_size=3, stall_seconds=60)
    inner.open.clear()
    w.flush()
    assert wait_for(lambda: w.stalled_for() > 0)
    for i in range(10):
        w.log_error(replace(_error(i)))
    assert w.diverting and w.spool_depth >= 7
    inner.open.set()
    assert wait_for(lambda: not w.diverting)
    assert w.sync(5)
    assert [e.id for e in inner.errors] == [f"e{i}" for i in range(10)]
    w.close()


def test_positions_are_the_books_and_totals_the_instances(tmp_path: Path) -> None:
    inner = Gate()
    for pid, symbol, instance, is_open in (("a", "BTC", "bot-a", True), ("b", "ETH", "bot-b", True),
                                           ("c", "BTC", "bot-a", False), ("d", "ETH", "bot-b", False),
                                           ("e", "BTC", "", False), ("f", "ETH", "", False)):
        p = replace(sample_position(pid), symbol=symbol, instance_id=instance)
        inner.positions.append(p if is_open else closed(p))
    w = writer(tmp_path, inner)
    assert [p.id for p in w.load_positions()] == ["a"]
    assert sorted(p.id for p in w.load_closed_positions()) == ["c", "e"]
    w.close()


def _error(i: int):
    from arbframe.core.models import ErrorRecord, utcnow

    return ErrorRecord(id=f"e{i}", ts=utcnow(), component="test", message=f"m{i}")


def test_the_operator_reads_go_through_the_writer_and_see_spooled_records(tmp_path: Path) -> None:
    """``load_last_fx_rate`` / ``load_last_spreads`` reach the driver behind the writer (after what is queued);
    what a hung driver left in the spool is read back by the next run; a driver keeping no history says None."""
    from datetime import timedelta

    from arbframe.builtins.storage import NullStorage
    from arbframe.testing.storage_kit import T0, sample_records

    base_fx, base_spread = sample_records()["fx_rates"][0], sample_records()["spreads"][0]
    inner = Gate()
    w = writer(tmp_path, inner, close_seconds=1.0)
    old, new = base_fx, replace(base_fx, id="fx-new", ts=T0 + timedelta(seconds=5))
    w.log_fx_rate(new)
    w.log_fx_rate(old)
    w.log_spread(base_spread)
    assert w.load_last_fx_rate() == replace(new, instance_id="bot-a")
    assert [s.id for s in w.load_last_spreads(["BTC"]) or []] == [base_spread.id]
    inner.open.clear()  # hung: the next records stay in the spool at close
    w.flush()
    assert wait_for(lambda: w.stalled_for() > 0.05)
    newest = replace(base_fx, id="fx-newest", ts=T0 + timedelta(seconds=9))
    w.log_fx_rate(newest)
    w.close()
    inner.open.set()
    w2 = writer(tmp_path, Gate())
    assert w2.load_last_fx_rate().id == "fx-newest"
    w2.close()
    none = StorageWriter(NullStorage(), spool_dir=tmp_path / "spool-null")
    assert none.load_last_fx_rate() is None and none.load_last_spreads(["BTC"]) is None
    none.close()
