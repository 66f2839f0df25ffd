"""Exercise a plugin the way the kernel does: validate its config section, build it, register its hooks.

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
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from arbframe.kernel.interfaces import HealthResult, PluginContext

__all__ = ["PluginHarness", "plugin_context"]


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
    def health(self) -> list[HealthResult]:
        """Every registered health check, run like ``arbframe health`` runs them (bounded, concurrently)."""
        from arbframe.service.health import run_checks

        return [outcome.result for outcome in run_checks(self.kernel.health_checks())]

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

    def fx_service(self, cache: Any, *, ttl_seconds: int = 60, source: Any = "config") -> Any:
        """The kernel's FX service over ``cache`` with the configured FX source (``source=None``: read only)."""
        from arbframe.trading.fx import FxService

        fx_source = self.kernel.load_fx_source() if source == "config" else source
        return FxService(fx_source, cache, ttl_seconds=ttl_seconds)

    def close(self) -> None:
        self.kernel.close()


def _kind_of(driver_class: type) -> str:
    from arbframe.kernel.interfaces import Cache, Exchange, FxSource, Storage

    for kind, base in (("storage", Storage), ("cache", Cache), ("exchange", Exchange), ("fx", FxSource)):
        if issubclass(driver_class, base):
            return kind
    return "driver"
