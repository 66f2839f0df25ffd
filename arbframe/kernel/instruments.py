"""Shared Prometheus instruments, one set per registry.

Several plugins of one kind (two exchanges, a storage and its fallback) report into the same metric families,
told apart by a bounded label. Building the families here, once per kernel registry, keeps names and labels in
one place (documented in ``docs/METRICS.md``) and avoids duplicate-registration errors. Trading metrics
(``arbitrage_*``) live in :mod:`arbframe.trading.statistics`.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from arbframe.core.errors import EXCHANGE_ERROR_KINDS, error_kind

T = TypeVar("T")

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

#: the tables of every storage backend (``docs/DB_SCHEMA.md``)
STORAGE_TABLES: tuple[str, ...] = ("spreads", "positions", "orders", "trades", "fx_rates", "errors")

_cache: weakref.WeakKeyDictionary[CollectorRegistry, dict[type, object]] = weakref.WeakKeyDictionary()


def _once(registry: CollectorRegistry, cls: type[T]) -> T:
    per_registry = _cache.setdefault(registry, {})
    found = per_registry.get(cls)
    if found is None:
        found = cls._build(registry)  # type: ignore[attr-defined]
        per_registry[cls] = found
    return found  # type: ignore[return-value]


@dataclass(frozen=True)
class ExchangeMetrics:
    requests: Counter  # labels: exchange, endpoint, status
    request_seconds: Histogram  # labels: exchange, endpoint
    errors: Counter  # labels: exchange, kind
    rate_limit_waits: Counter  # labels: exchange, group
    rate_limit_wait_seconds: Counter  # labels: exchange, group
    ws_reconnects: Counter  # labels: exchange
    ws_message_age_seconds: Gauge  # labels: exchange
    clock_offset_seconds: Gauge  # labels: exchange
    ws_rest_fallback: Gauge  # labels: exchange
    ws_rest_fallback_seconds: Counter  # labels: exchange
    ws_rest_fallback_books: Counter  # labels: exchange

    @classmethod
    def get(cls, registry: CollectorRegistry) -> ExchangeMetrics:
        return _once(registry, cls)

    def precreate(
        self, exchange: str, *, error_kinds: tuple[str, ...] = EXCHANGE_ERROR_KINDS, groups: tuple[str, ...] = ()
    ) -> None:
        """Create the counters of ``exchange`` at 0 for its known label values, so alerts see the first event.

        ``requests_total`` is not pre-created: its ``status`` label is whatever the venue answers.
        """
        for kind in dict.fromkeys((*EXCHANGE_ERROR_KINDS, *error_kinds)):  # at 0: increase() sees the first error
            self.errors.labels(exchange, kind)
        for group in groups:
            self.rate_limit_waits.labels(exchange, group)
            self.rate_limit_wait_seconds.labels(exchange, group)
        self.ws_reconnects.labels(exchange)
        self.ws_rest_fallback.labels(exchange)
        self.ws_rest_fallback_seconds.labels(exchange)
        self.ws_rest_fallback_books.labels(exchange)

    def count_error(self, exchange: str, error: BaseException | str) -> str:
        """Count one venue failure under its bounded ``kind`` (:data:`arbframe.EXCHANGE_ERROR_KINDS`); an
        exception outside the taxonomy counts as ``exchange_error``. Returns the label used."""
        kind = error if isinstance(error, str) and error in EXCHANGE_ERROR_KINDS else (
            error_kind(error) if isinstance(error, BaseException) else "exchange_error")
        self.errors.labels(exchange=exchange, kind=kind).inc()
        return kind

    @classmethod
    def _build(cls, r: CollectorRegistry) -> ExchangeMetrics:
        return cls(
            requests=Counter(
                "arbframe_exchange_requests", "REST requests sent to an exchange",
                ["exchange", "endpoint", "status"], registry=r,
            ),
            request_seconds=Histogram(
                "arbframe_exchange_request_duration_seconds", "REST round-trip time",
                ["exchange", "endpoint"], buckets=_LATENCY_BUCKETS, registry=r,
            ),
            errors=Counter(
                "arbframe_exchange_errors",
                "Exchange errors by kind (arbframe.EXCHANGE_ERROR_KINDS: order_rejected, rate_limited, ...)",
                ["exchange", "kind"], registry=r,
            ),
            rate_limit_waits=Counter(
                "arbframe_exchange_rate_limit_waits", "Requests delayed by the client-side rate limiter",
                ["exchange", "group"], registry=r,
            ),
            rate_limit_wait_seconds=Counter(
                "arbframe_exchange_rate_limit_wait_seconds", "Time spent waiting for the rate limiter",
                ["exchange", "group"], registry=r,
            ),
            ws_reconnects=Counter(
                "arbframe_exchange_ws_reconnects", "WebSocket reconnects", ["exchange"], registry=r,
            ),
            ws_message_age_seconds=Gauge(
                "arbframe_exchange_ws_message_age_seconds", "Age of the newest WebSocket message when received",
                ["exchange"], registry=r,
            ),
            clock_offset_seconds=Gauge(
                "arbframe_exchange_clock_offset_seconds", "Exchange server time minus local time",
                ["exchange"], registry=r,
            ),
            ws_rest_fallback=Gauge(
                "arbframe_exchange_ws_rest_fallback",
                "1 while the stream's books come from REST polling (no WebSocket connection delivers)",
                ["exchange"], registry=r,
            ),
            ws_rest_fallback_seconds=Counter(
                "arbframe_exchange_ws_rest_fallback_seconds", "Time the stream's books came from REST polling",
                ["exchange"], registry=r,
            ),
            ws_rest_fallback_books=Counter(
                "arbframe_exchange_ws_rest_fallback_books", "Books the stream's REST fallback delivered",
                ["exchange"], registry=r,
            ),
        )


@dataclass(frozen=True)
class StorageMetrics:
    rows_written: Counter  # labels: backend, table
    flush_seconds: Histogram  # labels: backend
    spool_depth: Gauge  # labels: backend
    write_errors: Counter  # labels: backend

    @classmethod
    def get(cls, registry: CollectorRegistry) -> StorageMetrics:
        return _once(registry, cls)

    def precreate(
        self, backend: str, tables: tuple[str, ...] = STORAGE_TABLES, *, errors: bool = True, spool: bool = True
    ) -> None:
        """Create the counters of ``backend`` at 0 (rows per table; write errors and the spool depth gauge when
        the backend has them), so alerts see the first row or error."""
        for table in tables:
            self.rows_written.labels(backend, table)
        if errors:
            self.write_errors.labels(backend)
        if spool:
            self.spool_depth.labels(backend)

    @classmethod
    def _build(cls, r: CollectorRegistry) -> StorageMetrics:
        return cls(
            rows_written=Counter(
                "arbframe_storage_rows_written", "Rows made durable", ["backend", "table"], registry=r,
            ),
            flush_seconds=Histogram(
                "arbframe_storage_flush_duration_seconds", "Time to flush buffered rows", ["backend"],
                buckets=_LATENCY_BUCKETS, registry=r,
            ),
            spool_depth=Gauge(
                "arbframe_storage_spool_depth", "Records waiting in the local outage spool", ["backend"], registry=r,
            ),
            write_errors=Counter(
                "arbframe_storage_write_errors", "Failed writes (records kept for retry)", ["backend"], registry=r,
            ),
        )


@dataclass(frozen=True)
class CacheMetrics:
    writes: Counter  # labels: backend
    errors: Counter  # labels: backend, op

    @classmethod
    def get(cls, registry: CollectorRegistry) -> CacheMetrics:
        return _once(registry, cls)

    def precreate(self, backend: str, ops: tuple[str, ...]) -> None:
        """Create the counters of ``backend`` at 0: write batches and the errors of each operation it performs."""
        self.writes.labels(backend)
        for op in ops:
            self.errors.labels(backend, op)

    @classmethod
    def _build(cls, r: CollectorRegistry) -> CacheMetrics:
        return cls(
            writes=Counter("arbframe_cache_writes", "Cache write batches sent", ["backend"], registry=r),
            errors=Counter("arbframe_cache_errors", "Failed cache operations", ["backend", "op"], registry=r),
        )


@dataclass(frozen=True)
class PluginMetrics:
    errors: Counter  # labels: plugin, hook

    @classmethod
    def get(cls, registry: CollectorRegistry) -> PluginMetrics:
        return _once(registry, cls)

    def precreate(self, plugin: str, hooks: tuple[str, ...]) -> None:
        """Create ``plugin``'s error counters at 0 for every hook it implements (the kernel does this)."""
        for hook in hooks:
            self.errors.labels(plugin, hook)

    @classmethod
    def _build(cls, r: CollectorRegistry) -> PluginMetrics:
        return cls(
            errors=Counter(
                "arbframe_plugin_errors", "Exceptions raised by plugin hooks (isolated)", ["plugin", "hook"],
                registry=r,
            )
        )
