"""``StorageWriter``: the non-blocking front the kernel puts before every storage driver.

Why in the kernel and not in a plugin: every driver (CSV on a slow disk, PostgreSQL behind a held table lock or
a frozen server, a third party's) can stall, and the tick must not care which one it has. The tick only ever
appends to a bounded in-memory queue (or, while the writer is stalled, to a local spool file); one writer thread
hands the records to the driver, in order, and calls its ``flush``.

- **Stalls.** When the driver call in progress has taken longer than ``stall_seconds``, or the queue is full, the
  writer *diverts*: every new record goes to the spool, a JSON-lines file under
  ``<storage.csv.data_dir>/storage_spool/`` (records already queued are older and go to the driver first; after a
  record the driver refused, queued ones follow it into the spool, so the order is always kept). When a driver
  call returns and the driver flushes again, the spool is replayed into it in order and the writer goes back to
  the queue. Records keep their ids, so a
  replay into PostgreSQL is idempotent.
- **Shutdown** (:meth:`close`) is bounded by ``close_seconds``: the writer drains the queue, flushes and closes the
  driver; if it does not finish in time (the database hangs), the records still queued and those handed to the
  driver since its last successful flush go to the spool (fsync-ed), the driver is told to let go
  (``abandon``) and ``close`` returns. The next start replays the spool first.
- **Order journal** (``storage.writer.order_journal``, docs/LIVE.md "Durability"). The execution layer's order
  states (:meth:`StorageWriter.write_order_states`: ``sent`` before a request leaves, then every answer) are first
  appended to a write-ahead journal, ``<spool_dir>/<stem>.journal``: one ``write(2)`` of JSON lines on a file kept
  open (``os``: in the operating system's hands when the call returns, so it survives the process being killed;
  ``fsync``: ``fdatasync`` too, so it survives power loss), then queued for the driver without waking the writer
  thread (it takes them at its next wake-up, within ``_POLL_SECONDS``); the call does not wait for the driver.
  The journal is emptied once the driver has flushed every state in it. At start, states left in a journal by a
  process that died are handed to the driver first (those it already holds, by id, are skipped), before any
  read. ``off``: no journal, the call waits until the driver has flushed them.
- **Instance id.** Every record without one is stamped with ``service.instance_id`` on its way in.
- **Book.** Open positions are resumed for the runner's own symbols and venues; closed positions (PnL totals)
  are the runner's own instance's (rows from before ``instance_id`` existed count for the runner trading their
  symbol).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from json.encoder import encode_basestring
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from arbframe.core.models import ErrorRecord, FxRate, Order, Position, Spread, Trade
from arbframe.core.records import (
    TABLE_OF,
    TABLES,
    columns,
    from_row,
    newest_fx_rate,
    newest_spreads,
    order_row,
    to_row,
)
from arbframe.kernel.book import BookKey, BookLock, safe_name
from arbframe.kernel.hookspecs import hookimpl
from arbframe.kernel.interfaces import HealthCheck, HealthResult, HealthStatus, PluginContext, Storage

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger("arbframe.storage.writer")

BACKEND = "writer"
_STOP = ("stop", None)
#: the writer thread looks at its queue at least this often (items queued quietly wait at most this long)
_POLL_SECONDS = 0.2
#: a str as a JSON string literal, non-ASCII kept (``json.dumps(s, ensure_ascii=False)``; C-implemented)
_json_string: Callable[[str], str] = encode_basestring
#: ``storage.writer.order_journal`` values (module docstring)
ORDER_JOURNAL_MODES = ("os", "fsync", "off")
_LOG_METHODS = ("log_spread", "log_position_open", "log_position_close", "log_order", "log_trade", "log_fx_rate",
                "log_error")


class RecordSpool:
    """Append-only JSON lines ``{"m": method, "t": table, "r": [row]}``; one process per file (``flock``).

    A file held by another live process makes this one use ``<stem>.<pid>.spool``; files of processes that died
    are adopted (appended here, then removed) when a spool opens.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._handle: IO[str] | None = self._lock(path)
        if self._handle is None:
            raise BlockingIOError(f"{path} is in use")
        self.depth = sum(1 for _ in self._entries(self.path))

    @staticmethod
    def _lock(path: Path) -> IO[str] | None:
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held while the spool is open
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return None
        return handle

    @classmethod
    def open_for(cls, path: Path) -> RecordSpool:
        try:
            spool = cls(path)
        except BlockingIOError:
            spool = cls(path.with_name(f"{path.stem}.{os.getpid()}{path.suffix}"))
        for other in sorted(path.parent.glob(f"{path.stem}.*{path.suffix}")):
            if other == spool.path:
                continue
            handle = cls._lock(other)
            if handle is None:
                continue  # a live process owns it
            try:
                entries = list(cls._entries(other))
                if entries:
                    log.warning("adopting %d records spooled by an earlier process in %s", len(entries), other)
                    spool.append_raw(entries)
                    spool.sync()
                other.unlink(missing_ok=True)
            finally:
                handle.close()
        return spool

    def __len__(self) -> int:
        return self.depth

    @staticmethod
    def _entries(path: Path) -> Iterable[dict[str, Any]]:
        with open(path, encoding="utf-8") as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.endswith("\n"):
                    log.warning("%s:%d: torn last spool entry (interrupted write) ignored", path, number)
                    break
                try:
                    entry = json.loads(raw)
                except ValueError as exc:
                    log.error("%s:%d: unreadable spool entry skipped: %s", path, number, exc)
                    continue
                yield entry

    def append(self, items: Iterable[tuple[str, Any]]) -> int:
        return self.append_raw(
            {"m": method, "t": TABLE_OF[type(record)], "r": to_row(record)} for method, record in items
        )

    def append_raw(self, entries: Iterable[dict[str, Any]]) -> int:
        if self._handle is None:
            raise RuntimeError(f"spool {self.path} is closed")
        lines = [json.dumps(e, separators=(",", ":"), ensure_ascii=False) + "\n" for e in entries]
        if lines:
            self._handle.seek(0, os.SEEK_END)
            self._handle.write("".join(lines))
            self._handle.flush()  # in the operating system's hands: survives the process; fsync on close
            self.depth += len(lines)
        return len(lines)

    def read(self) -> tuple[list[tuple[str, Any]], int]:
        """Every (method, record) spooled, and the byte offset they end at."""
        if self._handle is None:
            return [], 0
        self._handle.flush()
        size = self.path.stat().st_size
        out: list[tuple[str, Any]] = []
        with open(self.path, encoding="utf-8") as handle:
            text = handle.read(size)
        end = text.rfind("\n") + 1
        for number, raw in enumerate(text[:end].splitlines(), start=1):
            try:
                entry = json.loads(raw)
                cls = TABLES[entry["t"]]
                record: Any = from_row(cls, dict(zip(columns(cls), entry["r"], strict=True)))
                method = entry["m"] if entry["m"] in _LOG_METHODS else _METHOD_OF[entry["t"]]
            except (ValueError, KeyError, TypeError) as exc:
                log.error("%s:%d: unreadable spool entry skipped: %s", self.path, number, exc)
                continue
            out.append((method, record))
        return out, len(text[:end].encode("utf-8"))

    def drop_head(self, offset: int) -> None:
        """The first ``offset`` bytes were replayed: keep only what was appended after them."""
        if self._handle is None:
            return
        self._handle.flush()
        with open(self.path, "rb") as handle:
            handle.seek(offset)
            tail = handle.read()
        self._handle.seek(0)
        self._handle.truncate(0)
        if tail:
            self._handle.write(tail.decode("utf-8"))
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.depth = tail.count(b"\n")

    def sync(self) -> None:
        if self._handle is not None:
            self._handle.flush()
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        if self._handle is not None:
            try:
                self.sync()
            finally:
                self._handle.close()
                self._handle = None


