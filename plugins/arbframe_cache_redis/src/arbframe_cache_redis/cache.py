"""``RedisCache``: the FX rate, heartbeats and spread snapshots in Redis (seed D2 §1), shared between processes.

What a person sees with ``redis-cli`` (prefix ``arb``)::

    GET arb:fx:usdkrw               "1350.0"                              the rate, as a plain number (seed D2 §4)
    GET arb:fx:usdkrw:meta          {"rate": "1350.0", "id": ..., "ts": ..., "source": "static", ...}
    GET arb:heartbeat:bot_service   "2025-11-15T10:30:45.123456+00:00"    ISO-8601 UTC (seed D3 §5)
    GET arb:spread:BTC              {"symbol": "BTC", ..., "ts": ..., "source": "bot_service"}
    TTL arb:fx:usdkrw               60                                    redis.health_ttl_seconds

The FX key holds only the rate so ``GET`` shows ``1350.0`` as the seed expects; the rate's id, timestamp and
source sit in the ``:meta`` key, written in the same pipeline with the same TTL. A reader takes the metadata only
when its rate equals the plain key, so a rate set by hand (``SET arb:fx:usdkrw 1400``) is still read, with source
``external`` and the read time as its timestamp.

Failure behaviour (seed D2 §3): no call ever raises into the tick. Every socket operation is bounded by
``socket_timeout_seconds``/``connect_timeout_seconds`` and redis-py's own retries are off. After a connection
failure the cache stops trying for a backoff delay (0.5 s doubling to ``backoff_max_seconds``); operations in
that window fail at once. Failures are counted in ``arbframe_cache_errors_total{backend="redis",op=...}`` and
logged at most once per ``warn_interval_seconds`` with the number that failed; the first success after an outage
logs the recovery. Without redis-py the cache is unavailable (``available`` is False) and says how to install it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from arbframe import (
    SPREAD_TTL_SECONDS,
    Cache,
    CacheKeys,
    ConfigError,
    FxRate,
    PluginContext,
    mask_url,
    utcnow,
)

log = logging.getLogger("arbframe.cache.redis")

DEFAULT_URL = "redis://localhost:6379/0"
INSTALL_HINT = "install redis-py: pip install redis (or pip install arbframe-cache-redis)"
BACKEND = "redis"
#: the ``op`` label values of ``arbframe_cache_errors_total`` this cache reports
OPS: tuple[str, ...] = ("fx", "heartbeat", "spread", "tick", "read", "ping")

#: FX metadata key suffix (the plain rate stays at ``CacheKeys.fx()``)
_META = ":meta"


def format_rate(rate: Decimal) -> str:
    """A rate as people write it: ``1350.0``, ``1387.25`` (no exponent, no trailing zeros beyond one decimal).

    The exact value (``1350.00`` from a source quoting cents) is kept in the metadata key.
    """
    text = format(rate, "f")
    if "." not in text:
        return f"{text}.0"
    text = text.rstrip("0")
    return f"{text}0" if text.endswith(".") else text


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    enum_value = getattr(value, "value", None)
    if enum_value is not None and isinstance(enum_value, (str, int, float)):
        return enum_value
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


#: one encoder for every value (``json.dumps(..., default=...)`` would build a new one per call)
_ENCODER = json.JSONEncoder(default=_json_default, separators=(",", ":"), ensure_ascii=False)


def _iso_utc(ts: datetime) -> str:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    return ts.astimezone(timezone.utc).isoformat()


def _parse_ts(text: str) -> datetime | None:
    try:
        ts = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    return ts.astimezone(timezone.utc)


class RedisCache(Cache):
    """Redis-backed :class:`arbframe.Cache`. Built as ``RedisCache(config["redis"], context)``."""

    name = "redis"

    def __init__(
        self,
        section: Mapping[str, Any] | None = None,
        context: PluginContext | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        section = dict(section or {})
        self.url = str(section.get("url") or DEFAULT_URL)
        self.shown_url = mask_url(self.url)
        self.keys = CacheKeys(str(section.get("prefix") or "arb"))
        self.socket_timeout = float(section.get("socket_timeout_seconds", 0.5))
        self.connect_timeout = float(section.get("connect_timeout_seconds", self.socket_timeout))
        self.max_connections = int(section.get("max_connections", 8))
        self.backoff_initial = float(section.get("backoff_initial_seconds", 0.5))
        self.backoff_max = float(section.get("backoff_max_seconds", 10.0))
        self.warn_interval = float(section.get("warn_interval_seconds", 60.0))
        self.service_name = context.service_name if context is not None else "arbframe"
        self._monotonic = monotonic
        self._lock = threading.Lock()

        if context is not None:
            registry = context.registry
        else:
            from prometheus_client import CollectorRegistry

            registry = CollectorRegistry()
        from arbframe import CacheMetrics  # shared, registry-scoped families

        metrics = CacheMetrics.get(registry)
        metrics.precreate(BACKEND, OPS)  # at 0: the first failure of an operation is an increase alerts see
        self._writes = metrics.writes.labels(backend=BACKEND)
        self._errors = metrics.errors

        # outage state
        self.failed_ops = 0  # every failed or skipped operation since start
        self._consecutive = 0
        self._retry_at = float("-inf")
        self._down_since: float | None = None
        self._unreported = 0
        self._last_warn = float("-inf")
        self._last_reason = ""

        self._client: Any = None
        self._closed = False
        self._fx_memo: tuple[FxRate, int, list[tuple[str, str, int]]] | None = None
        self._conn_errors: tuple[type[BaseException], ...] = (OSError,)
        self.import_error: str | None = None
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError as exc:
            self.import_error = f"redis-py is not installed ({exc}); {INSTALL_HINT}"
            log.warning("Redis cache unavailable: %s. The service runs without a shared cache.", self.import_error)
            return
        self._conn_errors = (redis.ConnectionError, redis.TimeoutError, OSError)
        try:
            pool = redis.ConnectionPool.from_url(
                self.url,
                socket_timeout=self.socket_timeout,
                socket_connect_timeout=self.connect_timeout,
                max_connections=self.max_connections,
                retry=Retry(NoBackoff(), 0),
                retry_on_timeout=False,
                health_check_interval=0,
                decode_responses=True,
            )
        except ValueError as exc:
            raise ConfigError(f"redis.url: {self.shown_url!r} is not a valid Redis URL ({exc})") from None
        self._client = redis.Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0))

    # ------------------------------------------------------------------------------------------ schema
    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        seconds = {"type": "number", "exclusiveMinimum": 0}
        return {
            "type": "object",
            "properties": {
                "enabled": {"type": "boolean", "description": "use Redis as the shared cache"},
                "url": {
                    "type": "string", "minLength": 1, "writeOnly": True,
                    "description": "redis://[user:password@]host:port/db (REDIS_URL)",
                },
                "prefix": {"type": "string", "minLength": 1, "pattern": "^[^\\s:]+$", "description": "key prefix"},
                "health_ttl_seconds": {
                    "type": "integer", "minimum": 1, "description": "TTL of the FX rate and heartbeat keys",
                },
                "socket_timeout_seconds": {**seconds, "description": "bound on every Redis command (0.5)"},
                "connect_timeout_seconds": {**seconds, "description": "bound on connecting (socket timeout)"},
                "max_connections": {"type": "integer", "minimum": 1, "description": "connection pool size (8)"},
                "backoff_initial_seconds": {**seconds, "description": "first pause after a failure (0.5)"},
                "backoff_max_seconds": {**seconds, "description": "longest pause between reconnect attempts (10)"},
                "warn_interval_seconds": {**seconds, "description": "at most one outage warning per interval (60)"},
                "health_timeout_seconds": {**seconds, "description": "bound on the REDIS health check (0.8)"},
            },
            "additionalProperties": False,
        }

    # ------------------------------------------------------------------------------------------- state
    @property
    def available(self) -> bool:
        """False when redis-py is missing (the service then runs without a shared cache)."""
        return self._client is not None

    @property
    def degraded(self) -> bool:
        """True while the server is considered down (between a failure and the next success)."""
        return self._down_since is not None

    def describe(self) -> str:
        state = "" if self.available else ", redis-py missing"
        return f"RedisCache({self.shown_url}{state})"

    def _run(self, op: str, fn: Callable[[Any], Any], *, bypass_backoff: bool = False) -> tuple[bool, Any]:
        """Run ``fn(client)``; (True, result) or (False, None) after counting and (rate-limited) warning."""
        if self._client is None:
            if not self._closed:
                self._fail(op, self.import_error or "redis-py missing", connection=False)
            return False, None
        if not bypass_backoff and self._monotonic() < self._retry_at:
            self._fail(op, "", connection=False)  # still backing off: fail fast, never wait
            return False, None
        try:
            result = fn(self._client)
        except self._conn_errors as exc:
            self._fail(op, f"{type(exc).__name__}: {exc}", connection=True)
            return False, None
        except Exception as exc:  # a data error (bad JSON, wrong type): never raised into the tick
            self._fail(op, f"{type(exc).__name__}: {exc}", connection=False)
            return False, None
        self._recovered()
        return True, result

    def _fail(self, op: str, reason: str, *, connection: bool) -> None:
        now = self._monotonic()
        with self._lock:
            self._errors.labels(backend=BACKEND, op=op).inc()
            self.failed_ops += 1
            self._unreported += 1
            if reason:
                self._last_reason = reason
            if connection:
                self._consecutive += 1
                delay = min(self.backoff_initial * 2 ** (self._consecutive - 1), self.backoff_max)
                self._retry_at = now + delay
                if self._down_since is None:
                    self._down_since = now
            if now - self._last_warn < self.warn_interval:
                return
            self._last_warn = now
            count, self._unreported = self._unreported, 0
        if self._client is None:
            log.warning("Redis cache unavailable: %s (%d cache operation(s) skipped)", self.import_error, count)
        else:
            log.warning(
                "Redis at %s failing: %s; %d cache operation(s) failed since the last report; ticks continue, "
                "reconnecting with backoff (at most one warning per %gs)",
                self.shown_url, mask_url(self._last_reason), count, self.warn_interval,
            )

    def _recovered(self) -> None:
        if self._down_since is None:
            return
        with self._lock:
            if self._down_since is None:
                return
            outage = self._monotonic() - self._down_since
            self._down_since = None
            self._consecutive = 0
            self._retry_at = float("-inf")
            failed, self._unreported = self._unreported, 0
            self._last_warn = float("-inf")
        log.info("Redis at %s is reachable again after %.1fs (%d operation(s) failed meanwhile)",
                 self.shown_url, outage, failed)

    # ----------------------------------------------------------------------------------------- encoding
    def _fx_entries(self, fx: FxRate, ttl_seconds: int) -> list[tuple[str, str, int]]:
        memo = self._fx_memo
        if memo is not None and memo[0] is fx and memo[1] == ttl_seconds:
            return memo[2]  # the same rate as last tick (FxRate is frozen): reuse its encoding
        rate = format_rate(fx.rate)
        meta = {
            "rate": rate,
            "exact": str(fx.rate),
            "id": fx.id,
            "ts": _iso_utc(fx.ts),
            "source": fx.source,
            "base": fx.base,
            "quote": fx.quote,
            "simulated": fx.simulated,
        }
        key = self.keys.fx()
        entries = [(key, rate, int(ttl_seconds)), (key + _META, _ENCODER.encode(meta), int(ttl_seconds))]
        self._fx_memo = (fx, ttl_seconds, entries)
        return entries

    def _heartbeat_entry(self, service: str, ts: datetime, ttl_seconds: int) -> tuple[str, str, int]:
        return self.keys.heartbeat(service), _iso_utc(ts), int(ttl_seconds)

    def _spread_entry(
        self, symbol: str, snapshot: Mapping[str, Any], ttl_seconds: int, now_iso: str | None = None
    ) -> tuple[str, str, int]:
        body = dict(snapshot)
        if "ts" not in body:
            body["ts"] = now_iso or utcnow().isoformat()
        body.setdefault("source", self.service_name)
        return self.keys.spread(symbol), _ENCODER.encode(body), int(ttl_seconds)

    @staticmethod
    def _decode_fx(rate_text: str | None, meta_text: str | None) -> FxRate | None:
        if rate_text is None:
            return None
        try:
            rate = Decimal(rate_text)
        except InvalidOperation:
            log.warning("ignoring unparsable FX rate in Redis: %r", rate_text[:40])
            return None
        meta: dict[str, Any] = {}
        if meta_text:
            try:
                meta = json.loads(meta_text)
            except ValueError:
                meta = {}
        try:
            matches = bool(meta) and Decimal(str(meta.get("rate"))) == rate
        except InvalidOperation:
            matches = False
        if not matches:  # set by hand or by another writer: keep the rate, admit we do not know more
            return FxRate(id="external", ts=utcnow(), rate=rate, source="external")
        ts = _parse_ts(str(meta.get("ts", ""))) or utcnow()
        exact = Decimal(str(meta.get("exact", rate_text)))
        return FxRate(
            id=str(meta.get("id", "")),
            ts=ts,
            rate=exact if exact == rate else rate,
            source=str(meta.get("source", "external")),
            base=str(meta.get("base", "USD")),
            quote=str(meta.get("quote", "KRW")),
            simulated=bool(meta.get("simulated", False)),
        )

    # ------------------------------------------------------------------------------------------ writes
    def _write(self, op: str, entries: list[tuple[str, str, int]]) -> bool:
        if not entries:
            return True

        def send(client: Any) -> None:
            pipe = client.pipeline(transaction=False)
            for key, value, ttl in entries:
                pipe.set(key, value, ex=ttl)
            pipe.execute()

        ok, _ = self._run(op, send)
        if ok:
            self._writes.inc()
        return ok

    def set_fx_rate(self, fx: FxRate, ttl_seconds: int) -> bool:
        return self._write("fx", self._fx_entries(fx, ttl_seconds))

    def set_heartbeat(self, service: str, ts: datetime, ttl_seconds: int) -> bool:
        return self._write("heartbeat", [self._heartbeat_entry(service, ts, ttl_seconds)])

    def set_spread_snapshot(
        self, symbol: str, snapshot: Mapping[str, Any], ttl_seconds: int = SPREAD_TTL_SECONDS
    ) -> bool:
        try:
            entry = self._spread_entry(symbol, snapshot, ttl_seconds)
        except (TypeError, ValueError) as exc:
            self._fail("spread", f"cannot encode snapshot of {symbol}: {exc}", connection=False)
            return False
        return self._write("spread", [entry])

    def write_tick(
        self,
        *,
        fx: tuple[FxRate, int] | None = None,
        heartbeat: tuple[str, datetime, int] | None = None,
        spreads: Mapping[str, Mapping[str, Any]] | None = None,
        spread_ttl_seconds: int = SPREAD_TTL_SECONDS,
    ) -> bool:
        """Everything a tick publishes, in one pipeline (one round trip)."""
        entries: list[tuple[str, str, int]] = []
        if fx is not None:
            entries += self._fx_entries(*fx)
        if heartbeat is not None:
            entries.append(self._heartbeat_entry(*heartbeat))
        try:
            if spreads:
                now_iso = utcnow().isoformat()
                for symbol, snapshot in spreads.items():
                    entries.append(self._spread_entry(symbol, snapshot, spread_ttl_seconds, now_iso))
        except (TypeError, ValueError) as exc:
            self._fail("tick", f"cannot encode a spread snapshot: {exc}", connection=False)
            return False
        return self._write("tick", entries)

    # ------------------------------------------------------------------------------------------- reads
    def get_fx_rate(self) -> FxRate | None:
        key = self.keys.fx()
        ok, values = self._run("read", lambda c: c.mget(key, key + _META))
        if not ok or not values:
            return None
        return self._decode_fx(values[0], values[1])

    def get_heartbeat(self, service: str) -> datetime | None:
        ok, value = self._run("read", lambda c: c.get(self.keys.heartbeat(service)))
        if not ok or value is None:
            return None
        return _parse_ts(value)

    def get_spread_snapshot(self, symbol: str) -> dict[str, Any] | None:
        ok, value = self._run("read", lambda c: c.get(self.keys.spread(symbol)))
        if not ok or value is None:
            return None
        try:
            found = json.loads(value)
        except ValueError:
            return None
        return found if isinstance(found, dict) else None

    def ttl(self, key: str) -> float | None:
        """Seconds left on ``key`` (None: missing, no expiry, or Redis unreachable), like ``TTL``."""
        ok, ms = self._run("read", lambda c: c.pttl(key))
        if not ok or ms is None or ms < 0:
            return None
        return ms / 1000.0

    # ------------------------------------------------------------------------------------------- admin
    def ping(self) -> bool:
        """An explicit probe: tried even while backing off (and ends the outage when it succeeds)."""
        ok, result = self._run("ping", lambda c: c.ping(), bypass_backoff=True)
        return bool(ok and result)

    def close(self) -> None:
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
                client.connection_pool.disconnect()
            except Exception:  # closing must never raise
                pass
