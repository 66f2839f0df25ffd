"""The kernel object: it owns the plugin manager, the metrics registry and the context handed to drivers.

stevedore finds and imports (:mod:`arbframe.kernel.loader`); pluggy dispatches. Drivers (storage, cache, exchange,
fx) are imported only when the config selects them. Every loaded plugin module and built driver instance is
registered with one ``pluggy.PluginManager("arbframe")`` owned by a :class:`Kernel` (never a module global), so
tests get a fresh one each time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arbframe.core.errors import ArbframeError, DriverLoadError, DriverNotInstalled
from arbframe.core.secrets import mask_url, scrub
from arbframe.kernel.config import (
    cache_backend,
    driver_section,
    driver_section_path,
    fx_source_name,
    order_journal_mode,
    selected_drivers,
    validate_full,
)
from arbframe.kernel.entrypoints import DRIVER_GROUPS, installed, installed_names
from arbframe.kernel.interfaces import HealthCheck, PluginContext
from arbframe.kernel.loader import (
    check_hooks,
    collect_schema_fragments,
    load_entry_point,
    new_plugin_manager,
    register_builtin_and_plugin_modules,
)

if TYPE_CHECKING:
    from arbframe.kernel.interfaces import Cache, Exchange, FxSource, Storage
    from arbframe.kernel.loader import PluginStatus
    from arbframe.kernel.storage_writer import StorageWriter

log = logging.getLogger("arbframe.plugins")
storage_log = logging.getLogger("arbframe.storage")

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
        from arbframe.kernel.instruments import PluginMetrics

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
        from arbframe.kernel.instruments import PluginMetrics

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
        try:
            check_hooks(self.pm, name)
        except DriverLoadError:
            self.pm.unregister(name=name)
            raise
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
        return get_storage(self)

    def load_storage_writer(self, wrap: Callable[[Storage], Storage] | None = None) -> StorageWriter:
        """The selected storage behind the kernel's non-blocking writer (:mod:`arbframe.kernel.storage_writer`),
        as the service loop uses it: the kernel closes the writer (bounded), which closes the driver.

        ``wrap`` puts a guard between the writer thread and the driver (the service's error isolation)."""
        from arbframe.kernel.book import book_from_config
        from arbframe.kernel.storage_writer import StorageWriter

        driver = get_storage(self)
        inner = wrap(driver) if wrap is not None else driver
        section = (self.config.get("storage") or {}).get("writer") or {}
        book = book_from_config(self.config)
        writer = StorageWriter(
            inner,
            spool_dir=self.context.data_dir / "storage_spool",
            instance_id=book.instance_id,
            book=book,
            queue_size=int(section.get("queue_size", 20_000)),
            stall_seconds=float(section.get("stall_seconds", 1.0)),
            close_seconds=float(section.get("close_timeout_seconds", 7.0)),
            order_journal=order_journal_mode(self.config),
            registry=self.registry,
        )
        if driver in self._drivers:
            self._drivers.remove(driver)
        self._drivers.append(writer)
        self.register(writer, "storage:writer")
        return writer

    def load_cache(self) -> Cache:
        name = cache_backend(self.config)
        section = driver_section(self.config, "cache", name)
        try:
            return self.build_driver("cache", name, section, "redis.enabled" if name == "redis" else "cache.backend")
        except DriverLoadError as exc:
            # seed D2: a missing redis-py (or broken cache plugin) must not stop the service
            log.warning("cache %r unavailable (%s); using the in-memory cache", name, exc)
            return self.build_driver("cache", "memory", {}, "cache")

    def load_exchange(self, name: str, *, simulated: Callable[[], Exchange] | None = None) -> Exchange:
        """The venue's plugin driver: it must offer market data, and trading too when ``mode: live``. In mock mode,
        when no plugin provides ``name``, ``simulated()`` (the kernel's simulated market, built by the caller: the
        market lives above this layer) serves the venue instead."""
        from arbframe.kernel.interfaces import MarketData, Trading

        where = f"arbitrage -> {name}"
        if simulated is not None and self.context.mock and name not in installed_names(DRIVER_GROUPS["exchange"]):
            exchange = simulated()
            log.info("exchange %r: no plugin installed; mock mode: the kernel's simulated market serves it", name)
            self.register(exchange, f"exchange:{name}")
            self._drivers.append(exchange)
            return exchange
        cls = self.driver_class("exchange", name, where)
        if not (isinstance(cls, type) and issubclass(cls, MarketData)):
            raise DriverLoadError(f"{where}: {cls!r} is not an arbframe.MarketData (or Exchange) driver")
        if self.context.mode == "live" and not issubclass(cls, Trading):
            raise DriverLoadError(f"{where}: exchange {name!r} is read-only (arbframe.MarketData only); mode: live "
                                  "needs a driver that also implements arbframe.Trading")
        return self.build_driver("exchange", name, self.config.get(name, {}), where)

    def load_fx_source(self) -> FxSource:
        name = fx_source_name(self.config)
        return self.build_driver("fx", name, driver_section(self.config, "fx", name), "fx.source")

    # ---------------------------------------------------------------------------------------------- hooks
    def call_isolated(self, impl: Any, hook_name: str, **kwargs: Any) -> Any:
        try:
            return impl.function(**{k: kwargs[k] for k in impl.argnames if k in kwargs})
        except Exception as exc:
            from arbframe.kernel.instruments import PluginMetrics

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


def driver_fragments(kernel: Kernel, kinds_and_names: Iterable[tuple[str, str, str]]) -> dict[str, Any]:
    """Schema fragments of the given drivers' classes (imports them), keyed by their section path."""
    fragments: dict[str, Any] = {}
    for kind, name, key_path in kinds_and_names:
        cls = kernel.driver_class(kind, name, key_path)
        schema = cls.config_schema() if hasattr(cls, "config_schema") else None
        if schema:
            fragments[driver_section_path(kind, name)] = schema
    return fragments


def validate_selected(kernel: Kernel) -> None:
    """Config pass 2: import the selected drivers and validate their sections with their fragments."""
    picks = [(kind, name, path) for kind, items in kernel.selected_drivers().items() for name, path in items]
    if kernel.context.mock:  # venues without a plugin are served by the simulated market (no section to check)
        exchanges = installed_names(DRIVER_GROUPS["exchange"])
        picks = [(kind, name, path) for kind, name, path in picks if kind != "exchange" or name in exchanges]
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


def get_storage(kernel: Kernel) -> Storage:
    """Build the storage selected by ``storage.backend``.

    ``csv`` always works. ``hybrid`` is CSV storage plus the Redis cache (the cache is chosen by
    :func:`arbframe.kernel.config.cache_backend`). Any other backend is a plugin. A plugin whose server is merely
    down starts anyway and spools until it answers (the PostgreSQL plugin does); when the driver cannot be built at
    all (its library is missing, it raises), one WARNING names the cause and the service carries on with CSV.
    """
    storage_cfg = kernel.config.get("storage", {}) or {}
    backend = str(storage_cfg.get("backend", "csv"))
    if backend in ("csv", "hybrid"):
        return kernel.build_driver("storage", "csv", storage_cfg.get("csv", {}), "storage.backend")
    try:
        return kernel.build_driver("storage", backend, storage_cfg.get(backend, {}), "storage.backend")
    except DriverNotInstalled:
        raise
    except Exception as error:
        exc = error.__cause__ if isinstance(error, DriverLoadError) and error.__cause__ is not None else error
        reason = scrub(mask_url(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__))
        csv_dir = (storage_cfg.get("csv") or {}).get("data_dir", "data")
        storage_log.warning(
            "storage backend %r unavailable (%s: %s); falling back to CSV storage at %s",
            backend, type(exc).__name__, reason, csv_dir,
        )
        storage = kernel.build_driver("storage", "csv", storage_cfg.get("csv", {}), "storage.backend")
        kernel.notify("arbframe_on_storage_fallback", backend=backend, fallback="csv",
                      reason=f"{type(exc).__name__}: {reason}")
        return storage
