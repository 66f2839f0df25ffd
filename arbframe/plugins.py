"""Plugin discovery and the kernel object that owns the plugin manager.

stevedore finds and imports; pluggy dispatches. Drivers (storage, cache, exchange, fx) are imported only when
the config selects them; listing what is installed reads distribution metadata and imports nothing. Every
loaded plugin module and built driver instance is registered with one ``pluggy.PluginManager("arbframe")``
owned by a :class:`Kernel` (never a module global), so tests get a fresh one each time.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from arbframe import hookspecs
from arbframe.entrypoints import (  # noqa: F401 - re-exported for callers
    ALL_GROUPS,
    COMMAND_GROUP,
    DRIVER_GROUPS,
    PLUGIN_GROUP,
    EntryPointInfo,
    installed,
    installed_names,
)
from arbframe.errors import ArbframeError, DriverLoadError, DriverNotInstalled
from arbframe.interfaces import API_VERSION, HealthCheck, PluginContext

if TYPE_CHECKING:
    from arbframe.interfaces import Cache, Exchange, FxSource, Storage

log = logging.getLogger("arbframe.plugins")

#: Kernel modules registered before any entry point. The kernel's own feature plugins are declared as
#: ``arbframe.plugins`` entry points of the ``arbframe`` distribution, so they take the same path as third parties'.
BUILTIN_PLUGINS: tuple[str, ...] = ()


def _declared_api_version(obj: Any) -> int | None:
    version = getattr(obj, "api_version", None)
    if version is None:
        version = getattr(obj, "ARBFRAME_API_VERSION", None)
    if version is None and not isinstance(obj, type) and hasattr(obj, "__module__"):
        module = importlib.import_module(obj.__module__)
        version = getattr(module, "ARBFRAME_API_VERSION", None)
    return version


def check_api_version(obj: Any, label: str) -> None:
    """Refuse a plugin built for another kernel API version, saying which."""
    version = _declared_api_version(obj)
    if version is not None and version != API_VERSION:
        raise DriverLoadError(
            f"{label} targets arbframe plugin API {version}, but this kernel provides API {API_VERSION}; "
            "install a version of the plugin built for this kernel"
        )


def load_entry_point(group: str, name: str, *, key_path: str = "") -> Any:
    """Import one entry point with stevedore; clear errors for missing, broken or incompatible plugins."""
    from stevedore import NamedExtensionManager

    failures: list[tuple[str, BaseException]] = []

    def on_failure(_manager: Any, entrypoint: Any, exc: BaseException) -> None:
        failures.append((getattr(entrypoint, "name", name), exc))

    manager = NamedExtensionManager(
        namespace=group,
        names=[name],
        invoke_on_load=False,
        on_load_failure_callback=on_failure,
        name_order=True,
    )
    if failures:
        _, exc = failures[0]
        where = f"{key_path}: " if key_path else ""
        raise DriverLoadError(f"{where}plugin {name!r} ({group}) is installed but failed to load: {exc!r}")
    if name not in manager.names():
        raise DriverNotInstalled(group, name, installed_names(group), key_path)
    obj = manager[name].plugin
    check_api_version(obj, f"plugin {name!r} ({group})")
    return obj


@dataclass
class PluginStatus:
    info: EntryPointInfo
    status: str  # ok | failed | incompatible
    error: str = ""


def probe_all(groups: Iterable[str] = ALL_GROUPS) -> list[PluginStatus]:
    """Import every installed plugin to report its status (``arbframe plugins``)."""
    results = []
    for group in groups:
        for info in installed(group):
            try:
                load_entry_point(group, info.name)
            except DriverLoadError as exc:
                status = "incompatible" if "plugin API" in str(exc) else "failed"
                results.append(PluginStatus(info, status, str(exc)))
            except Exception as exc:  # a broken plugin must never take the listing down
                results.append(PluginStatus(info, "failed", repr(exc)))
            else:
                results.append(PluginStatus(info, "ok"))
    return results


def new_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("arbframe")
    pm.add_hookspecs(hookspecs)
    return pm


def register_builtin_and_plugin_modules(pm: pluggy.PluginManager) -> list[PluginStatus]:
    """Register the kernel's builtin plugin modules and every ``arbframe.plugins`` module.

    A module that fails to import is reported (returned and logged) and skipped: non-driver plugins never take
    the kernel down.
    """
    for module_name in BUILTIN_PLUGINS:
        if pm.get_plugin(module_name) is None:
            pm.register(importlib.import_module(module_name), name=module_name)
    failures: list[PluginStatus] = []
    for info in installed(PLUGIN_GROUP):
        if pm.get_plugin(f"plugin:{info.name}") is not None:
            continue
        try:
            module = load_entry_point(PLUGIN_GROUP, info.name)
        except Exception as exc:
            log.warning("plugin %r (%s) not loaded: %s", info.name, info.distribution, exc)
            failures.append(PluginStatus(info, "failed", str(exc)))
            continue
        pm.register(module, name=f"plugin:{info.name}")
    return failures


def collect_schema_fragments(pm: pluggy.PluginManager) -> dict[str, Mapping[str, Any]]:
    """Dotted section path -> schema fragment, from every registered plugin's ``arbframe_config_schema``."""
    fragments: dict[str, Mapping[str, Any]] = {}
    for result in pm.hook.arbframe_config_schema():
        for path, schema in (result or {}).items():
            fragments[path] = schema
    return fragments


