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
- **Instance id.** Every record without one is stamped with ``service.instance_id`` on its way in.
- **Book.** Open positions are resumed for the runner's own symbols and venues; closed positions (PnL totals)
  are the runner's own instance's (rows from before ``instance_id`` existed count for the runner trading their
  symbol).
"""

from __future__ import annotations

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
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from arbframe.core.models import ErrorRecord, FxRate, Order, Position, Spread, Trade
from arbframe.core.records import TABLE_OF, TABLES, columns, from_row, newest_fx_rate, newest_spreads, to_row
from arbframe.kernel.book import BookKey, BookLock, safe_name
from arbframe.kernel.hookspecs import hookimpl
from arbframe.kernel.interfaces import HealthCheck, HealthResult, HealthStatus, PluginContext, Storage

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger("arbframe.storage.writer")

BACKEND = "writer"
_STOP = ("stop", None)
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
        registry: CollectorRegistry | None = None,
    ) -> None:
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

    def _submit(self, method: str, record: Any) -> None:
        if self._closed:
            raise RuntimeError("storage is closed")
        item = (method, self._stamp(record))
        while True:
            if not self._diverting:
                if self.stalled_for() <= self.stall_seconds:
                    try:
                        self._queue.put_nowait(item)
                        return
                    except queue.Full:
                        self._divert(f"queue full ({self._queue.maxsize} records)")
                else:
                    self._divert(f"{self.inner.name} {self._busy_what} stalled {self.stalled_for():.1f}s")
            with self._lock:  # checked again under the lock: the writer may have just emptied the spool
                if self._diverting:
                    self._spool.append([item])
                    self._set_depth()
                    return

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

    def write_order_state(self, order: Order) -> None:
        """Durable before returning (the execution layer's state changes): handed to the driver and flushed, or
        appended to the spool while diverting. Raises ``TimeoutError`` when the driver did not take it within
        ``call_timeout_seconds`` (the record stays queued; the caller must not act as if it were stored)."""
        self._submit("log_order", order)
        if self._diverting:
            return
        if not self.sync(self.call_timeout_seconds):
            raise TimeoutError(f"{self.inner.describe()} did not store order {order.id} within "
                               f"{self.call_timeout_seconds:g}s")

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
        while True:
            try:
                method, arg = self._queue.get(timeout=0.2)
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

    def _flush_inner(self) -> bool:
        try:
            self._call("flush", self.inner.flush)
        except Exception as exc:
            self._error(f"flush of {self.inner.describe()} failed: {type(exc).__name__}: {exc}")
            return False
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
                    return True
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

    def _give_up(self) -> None:
        left: list[tuple[str, Any]] = []
        while True:
            try:
                method, arg = self._queue.get_nowait()
            except queue.Empty:
                break
            if method in _LOG_METHODS:
                left.append((method, arg))
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
