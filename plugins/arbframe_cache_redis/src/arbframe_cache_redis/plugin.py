"""Hooks of the Redis plugin that must work even when Redis is not the selected cache (``arbframe.plugins``).

* ``arbframe_health_checks``: the REDIS row of ``arbframe health`` — DISABLED when ``redis.enabled`` is false,
  OK ``Connected to redis://host:port/db`` (password masked) when a PING answers, ERROR otherwise.
* ``arbframe_config_schema``: the ``redis`` section's schema, so typos are caught even while Redis is disabled.

This module is imported by every ``arbframe`` command; it imports redis-py only when the check runs.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from arbframe import HealthCheck, HealthResult, HealthStatus, PluginContext, hookimpl, mask_url

ARBFRAME_API_VERSION = 1

COMPONENT = "redis"
DEFAULT_URL = "redis://localhost:6379/0"
INSTALL_HINT = "pip install redis (or pip install arbframe-cache-redis)"


def redis_enabled(config: Mapping[str, Any]) -> bool:
    """Redis is in use when ``redis.enabled`` is true or the ``hybrid`` storage asks for it (as the kernel does)."""
    section = config.get("redis") or {}
    storage = config.get("storage") or {}
    return bool(section.get("enabled")) or storage.get("backend") == "hybrid"


def check_redis(section: Mapping[str, Any], *, enabled: bool, timeout: float = 0.8) -> HealthResult:
    """One bounded PING with a throwaway connection; never shows the password."""
    url = str(section.get("url") or DEFAULT_URL)
    shown = mask_url(url)
    if not enabled:
        return HealthResult(COMPONENT, HealthStatus.DISABLED, "Redis disabled (redis.enabled: false)")
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError:
        return HealthResult(COMPONENT, HealthStatus.ERROR, f"redis-py is not installed: {INSTALL_HINT}")
    try:
        client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0),
            health_check_interval=0, decode_responses=True,
        )
    except ValueError as exc:
        return HealthResult(COMPONENT, HealthStatus.ERROR, f"invalid redis.url {shown}: {mask_url(str(exc))}")
    try:
        started = time.perf_counter()
        client.ping()
        latency_ms = (time.perf_counter() - started) * 1000
        details: dict[str, Any] = {"url": shown, "latency_ms": round(latency_ms, 3)}
        try:
            info = client.info("server")
            details["redis_version"] = info.get("redis_version")
        except Exception:  # INFO may be renamed/disabled; the PING is what counts
            pass
        return HealthResult(COMPONENT, HealthStatus.OK, f"Connected to {shown}", details)
    except Exception as exc:
        reason = mask_url(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
        return HealthResult(
            COMPONENT, HealthStatus.ERROR, f"Cannot connect to {shown}: {type(exc).__name__}: {reason}",
            {"url": shown},
        )
    finally:
        try:
            client.close()
        except Exception:
            pass


@hookimpl
def arbframe_health_checks(config: Mapping[str, Any], context: PluginContext) -> list[HealthCheck]:
    section = dict(config.get("redis") or {})
    enabled = redis_enabled(config)
    timeout = float(section.get("health_timeout_seconds", 0.8))
    return [
        HealthCheck(
            COMPONENT,
            lambda: check_redis(section, enabled=enabled, timeout=timeout),
            timeout_seconds=timeout + 0.5,
        )
    ]


@hookimpl
def arbframe_config_schema() -> Mapping[str, Mapping[str, Any]]:
    from arbframe_cache_redis.cache import RedisCache

    return {"redis": RedisCache.config_schema()}
