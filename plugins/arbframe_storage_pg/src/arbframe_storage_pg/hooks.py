"""Hooks of the PostgreSQL plugin that work whether or not the driver is running.

Registered through the ``arbframe.plugins`` entry point, so ``arbframe health`` reports PostgreSQL even when the
storage fell back to CSV (that is when the ERROR matters), and ``arbframe config show`` knows the section's
schema (the DSN is ``writeOnly``: masked). Importing this module is cheap: no psycopg2.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from arbframe import HealthCheck, HealthResult, HealthStatus, PluginContext, hookimpl

ARBFRAME_API_VERSION = 1


@hookimpl
def arbframe_config_schema() -> dict[str, Any]:
    from arbframe_storage_pg.settings import CONFIG_SCHEMA

    return {"storage.postgres": CONFIG_SCHEMA}


def _running_storage(context: PluginContext | None) -> Any:
    """The PostgresStorage built by this kernel, if any (it knows whether it is spooling)."""
    if context is None or context.pm is None:
        return None
    import sys

    module = sys.modules.get("arbframe_storage_pg.storage")
    if module is None:
        return None
    for plugin in context.pm.get_plugins():
        if isinstance(plugin, module.PostgresStorage) and not plugin._closed:
            return plugin
    return None


@hookimpl
def arbframe_health_checks(config: Mapping[str, Any], context: PluginContext) -> list[HealthCheck]:
    storage_cfg = (config.get("storage") or {}) if isinstance(config, Mapping) else {}
    backend = str(storage_cfg.get("backend", "csv"))
    if backend != "postgres":
        result = HealthResult("postgres", HealthStatus.SKIP, f"not used (storage.backend: {backend})")
        return [HealthCheck("postgres", lambda: result, timeout_seconds=1.0)]
    section = storage_cfg.get("postgres") or {}
    running = _running_storage(context)
    if running is not None:
        timeout = running.settings.connect_timeout_seconds
        return [HealthCheck("postgres", running.health, timeout_seconds=max(2, timeout) + 1.0)]

    from arbframe_storage_pg.settings import Settings

    try:
        settings = Settings.from_section(section, getattr(context, "data_dir", None))
    except ValueError as exc:
        bad = HealthResult("postgres", HealthStatus.ERROR, f"bad storage.postgres config: {exc}")
        return [HealthCheck("postgres", lambda: bad, timeout_seconds=1.0)]

    def check() -> HealthResult:
        from arbframe_storage_pg.storage import probe

        return probe(settings)

    return [HealthCheck("postgres", check, timeout_seconds=max(2, settings.connect_timeout_seconds) + 1.0)]
