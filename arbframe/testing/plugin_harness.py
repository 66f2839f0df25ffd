"""Exercise a plugin the way the kernel does: validate its config section, build it, register its hooks — or
build the whole kernel from a config and run the service loop with the plugin loaded.

::

    from arbframe.testing.plugin_harness import PluginHarness

    def test_my_driver_hooks(tmp_path):
        harness = PluginHarness({"mock_mode": False}, data_dir=tmp_path)
        driver = harness.build(MyVenue, {"base_url": fake.url})   # schema-checked, then MyVenue(section, context)
        [result] = harness.health()                                 # run like `arbframe health` runs checks
        assert result.status is HealthStatus.OK
        assert harness.metric("arbframe_exchange_requests_total",
                              {"exchange": "myvenue", "endpoint": "orderbook", "status": "200"}) == 1
        harness.notify("arbframe_on_spread", spread=some_spread)  # isolated, like the runner calls events
        harness.close()

The config starts from the kernel's embedded defaults (``overrides`` deep-merged on top) but is not validated as
a whole, so the plugin under test needs no other plugin installed. Every harness owns a fresh plugin manager and
a fresh Prometheus registry.

:meth:`PluginHarness.from_config` builds the kernel ``arbframe run`` builds instead: the config validated as a
whole (both passes, so every selected driver's section too), every installed ``arbframe.plugins`` module
registered. On it a test runs the service loop for a few ticks, loads the storage writer, or asks the kernel's FX
service and FX health check about a source::

    async def test_my_notifier_sees_positions(service_harness, endpoint):
        harness = service_harness({"my_notifier": {"url": endpoint.url}}, mock=True)
        assert await harness.run_in_thread(2) == 0     # `arbframe run` for 2 ticks; this loop serves the fake
        assert endpoint.messages

    async def test_stale_rates_are_refused(fake_fx):
        harness = PluginHarness()
        with pytest.raises(FxUnavailable):
            await harness.fx_service(source=MyFxSource({...}, None), max_age_seconds=300).current()
        result = await harness.fx_health(source=MyFxSource({...}, None), max_age_seconds=300)
        assert result.status is HealthStatus.WARN
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from arbframe.kernel.interfaces import HealthResult, HealthStatus, PluginContext
from arbframe.trading.fx import FxUnavailable

__all__ = ["FxUnavailable", "PluginHarness", "plugin_context"]


def plugin_context(config: Mapping[str, Any] | None = None, *, data_dir: str | os.PathLike[str] = "data",
                   mode: str = "paper", mock: bool = False) -> PluginContext:
    """A bare :class:`arbframe.PluginContext` (fresh plugin manager with the hook specs, fresh registry) around
    exactly ``config``, for building a driver by hand."""
    from prometheus_client import CollectorRegistry

    from arbframe.kernel.loader import new_plugin_manager

    return PluginContext(config=dict(config or {}), pm=new_plugin_manager(), registry=CollectorRegistry(),
                         data_dir=Path(data_dir), mode=mode, mock=mock)


class PluginHarness:
    def __init__(
        self,
        overrides: Mapping[str, Any] | None = None,
        *,
        mode: str | None = None,
        mock: bool | None = None,
        market: Any = None,
        data_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        from arbframe.kernel.config import _load_yaml, deep_merge, embedded_defaults_text, interpolate
        from arbframe.kernel.plugin_host import Kernel

        config = interpolate(_load_yaml(embedded_defaults_text(), "<embedded defaults>"), os.environ,
                             source="defaults")
        if data_dir is not None:
            config = deep_merge(config, {"storage": {"csv": {"data_dir": str(data_dir)}}})
        self.config = deep_merge(config, overrides or {})
        self.kernel = Kernel(self.config, mode=mode, mock=mock, register_plugins=False)
        if market is not None:
            self.kernel.context.market = market
        if data_dir is not None:
            self.kernel.context.data_dir = Path(data_dir)

    @classmethod
    def from_config(
        cls,
        overrides: Mapping[str, Any] | None = None,
        *,
        mode: str | None = None,
        mock: bool | None = None,
        env: Mapping[str, str] | None = None,
        files: Sequence[str | os.PathLike[str]] = (),
        data_dir: str | os.PathLike[str] | None = None,
    ) -> PluginHarness:
        """The kernel a command builds: embedded defaults, ``files``, ``ARBFRAME_*`` variables of ``env`` (default
        ``os.environ``; pass ``{}`` to ignore the caller's), then ``overrides``; validated as a whole (both
        passes: a bad key fails with :class:`arbframe.ConfigError` naming it) and every installed
        ``arbframe.plugins`` module registered, as ``arbframe run`` does.

        ``data_dir`` is the default of ``storage.csv.data_dir`` (``overrides`` may still set it); the context's
        data dir follows the config, as in the service."""
        from arbframe.kernel.config import deep_merge, load_config
        from arbframe.kernel.plugin_host import Kernel, validate_selected

        if data_dir is not None:
            overrides = deep_merge({"storage": {"csv": {"data_dir": str(data_dir)}}}, overrides or {})
        config = load_config(list(files), overrides=overrides, env=env)
        kernel = Kernel(config, mode=mode, mock=mock)
        try:
            validate_selected(kernel)
        except BaseException:
            kernel.close()
            raise
        harness = cls.__new__(cls)
        harness.config, harness.kernel = config, kernel
        return harness

    # -------------------------------------------------------------------------------------------- access
    @property
    def context(self) -> PluginContext:
        return self.kernel.context

    @property
    def registry(self) -> Any:
        return self.kernel.registry

    @property
    def pm(self) -> Any:
        return self.kernel.pm

    # ---------------------------------------------------------------------------------------- building
    def validate(self, driver_class: type, section: Mapping[str, Any] | None) -> None:
        """Check ``section`` against ``driver_class.config_schema()``; :class:`arbframe.ConfigError` names the key."""
        from jsonschema import Draft202012Validator

        from arbframe.core.errors import ConfigError
        from arbframe.kernel.config import describe_error, schema_validator

        schema = driver_class.config_schema() if hasattr(driver_class, "config_schema") else None
        if not schema:
            return
        Draft202012Validator.check_schema(schema)
        errors = sorted(schema_validator(schema).iter_errors(dict(section or {})), key=lambda e: list(e.path))
        if errors:
            raise ConfigError(describe_error(errors[0], schema))

    def build(self, driver_class: type, section: Mapping[str, Any] | None = None, *, kind: str | None = None) -> Any:
        """Validate, construct (``driver_class(section, context)``) and register a driver, as the kernel does."""
        self.validate(driver_class, section)
        instance = driver_class(dict(section or {}), self.context)
        kind = kind or _kind_of(driver_class)
        self.kernel.register(instance, f"{kind}:{getattr(driver_class, 'name', '') or driver_class.__name__}")
        self.kernel._drivers.append(instance)
        return instance

    def register(self, plugin: Any, name: str | None = None) -> None:
        """Register a hook module (an ``arbframe.plugins`` entry point) or any object with hook methods."""
        self.kernel.register(plugin, name or f"plugin:{getattr(plugin, '__name__', type(plugin).__name__)}")

    # ------------------------------------------------------------------------------------------- hooks
    def health(self, component: str | None = None) -> list[HealthResult]:
        """Every registered health check (or only those of ``component``, e.g. ``"notify"``), run like
        ``arbframe health`` runs them (bounded, concurrently, each in its own thread and event loop)."""
        from arbframe.service.health import run_checks

        checks = [c for c in self.kernel.health_checks() if component is None or c.component == component]
        return [outcome.result for outcome in run_checks(checks)]

    def notify(self, hook_name: str, **kwargs: Any) -> list[Any]:
        """Call a hook plugin by plugin, isolated as while trading (exceptions logged and counted)."""
        return self.kernel.notify(hook_name, **kwargs)

    def schema_fragments(self) -> dict[str, Any]:
        """Section path -> schema from the registered plugins' ``arbframe_config_schema`` hooks."""
        from arbframe.kernel.loader import collect_schema_fragments

        return collect_schema_fragments(self.pm)

    def metric(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        """A sample's value from the kernel's registry (``None`` when absent)."""
        return self.registry.get_sample_value(name, dict(labels or {}))

    def load_storage(self) -> Any:
        """The storage the config selects, built the kernel's way (fallback to CSV included)."""
        return self.kernel.load_storage()

    def load_storage_writer(self) -> Any:
        """The selected storage behind the kernel's non-blocking writer, as the service loop uses it (spooling
        while the backend is down or stalled, replaying after); :meth:`close` closes it, bounded by
        ``storage.writer.close_timeout_seconds``."""
        return self.kernel.load_storage_writer()

    # ------------------------------------------------------------------------------------------------ FX
    def _fx_source(self, source: Any) -> Any:
        return self.kernel.load_fx_source() if isinstance(source, str) and source == "config" else source

    def _fx_max_age(self, max_age_seconds: float | None) -> float:
        if max_age_seconds is not None:
            return float(max_age_seconds)
        return float((self.config.get("fx") or {}).get("max_age_seconds", 300) or 300)

    def fx_service(self, cache: Any = None, *, ttl_seconds: int = 60, max_age_seconds: float | None = None,
                   source: Any = "config") -> Any:
        """The kernel's FX service over ``cache`` (default: a fresh in-memory cache) with ``source`` (default: the
        configured FX source; ``None``: a read-only consumer of the cache). ``await service.current()`` raises
        :class:`FxUnavailable` when no rate younger than ``max_age_seconds`` (default ``fx.max_age_seconds``)
        can be had — the rule that blocks new entries."""
        from arbframe.builtins.memory_cache import MemoryCache
        from arbframe.trading.fx import FxService

        return FxService(self._fx_source(source), MemoryCache() if cache is None else cache,
                         ttl_seconds=ttl_seconds, max_age_seconds=self._fx_max_age(max_age_seconds))

    async def fx_health(self, *, source: Any = "config", cache: Any = None,
                        max_age_seconds: float | None = None) -> HealthResult:
        """The kernel's FX health row (``arbframe health`` / ``/health``) for ``source`` (default: the configured
        one) over ``cache`` (default: a fresh in-memory cache, so the source is asked): OK with the rate's age,
        WARN past ``max_age_seconds`` (default ``fx.max_age_seconds``), ERROR when the source raises. Awaited
        on the caller's event loop (a fake server on it keeps serving), bounded by the check's timeout."""
        from arbframe.builtins.memory_cache import MemoryCache
        from arbframe.service.health import fx_check

        check = fx_check(MemoryCache() if cache is None else cache, self._fx_source(source),
                         max_age_seconds=self._fx_max_age(max_age_seconds))
        try:
            result = check.probe()
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(result, check.timeout_seconds)
        except asyncio.TimeoutError:
            return HealthResult(check.component, HealthStatus.ERROR, f"no answer within {check.timeout_seconds:.1f}s")
        return result

    # --------------------------------------------------------------------------------------- service loop
    def run(self, ticks: int, *, interval: float = 0.01) -> int:
        """``arbframe run`` for ``ticks`` iterations of the service loop with this kernel (its mode and mock
        flag, every plugin it registered), on a new event loop in the calling thread; the exit code (0: clean
        stop). The run closes the drivers it built. Use it on a :meth:`from_config` harness; from an
        ``async def`` test use :meth:`run_in_thread`."""
        from arbframe.service.runner import RunOptions, run_loop

        if ticks < 1:
            raise ValueError("ticks must be at least 1")
        return asyncio.run(run_loop(self.kernel, RunOptions(max_iterations=int(ticks), interval=interval)))

    async def run_in_thread(self, ticks: int, *, interval: float = 0.01) -> int:
        """:meth:`run` on its own event loop in a worker thread, as in production, while the caller's loop keeps
        serving (a fake endpoint or venue started in the test)."""
        return await asyncio.to_thread(self.run, ticks, interval=interval)

    def close(self) -> None:
        self.kernel.close()


def _kind_of(driver_class: type) -> str:
    from arbframe.kernel.interfaces import Cache, Exchange, FxSource, Storage

    for kind, base in (("storage", Storage), ("cache", Cache), ("exchange", Exchange), ("fx", FxSource)):
        if issubclass(driver_class, base):
            return kind
    return "driver"