_METHOD_OF = {"spreads": "log_spread", "positions": "log_position_close", "orders": "log_order",
              "trades": "log_trade", "fx_rates": "log_fx_rate", "errors": "log_error"}


class OrderJournal(RecordSpool):
    """The write-ahead journal of order states: the spool's file format and locking, appended with one
    ``os.write`` per call on the ``O_APPEND`` descriptor it keeps open (``fsync``: then ``fdatasync``)."""

    fsync = False

    def __init__(self, path: Path) -> None:  # the spool's, with the torn tail cut before counting
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._handle = self._lock(path)
        if self._handle is None:
            raise BlockingIOError(f"{path} is in use")
        self._fd = self._handle.fileno()
        self._size = self._cut_torn_tail()
        self.depth = sum(1 for _ in self._entries(path))

    def _cut_torn_tail(self) -> int:
        """Cut an unterminated last line off (a write a killed process did not finish; its call never returned,
        so nothing was sent on it): the next append must start a line. The file's size after."""
        size = os.fstat(self._fd).st_size
        if size == 0 or os.pread(self._fd, 1, size - 1) == b"\n":
            return size
        tail = os.pread(self._fd, min(size, 1 << 20), max(0, size - (1 << 20)))
        keep = max(0, size - len(tail)) + tail.rfind(b"\n") + 1
        os.ftruncate(self._fd, keep)
        log.warning("%s: torn last entry (%d bytes, an interrupted write) cut off", self.path, size - keep)
        return keep

    def append_orders(self, orders: Sequence[Order]) -> None:
        """``orders`` appended whole, or not at all (raises; a partial write is cut off again)."""
        if self._handle is None:
            raise RuntimeError(f"order journal {self.path} is closed")
        # the spool's JSON line, spelt directly: every cell is a string (json.dumps would build an encoder per call)
        data = "".join(['{"m":"log_order","t":"orders","r":[' + ",".join(map(_json_string, order_row(o))) + "]}\n"
                        for o in orders]).encode("utf-8")
        fd = self._fd
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if self.fsync:
                os.fdatasync(fd)
        except BaseException:
            with contextlib.suppress(OSError):  # no torn line left for the next append to run into
                os.ftruncate(fd, self._size)
            raise
        self._size += len(data)
        self.depth += len(orders)

    def clear(self) -> None:
        """Every state in the journal is in the driver: empty it (not fsync-ed: a journal that comes back after a
        power loss is replayed, and the driver's copies are skipped by id)."""
        if self._handle is not None and self._size:
            os.ftruncate(self._fd, 0)
            self._size = 0
            self.depth = 0



