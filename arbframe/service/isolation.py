"""Storage and cache drivers isolated like hooks: a driver that raises inside a tick never ends the tick.

:class:`IsolatedStorage` and :class:`IsolatedCache` stand in front of the drivers the service loop uses. Any
exception from a write (``log_*``, ``flush``; the cache's ``set_*``, ``write_tick``, reads and ``ping``) is logged
with the plugin's name (ERROR when it is new, DEBUG while the same error repeats), counted in
``arbframe_plugin_errors_total{plugin="storage:<name>", hook="<method>"}`` (storage writes also in
``arbframe_storage_write_errors_total``), and the tick goes on. A record whose ``log_*`` raised is kept here and
offered again before the next flush (at most :data:`MAX_KEPT` records, oldest dropped first, with a line saying so);
a ``flush`` that raises keeps its own buffer, as the storage contract asks, and is called again at the next tick.
Everything else (``describe``, ``load_positions``, driver-specific attributes) passes straight through.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from arbframe.core.secrets import scrub
from arbframe.kernel.instruments import PluginMetrics, StorageMetrics

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from arbframe.kernel.interfaces import Cache, Storage

log = logging.getLogger("arbframe.plugins")

#: records kept for a storage whose ``log_*`` keeps raising (beyond this the oldest are dropped, with a line)
MAX_KEPT = 10_000
_STORAGE_WRITES = ("log_spread", "log_position_open", "log_position_close", "log_order", "log_trade",
                   "log_fx_rate", "log_error")
#: cache method -> what a failed call returns (the cache contract's "not done" answer)
_CACHE_CALLS: dict[str, Any] = {
    "set_fx_rate": False, "set_heartbeat": False, "set_spread_snapshot": False, "write_tick": False,
    "get_fx_rate": None, "get_heartbeat": None, "get_spread_snapshot": None, "ping": False,
}


class _Guard:
    """Logs and counts one driver's exceptions; a repeat of the same error is not logged at ERROR again."""

    def __init__(self, plugin: str, registry: CollectorRegistry, backend: str | None = None) -> None:
        self.plugin = plugin
        self.errors = PluginMetrics.get(registry).errors
        self.write_errors = StorageMetrics.get(registry).write_errors if backend is not None else None
        self.backend = backend
        self._last: dict[str, str] = {}
        self.failures = 0

    def failed(self, method: str, exc: BaseException, note: str = "") -> None:
        self.failures += 1
        self.errors.labels(plugin=self.plugin, hook=method).inc()
        if self.write_errors is not None:
            self.write_errors.labels(backend=self.backend).inc()
        text = scrub(f"{type(exc).__name__}: {exc}")
        level = logging.DEBUG if self._last.get(method) == text else logging.ERROR
        self._last[method] = text
        log.log(level, "plugin %s raised in %s: %s (isolated; the tick goes on%s)", self.plugin, method, text, note)

    def ok(self, method: str) -> None:
        if self._last.pop(method, None) is not None:
            log.warning("plugin %s: %s works again", self.plugin, method)


class IsolatedStorage:
    """A storage driver behind a guard (see the module docstring)."""

    def __init__(self, inner: Storage, plugin: str, registry: CollectorRegistry) -> None:
        self.inner = inner
        self.guard = _Guard(plugin, registry, backend=getattr(inner, "name", "") or plugin)
        self.kept: deque[tuple[str, Any]] = deque()
        self._dropped = 0
        self._flush_failed = False

    @property
    def backlog(self) -> int:
        """Records not in the driver for sure: those kept here, plus one while the last ``flush`` failed (the
        kernel's writer keeps its order journal until this is 0)."""
        return len(self.kept) + (1 if self._flush_failed else 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def describe(self) -> str:
        return self.inner.describe()

    def _write(self, method: str, record: Any) -> None:
        if self.kept:  # keep the order: nothing overtakes a record that is waiting
            self._keep(method, record)
            return
        try:
            getattr(self.inner, method)(record)
        except Exception as exc:
            self.guard.failed(method, exc, "; the record is kept for the next flush")
            self._keep(method, record)

    def _keep(self, method: str, record: Any) -> None:
        if len(self.kept) >= MAX_KEPT:
            self.kept.popleft()
            self._dropped += 1
            if self._dropped == 1:
                log.error("plugin %s: more than %d records waiting; dropping the oldest", self.guard.plugin, MAX_KEPT)
        self.kept.append((method, record))

    def _offer_kept(self) -> None:
        while self.kept:
            method, record = self.kept[0]
            try:
                getattr(self.inner, method)(record)
            except Exception as exc:
                self.guard.failed(method, exc, f"; {len(self.kept)} records kept for the next flush")
                return
            self.kept.popleft()
            self.guard.ok(method)

    def flush(self) -> None:
        self._offer_kept()
        try:
            self.inner.flush()
        except Exception as exc:
            self._flush_failed = True
            self.guard.failed("flush", exc, "; the storage keeps its buffer for the next flush")
            return
        self._flush_failed = False
        self.guard.ok("flush")


def _storage_write(method: str) -> Any:
    def write(self: IsolatedStorage, record: Any) -> None:
        self._write(method, record)

    write.__name__ = method
    write.__doc__ = f"``{method}`` of the driver, isolated."
    return write


for _method in _STORAGE_WRITES:
    setattr(IsolatedStorage, _method, _storage_write(_method))


class IsolatedCache:
    """A cache driver behind a guard: a failed call answers as the cache contract's "not done"."""

    def __init__(self, inner: Cache, plugin: str, registry: CollectorRegistry) -> None:
        self.inner = inner
        self.guard = _Guard(plugin, registry)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name not in _CACHE_CALLS:
            return attr
        fallback = _CACHE_CALLS[name]

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                result = attr(*args, **kwargs)
            except Exception as exc:
                self.guard.failed(name, exc)
                return fallback
            self.guard.ok(name)
            return result

        return call

    def describe(self) -> str:
        return self.inner.describe()