class Kernel:
    """Owns the plugin manager, the metrics registry and the context handed to drivers and hooks."""

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        mode: str | None = None,
        mock: bool | None = None,
        service_name: str = "bot_service",
        register_plugins: bool = True,
    ) -> None:
        from prometheus_client import CollectorRegistry

        self.config = config
        self.pm = new_plugin_manager()
        self.registry = CollectorRegistry(auto_describe=True)
        from arbframe.instruments import PluginMetrics

        PluginMetrics.get(self.registry)  # served from the start: dashboards and alerts rely on the family
        register_process_collectors(self.registry)
        self.plugin_failures: list[PluginStatus] = []
        if register_plugins:
            self.plugin_failures = register_builtin_and_plugin_modules(self.pm)
        data_dir = Path(str(config.get("storage", {}).get("csv", {}).get("data_dir", "data")))
        self.context = PluginContext(
            config=config,
            pm=self.pm,
            registry=self.registry,
            data_dir=data_dir,
            mode=mode or str(config.get("mode", "paper")),
            mock=bool(config.get("mock_mode", False)) if mock is None else mock,
            service_name=service_name,
        )
        self._drivers: list[Any] = []
        for plugin in self.pm.get_plugins():
            self._register_metrics_of(plugin)
        self.pm.hook.arbframe_configure.call_historic(kwargs={"config": config, "context": self.context})

    @classmethod
    def create(cls, config: Mapping[str, Any], **kwargs: Any) -> Kernel:
        return cls(config, **kwargs)

    # ------------------------------------------------------------------------------------------- drivers
    def _register_metrics_of(self, plugin: Any) -> None:
        from arbframe.instruments import PluginMetrics

        name = self.pm.get_name(plugin)
        if name is not None:  # its error counters at 0 per hook, so the first exception is an increase alerts see
            hooks = tuple(sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or ()))
            PluginMetrics.get(self.registry).precreate(name, hooks)
        for impl in self.pm.hook.arbframe_register_metrics.get_hookimpls():
            if impl.plugin is plugin:
                self.call_isolated(impl, "arbframe_register_metrics", registry=self.registry, context=self.context)

    def register(self, plugin: Any, name: str) -> None:
        """Register a plugin object (a built driver) so its hook methods take part."""
        if self.pm.get_plugin(name) is not None:
            self.pm.unregister(name=name)
        self.pm.register(plugin, name=name)
        self._register_metrics_of(plugin)

    def driver_class(self, kind: str, name: str, key_path: str = "") -> type:
        return load_entry_point(DRIVER_GROUPS[kind], name, key_path=key_path)

    def build_driver(self, kind: str, name: str, section: Mapping[str, Any], key_path: str = "") -> Any:
        """Import, construct and register one driver: ``DriverClass(section, context)``."""
        cls = self.driver_class(kind, name, key_path)
        try:
            instance = cls(dict(section or {}), self.context)
        except ArbframeError:
            raise
        except Exception as exc:  # a selected driver that cannot start stops the service with one clear line
            where = f"{key_path}: " if key_path else ""
            raise DriverLoadError(
                f"{where}{kind} driver {name!r} ({DRIVER_GROUPS[kind]}) could not be started: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        self.register(instance, f"{kind}:{name}")
        self._drivers.append(instance)
        return instance

    def selected_drivers(self) -> dict[str, list[tuple[str, str]]]:
        """kind -> [(name, key path)] the config selects, without importing anything."""
        return selected_drivers(self.config)

    def load_storage(self) -> Storage:
        from arbframe.storage_factory import get_storage

        return get_storage(self)

    def load_cache(self) -> Cache:
        name = cache_backend(self.config)
        section = self.config.get("redis", {}) if name == "redis" else self.config.get("cache", {})
        try:
            return self.build_driver("cache", name, section, "redis.enabled" if name == "redis" else "cache")
        except DriverLoadError as exc:
            # seed D2: a missing redis-py (or broken cache plugin) must not stop the service
            log.warning("cache %r unavailable (%s); using the in-memory cache", name, exc)
            return self.build_driver("cache", "memory", {}, "cache")

    def load_exchange(self, name: str) -> Exchange:
        return self.build_driver("exchange", name, self.config.get(name, {}), f"arbitrage -> {name}")

    def load_fx_source(self) -> FxSource:
        fx = self.config.get("fx", {})
        return self.build_driver("fx", str(fx.get("source", "static")), fx, "fx.source")

    # ---------------------------------------------------------------------------------------------- hooks
    def call_isolated(self, impl: Any, hook_name: str, **kwargs: Any) -> Any:
        try:
            return impl.function(**{k: kwargs[k] for k in impl.argnames if k in kwargs})
        except Exception as exc:
            from arbframe.instruments import PluginMetrics

            PluginMetrics.get(self.registry).errors.labels(plugin=impl.plugin_name, hook=hook_name).inc()
            log.error("plugin %s raised in %s: %r (isolated; carrying on)", impl.plugin_name, hook_name, exc)
            return None

    def notify(self, hook_name: str, **kwargs: Any) -> list[Any]:
        """Call a hook plugin by plugin; one plugin's exception is logged, counted and never stops the others."""
        caller = getattr(self.pm.hook, hook_name)
        results = []
        for impl in reversed(caller.get_hookimpls()):
            result = self.call_isolated(impl, hook_name, **kwargs)
            if result is not None:
                results.append(result)
        return results

    def health_checks(self) -> list[HealthCheck]:
        checks: list[HealthCheck] = []
        for result in self.notify("arbframe_health_checks", config=self.config, context=self.context):
            checks.extend(result)
        return checks

    def close(self) -> None:
        """Close built drivers (sync ``close``; async ones are closed by the runner)."""
        for driver in reversed(self._drivers):
            close = getattr(driver, "close", None)
            if close is None or _is_coroutine_function(close):
                continue
            try:
                close()
            except Exception as exc:
                log.warning("closing %s failed: %r", type(driver).__name__, exc)
        self._drivers.clear()


def register_process_collectors(registry: Any) -> None:
    """The process (memory, CPU, open fds) and Python GC collectors, in the kernel's registry rather than
    prometheus-client's global one, so ``/metrics`` shows them like every other family."""
    from prometheus_client import GCCollector, ProcessCollector

    ProcessCollector(registry=registry)
    GCCollector(registry=registry)


def _is_coroutine_function(fn: Any) -> bool:
    import inspect

    return inspect.iscoroutinefunction(fn)


def cache_backend(config: Mapping[str, Any]) -> str:
    """``redis`` when Redis is enabled (or the hybrid storage asks for it), else the configured/builtin cache."""
    redis = config.get("redis", {}) or {}
    if redis.get("enabled") or config.get("storage", {}).get("backend") == "hybrid":
        return "redis"
    return str((config.get("cache") or {}).get("backend", "memory"))


def selected_drivers(config: Mapping[str, Any]) -> dict[str, list[tuple[str, str]]]:
    storage = str(config.get("storage", {}).get("backend", "csv"))
    storage_driver = "csv" if storage == "hybrid" else storage
    arbitrage = config.get("arbitrage", {}) or {}
    exchanges = [
        (str(arbitrage.get(role)), f"arbitrage.{role}") for role in ("domestic", "foreign") if arbitrage.get(role)
    ]
    return {
        "storage": [(storage_driver, "storage.backend")],
        "cache": [(cache_backend(config), "redis.enabled")],
        "exchange": exchanges,
        "fx": [(str((config.get("fx") or {}).get("source", "static")), "fx.source")],
    }


def driver_fragments(kernel: Kernel, kinds_and_names: Iterable[tuple[str, str, str]]) -> dict[str, Any]:
    """Schema fragments of the given drivers' classes (imports them), keyed by their section path."""
    from arbframe.config import driver_section_path

    fragments: dict[str, Any] = {}
    for kind, name, key_path in kinds_and_names:
        cls = kernel.driver_class(kind, name, key_path)
        schema = cls.config_schema() if hasattr(cls, "config_schema") else None
        if schema:
            fragments[driver_section_path(kind, name)] = schema
    return fragments


def validate_selected(kernel: Kernel) -> None:
    """Config pass 2: import the selected drivers and validate their sections with their fragments."""
    from arbframe.config import validate_full

    picks = [(kind, name, path) for kind, items in kernel.selected_drivers().items() for name, path in items]
    fragments = collect_schema_fragments(kernel.pm)
    fragments.update(driver_fragments(kernel, picks))
    validate_full(kernel.config, fragments)


def all_fragments(kernel: Kernel) -> dict[str, Any]:
    """Every installed driver's fragment plus the modules' (``arbframe config schema``); broken ones skipped."""
    fragments = collect_schema_fragments(kernel.pm)
    for kind, group in DRIVER_GROUPS.items():
        for info in installed(group):
            try:
                fragments.update(driver_fragments(kernel, [(kind, info.name, "")]))
            except Exception as exc:
                log.warning("no schema from %s %r: %s", kind, info.name, exc)
    return fragments