def _invoke(target: Any, method: str, record: Any) -> Any:
    """``target.<method>(record)``: the method is looked up when called, inside the caller's error isolation."""
    return getattr(target, method)(record)


class StorageWriter(Storage):
    """Any :class:`Storage` behind a bounded queue and one writer thread (see the module docstring)."""

    name = "writer"

    def __init__(
        self,
        inner: Storage,
        *,
        spool_dir: Path,
        instance_id: str = "",
        book: BookKey | None = None,
        queue_size: int = 20_000,
        stall_seconds: float = 1.0,
        close_seconds: float = 8.0,
        call_timeout_seconds: float = 30.0,
        order_journal: str = "os",
        registry: CollectorRegistry | None = None,
    ) -> None:
        if order_journal not in ORDER_JOURNAL_MODES:
            raise ValueError(f"order_journal: {order_journal!r} is not one of {', '.join(ORDER_JOURNAL_MODES)}")
        self.inner = inner
        self.instance_id = instance_id
        self.book = book
        self.stall_seconds = stall_seconds
        self.close_seconds = close_seconds
        self.call_timeout_seconds = call_timeout_seconds
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=max(1, queue_size))
        self._lock = threading.Lock()
        stem = safe_name(f"{inner.name or type(inner).__name__}-{instance_id or 'default'}")
        self._spool = RecordSpool.open_for(spool_dir / f"{stem}.spool")
        self._diverting = len(self._spool) > 0
        # the order journal; ``_jseq*`` count the states journaled by this writer (those found at start first):
        # appended, handed to the driver, spooled, and known to be in the driver (flushed)
        self.order_journal = order_journal
        self._journal: OrderJournal | None = None
        self._jlock = threading.Lock()  # journal appends with their queue submit, and the journal's truncation
        self._jseq = self._jseq_handed = self._jseq_spooled = self._jseq_done = 0
        self._recovered = 0
        if order_journal != "off":
            journal = OrderJournal.open_for(spool_dir / f"{stem}.journal")
            assert isinstance(journal, OrderJournal)
            journal.fsync = order_journal == "fsync"
            journal._size = os.fstat(journal._fd).st_size  # after adopting the journals of dead processes
            self._journal = journal
            self._jseq = self._recovered = len(journal)
        self.order_states_local = order_journal == "os"
        self._divert_reason = "records spooled by an earlier run" if self._diverting else ""
        self._busy_since: float | None = None
        self._busy_what = ""
        # diverted because the driver refused a record (not a stall): queued records, newer than it, follow it
        # into the spool; after a stall they are older than anything spooled and go to the driver first
        self._refused = False
        self._unflushed: list[tuple[str, Any]] = []
        self._flush_queued = False
        self._closed = False
        self._last_error = ""
        self._retry_at = 0.0
        self._metrics = None
        if registry is not None:
            from arbframe.kernel.instruments import StorageMetrics

            self._metrics = StorageMetrics.get(registry)
            self._metrics.write_errors.labels(backend=BACKEND)
            self._set_depth()
        if self._diverting:
            log.warning("%d records spooled by an earlier run wait in %s; replaying them into %s",
                        len(self._spool), self._spool.path, inner.describe())
        if self._recovered:
            log.warning("%d order states in the journal %s of an earlier run: handing them to %s first",
                        self._recovered, self.journal_path, inner.describe())
        self._thread = threading.Thread(target=self._run, name="arbframe-storage-writer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------------------- description
    def describe(self) -> str:
        return self.inner.describe()

    def active_backend(self) -> str:
        """What really takes the records now: the driver's own answer, or ``spool`` while diverting."""
        if self._diverting:
            return f"spool({len(self._spool)} records; {self._divert_reason})"
        inner = getattr(self.inner, "active_backend", None)
        return str(inner()) if callable(inner) else self.inner.name

    @property
    def diverting(self) -> bool:
        return self._diverting

    @property
    def spool_depth(self) -> int:
        return len(self._spool)

    @property
    def spool_path(self) -> Path:
        return self._spool.path

    @property
    def journal_path(self) -> Path | None:
        return self._journal.path if self._journal is not None else None

    @property
    def journal_depth(self) -> int:
        """Order states in the journal not yet known to be in the driver (0 without a journal)."""
        return len(self._journal) if self._journal is not None else 0

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def stalled_for(self) -> float:
        """Seconds the driver call in progress has taken (0 when idle)."""
        since = self._busy_since
        return 0.0 if since is None else time.monotonic() - since

    # ----------------------------------------------------------------------------------------- the tick side
    def _stamp(self, record: Any) -> Any:
        if self.instance_id and not record.instance_id:
            return dataclasses.replace(record, instance_id=self.instance_id)
        return record

    def _submit(self, method: str, record: Any, *, quiet: bool = False) -> None:
        """Queue one item for the writer thread (``quiet``: without waking it: it takes the item when something
        else wakes it, at the latest ``_POLL_SECONDS`` later), or append it to the spool while diverting."""
        if self._closed:
            raise RuntimeError("storage is closed")
        item = (method, record if method == "journaled" else self._stamp(record))
        while True:
            if not self._diverting:
                if self.stalled_for() <= self.stall_seconds:
                    try:
                        if quiet:
                            self._put_quietly(item)
                        else:
                            self._queue.put_nowait(item)
                        return
                    except queue.Full:
                        self._divert(f"queue full ({self._queue.maxsize} records)")
                else:
                    self._divert(f"{self.inner.name} {self._busy_what} stalled {self.stalled_for():.1f}s")
            with self._lock:  # checked again under the lock: the writer may have just emptied the spool
                if self._diverting:
                    self._spool_items([item])
                    return

    def _put_quietly(self, item: tuple[str, Any]) -> None:
        """``put_nowait`` without notifying the waiting writer thread (``queue.Queue``'s documented-for-subclasses
        ``mutex`` and ``_put``): woken now, it would take the interpreter lock from the event loop while the
        requests the journaled states were written for are still being sent."""
        q = self._queue
        with q.mutex:
            if 0 < q.maxsize <= q._qsize():
                raise queue.Full
            q._put(item)
            q.unfinished_tasks += 1

    def _spool_items(self, items: list[tuple[str, Any]]) -> None:
        """Append to the spool (the caller holds ``_lock``); a journaled batch goes as its order records."""
        flat: list[tuple[str, Any]] = []
        for method, arg in items:
            if method == "journaled":
                jseq, orders = arg
                flat.extend(("log_order", o) for o in orders)
                self._jseq_spooled = max(self._jseq_spooled, jseq)
            else:
                flat.append((method, arg))
        self._spool.append(flat)
        self._set_depth()

    def _divert(self, reason: str) -> None:
        with self._lock:
            if self._diverting:
                return
            self._diverting = True
            self._divert_reason = reason
        log.warning("storage writer: %s; records go to the spool %s until %s catches up", reason,
                    self._spool.path, self.inner.describe())

    def log_spread(self, spread: Spread) -> None:
        self._submit("log_spread", spread)

    def log_position_open(self, position: Position) -> None:
        self._submit("log_position_open", position)

    def log_position_close(self, position: Position) -> None:
        self._submit("log_position_close", position)

    def log_order(self, order: Order) -> None:
        self._submit("log_order", order)

    def log_trade(self, trade: Trade) -> None:
        self._submit("log_trade", trade)

    def log_fx_rate(self, fx: FxRate) -> None:
        self._submit("log_fx_rate", fx)

    def log_error(self, error: ErrorRecord) -> None:
        self._submit("log_error", error)

    def write_order_states(self, orders: Sequence[Order]) -> None:
        """Durable before returning (the execution layer's state changes, module docstring): appended to the order
        journal (one write; ``fsync``: and fdatasync) and queued for the driver without waiting; with
        ``order_journal: off``, handed to the driver and flushed, or appended to the spool while diverting. Raises
        when the journal cannot be written, or (``off``) ``TimeoutError`` when the driver did not take them
        within ``call_timeout_seconds``: the caller must not act as if they were stored."""
        if self._closed:
            raise RuntimeError("storage is closed")
        if not orders:
            return
        journal = self._journal
        if journal is None:
            for order in orders:
                self._submit("log_order", order)
            if self._diverting:
                return
            if not self.sync(self.call_timeout_seconds):
                raise TimeoutError(f"{self.inner.describe()} did not store order {orders[-1].id} within "
                                   f"{self.call_timeout_seconds:g}s")
            return
        stamped = [self._stamp(o) for o in orders]
        with self._jlock:  # journal order = queue order, so "the first n are in the driver" is a count
            journal.append_orders(stamped)
            self._jseq += len(stamped)
            self._submit("journaled", (self._jseq, stamped), quiet=True)

    def write_order_state(self, order: Order) -> None:
        """One order state, durable before returning: :meth:`write_order_states` of ``[order]``."""
        self.write_order_states((order,))

    def flush(self) -> None:
        """Ask the writer to flush the driver; never waits (the tick calls this). See :meth:`sync`."""
        if self._closed:
            return
        if self._diverting:
            return  # spool appends are already in the operating system's hands
        if self._flush_queued:
            return
        try:
            self._queue.put_nowait(("flush", None))
            self._flush_queued = True
        except queue.Full:
            self._divert(f"queue full ({self._queue.maxsize} records)")

    def sync(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted so far is flushed by the driver (or spooled); False on timeout."""
        done = threading.Event()
        try:
            self._queue.put(("sync", done), timeout=timeout)
        except queue.Full:
            return False
        return done.wait(timeout)

    # ------------------------------------------------------------------------------------------- loading
    def _on_writer(self, fn: Callable[[], Any], timeout: float) -> Any:
        box: dict[str, Any] = {}
        done = threading.Event()
        try:
            self._queue.put(("call", (fn, box, done)), timeout=timeout)
        except queue.Full:
            raise TimeoutError("storage writer queue full") from None
        if not done.wait(timeout):
            raise TimeoutError(f"{self.inner.describe()} did not answer within {timeout:g}s")
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def _spooled(self, cls: type) -> list[Any]:
        """The records of type ``cls`` waiting in the spool, in order."""
        with self._lock:
            items, _ = self._spool.read()
        return [r for _m, r in items if isinstance(r, cls)]

    def _spooled_positions(self) -> dict[str, Position]:
        return {r.id: r for r in self._spooled(Position)}

    def _merge(self, loaded: list[Position] | None, want_open: bool) -> list[Position] | None:
        spooled = self._spooled_positions()
        if loaded is None and not spooled:
            return None
        latest = {p.id: p for p in loaded or []}
        for pid, p in spooled.items():  # the spool is newer than what the driver holds
            if not (latest.get(pid) is not None and not latest[pid].is_open and p.is_open):
                latest[pid] = p
        return [p for p in latest.values() if p.is_open == want_open]

    def load_positions(self) -> list[Position]:
        """Open positions of this runner's book: the driver's, overlaid with anything still spooled."""
        positions = self._merge(self._on_writer(self.inner.load_positions, self.call_timeout_seconds), True) or []
        book = self.book
        if book is None:
            return positions
        mine = [p for p in positions if book.holds(p)]
        for p in mine:
            if p.instance_id and p.instance_id != self.instance_id:
                log.warning("resuming position %s written by instance %r: its symbol %s is in this runner's book",
                            p.id, p.instance_id, p.symbol)
        return mine

    def load_closed_positions(self) -> list[Position] | None:
        """Closed positions of this instance (PnL totals per instance)."""
        loaded = self._on_writer(self.inner.load_closed_positions, self.call_timeout_seconds)
        positions = self._merge(loaded, False)
        if positions is None or self.book is None:
            return positions
        book = dataclasses.replace(self.book, instance_id=self.instance_id)
        return [p for p in positions if book.counts(p)]

    def load_last_fx_rate(self) -> FxRate | None:
        """The driver's newest FX rate, or a newer one still spooled."""
        loaded = self._on_writer(self.inner.load_last_fx_rate, self.call_timeout_seconds)
        return newest_fx_rate([*([loaded] if loaded is not None else []), *self._spooled(FxRate)])

    def load_last_spreads(self, symbols: Sequence[str]) -> list[Spread] | None:
        """The driver's newest spreads, overlaid with newer ones still spooled (None: the driver keeps none)."""
        loaded = self._on_writer(lambda: self.inner.load_last_spreads(symbols), self.call_timeout_seconds)
        spooled = self._spooled(Spread)
        if loaded is None and not spooled:
            return None
        return newest_spreads([*(loaded or []), *spooled], symbols)

    def load_orders(self, since: Any = None) -> list[Order] | None:
        """Order rows of the driver since ``since``, overlaid with those still spooled (None: it keeps none)."""
        loaded = self._on_writer(lambda: self.inner.load_orders(since), self.call_timeout_seconds)
        with self._lock:
            items, _ = self._spool.read()
        spooled = [r for _m, r in items if isinstance(r, Order) and (since is None or r.ts >= since)]
        if loaded is None and not spooled:
            return None
        seen = {o.id for o in loaded or []}
        return [*(loaded or []), *(o for o in spooled if o.id not in seen)]

    def read_control(self, name: str) -> dict[str, Any] | None:
        """The driver's control record, read on the writer thread (``NotImplementedError`` passes through)."""
        return self._on_writer(lambda: self.inner.read_control(name), self.call_timeout_seconds)

    def write_control(self, name: str, value: Any) -> None:
        self._on_writer(lambda: self.inner.write_control(name, value), self.call_timeout_seconds)

    def lock_book(self, book: BookKey) -> BookLock | None:
        lock = getattr(self.inner, "lock_book", None)
        return lock(book) if callable(lock) else None

    # ---------------------------------------------------------------------------------------- writer thread
    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        self._busy_what, self._busy_since = what, time.monotonic()
        try:
            return fn()
        finally:
            self._busy_since = None

    def _run(self) -> None:
        if self._recovered:
            self._recover_journal()
        while True:
            try:
                method, arg = self._queue.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                if self._diverting and time.monotonic() >= self._retry_at:
                    self._try_replay()
                continue
            if method == "stop":
                self._finish()
                return
            try:
                self._handle(method, arg)
            except Exception as exc:  # the writer never dies; what failed is spooled or stays in the driver
                self._error(f"{method}: {type(exc).__name__}: {exc}")

    def _handle(self, method: str, arg: Any) -> None:
        if method == "flush":
            self._flush_queued = False
            self._flush_inner()
        elif method == "sync":
            self._flush_inner()
            if self._diverting:
                self._try_replay()
            arg.set()
        elif method == "call":
            fn, box, done = arg
            try:
                if self._diverting:
                    self._try_replay()
                box["value"] = self._call("load", fn)
            except BaseException as exc:
                box["error"] = exc
            finally:
                done.set()
        elif method == "journaled":
            self._handle_journaled(*arg)
        elif self._diverting and self._refused:
            with self._lock:  # keep order: everything after a refused record goes behind it
                self._spool.append([(method, arg)])
                self._set_depth()
        else:
            try:
                self._call(method, lambda: getattr(self.inner, method)(arg))
            except Exception as exc:
                self._refused = True
                self._divert(f"{self.inner.name} refused a record ({type(exc).__name__}: {exc})")
                with self._lock:
                    self._spool.append([(method, arg)])
                    self._set_depth()
                raise
            self._unflushed.append((method, arg))

    def _handle_journaled(self, jseq: int, orders: list[Order]) -> None:
        """Order states from the journal's writer: to the driver (or behind a refused record, to the spool), then
        flushed at once when nothing else waits (group commit), so the journal empties soon."""
        if self._diverting and self._refused:
            with self._lock:
                self._spool_items([("journaled", (jseq, orders))])
            return
        for i, order in enumerate(orders):
            try:
                self._call("log_order", functools.partial(self.inner.log_order, order))
            except Exception as exc:
                self._refused = True
                self._divert(f"{self.inner.name} refused a record ({type(exc).__name__}: {exc})")
                with self._lock:
                    self._spool_items([("journaled", (jseq, orders[i:]))])
                raise
            self._unflushed.append(("log_order", order))
        self._jseq_handed = jseq
        if self._queue.empty():
            self._flush_inner()

    def _settle_journal(self, done: int) -> None:
        """The first ``done`` journaled states are in the driver: empty the journal once all of them are."""
        journal = self._journal
        if journal is None:
            return
        with self._jlock:
            self._jseq_done = max(self._jseq_done, done)
            if self._jseq_done >= self._jseq and len(journal):
                try:
                    journal.clear()
                except OSError as exc:
                    self._error(f"emptying the order journal {journal.path} failed: {exc}")

    def _recover_journal(self) -> None:
        """Hand the order states a dead process left in the journal to the driver (skipping those it holds, by
        id, and those waiting in the spool), flushed; the driver away: to the spool."""
        journal = self._journal
        assert journal is not None
        with self._jlock:
            items, _ = journal.read()
        orders = [r for _m, r in items if isinstance(r, Order)][: self._recovered]
        have: set[str] = set()
        with self._lock:
            spooled, _ = self._spool.read()
        have.update(r.id for _m, r in spooled if isinstance(r, Order))
        try:
            since = min((o.ts for o in orders), default=None)
            held = self._call("load", lambda: self.inner.load_orders(since))
            have.update(o.id for o in held or [])
            missing = [o for o in orders if o.id not in have]
            for order in missing:
                self._call("replay", functools.partial(self.inner.log_order, order))
            self._call("flush", self.inner.flush)
        except Exception as exc:
            self._error(f"handing the order journal to {self.inner.describe()} failed: {type(exc).__name__}: "
                        f"{exc}; spooled")
            missing = [o for o in orders if o.id not in have]
            with self._lock:
                self._spool_items([("journaled", (self._recovered, missing))])
            self._divert("order journal of an earlier run")
            return
        log.warning("order journal %s: %d order states of an earlier run handed to %s (%d it held already)",
                    journal.path, len(missing), self.inner.describe(), len(orders) - len(missing))
        self._jseq_handed = max(self._jseq_handed, self._recovered)  # a guard still holding some: a later flush
        if self._backlog() == 0:
            self._settle_journal(self._recovered)

    def _backlog(self) -> int:
        """Records a guard before the driver still holds (``IsolatedStorage``): not in the driver yet."""
        backlog = getattr(self.inner, "backlog", 0)
        return backlog if isinstance(backlog, int) else 0

    def _flush_inner(self) -> bool:
        handed = self._jseq_handed
        try:
            self._call("flush", self.inner.flush)
        except Exception as exc:
            self._error(f"flush of {self.inner.describe()} failed: {type(exc).__name__}: {exc}")
            return False
        if self._journal is not None and self._backlog() == 0:
            self._settle_journal(handed)
        self._unflushed.clear()
        if self._diverting and self._queue.empty() and time.monotonic() >= self._retry_at:
            self._try_replay()
        return True

    def _try_replay(self) -> bool:
        """Replay the spool into the driver (in order), flush it, drop what was replayed; True when empty."""
        while True:
            with self._lock:
                items, offset = self._spool.read()
                if not items:
                    if offset:
                        self._spool.drop_head(offset)
                    self._undivert()
                    spooled = self._jseq_spooled
                    break
            try:
                for method, record in items:
                    self._call("replay", functools.partial(_invoke, self.inner, method, record))
                self._call("flush", self.inner.flush)
            except Exception as exc:
                self._error(f"replaying the spool into {self.inner.describe()} failed: {type(exc).__name__}: "
                            f"{exc}")
                self._retry_at = time.monotonic() + 1.0
                return False
            with self._lock:
                self._spool.drop_head(offset)
                self._set_depth()
                if not len(self._spool):
                    self._undivert()
                    spooled = self._jseq_spooled
                    break
        if self._backlog() == 0:
            self._settle_journal(spooled)
        return True

    def _undivert(self) -> None:
        was = self._diverting
        self._diverting = self._refused = False
        self._divert_reason = ""
        self._set_depth()
        if was:
            log.warning("storage writer: spool replayed into %s; writing through again", self.inner.describe())

    def _finish(self) -> None:
        """On stop: flush, replay what is spooled if the driver takes it, close the driver."""
        if self._flush_inner() and self._diverting:
            self._try_replay()
        self._call("close", self.inner.close)

    def _error(self, message: str) -> None:
        if self._metrics is not None:
            self._metrics.write_errors.labels(backend=BACKEND).inc()
        if message != self._last_error:
            log.error("storage writer: %s", message)
        self._last_error = message

    def _set_depth(self) -> None:
        if self._metrics is not None:
            self._metrics.spool_depth.labels(backend=BACKEND).set(len(self._spool))

    # -------------------------------------------------------------------------------------------- shutdown
    def close(self) -> None:
        """Bounded by ``close_seconds`` whatever the driver does (see the module docstring). Twice is harmless."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + self.close_seconds
        try:
            self._queue.put(_STOP, timeout=max(0.0, deadline - time.monotonic()))
        except queue.Full:
            pass
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            self._give_up()
        else:
            with self._lock:
                self._spool.close()
        if self._journal is not None:
            with self._jlock:
                self._journal.close()

    def _give_up(self) -> None:
        left: list[tuple[str, Any]] = []
        while True:
            try:
                method, arg = self._queue.get_nowait()
            except queue.Empty:
                break
            if method in _LOG_METHODS:
                left.append((method, arg))
            elif method == "journaled":  # also in the journal: the next start skips the copies by id
                left.extend(("log_order", o) for o in arg[1])
            elif method in ("sync",):
                arg.set()
        with self._lock:
            unflushed = list(self._unflushed)
            self._spool.append(unflushed + left)
            depth = len(self._spool)
            self._spool.close()
        self._set_depth()
        log.warning(
            "storage writer: %s did not finish within %gs (%s %s for %.1fs); %d records kept in %s for the next "
            "run", self.inner.describe(), self.close_seconds, self.inner.name, self._busy_what, self.stalled_for(),
            depth, self._spool.path,
        )
        abandon = getattr(self.inner, "abandon", None)
        if callable(abandon):
            try:
                abandon()
            except Exception as exc:
                log.debug("abandoning %s failed: %r", self.inner.describe(), exc)

    # -------------------------------------------------------------------------------------------- health
    def health(self) -> HealthResult:
        """OK writing through; WARN while records are spooled (safe, not lost); ERROR when not even that works."""
        if self._closed:
            return HealthResult("storage", HealthStatus.WARN, "storage closed")
        details = {"backend": self.active_backend(), "queue_depth": self.queue_depth,
                   "spool_depth": len(self._spool), "stalled_seconds": round(self.stalled_for(), 3)}
        if self._diverting:
            writable = os.access(self._spool.path.parent, os.W_OK)
            status = HealthStatus.WARN if writable else HealthStatus.ERROR
            return HealthResult("storage", status, f"{self.inner.name}: {self._divert_reason}; "
                                f"{len(self._spool)} records spooled to {self._spool.path}", details)
        if self.stalled_for() > self.stall_seconds:
            return HealthResult("storage", HealthStatus.WARN, f"{self.inner.name} {self._busy_what} stalled for "
                                f"{self.stalled_for():.1f}s; new records will be spooled", details)
        return HealthResult("storage", HealthStatus.OK, f"writing to {self.active_backend()} "
                            f"({self.queue_depth} queued)", details)

    @hookimpl
    def arbframe_health_checks(self, config: Any, context: PluginContext) -> list[HealthCheck]:
        return [HealthCheck("storage", self.health, timeout_seconds=1.0)]
