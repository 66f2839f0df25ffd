"""Importing plugin code: stevedore loads an entry point, the API version is checked, plugin modules are registered.

Listing what is installed reads metadata only (:mod:`arbframe.kernel.entrypoints`); this module is the step after,
shared by config validation (schema fragments of ``arbframe.plugins`` modules) and the :class:`Kernel`.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pluggy

from arbframe.core.errors import DriverLoadError, DriverNotInstalled
from arbframe.kernel import hookspecs
from arbframe.kernel.entrypoints import (
    ALL_GROUPS,
    PLUGIN_GROUP,
    EntryPointInfo,
    duplicate_names,
    installed,
    installed_names,
)
from arbframe.kernel.interfaces import API_VERSION

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

    dists = duplicate_names(group).get(name)
    if dists:
        where = f"{key_path}: " if key_path else ""
        raise DriverLoadError(f"{where}plugin name {name!r} ({group}) is declared by several distributions "
                              f"({', '.join(dists)}); uninstall all but one")
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
                status = "incompatible" if "plugin API" in str(exc) else (
                    "duplicate" if "several distributions" in str(exc) else "failed")
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
        try:
            check_hooks(pm, f"plugin:{info.name}")
        except DriverLoadError as exc:
            pm.unregister(name=f"plugin:{info.name}")
            log.warning("%s", exc)
            failures.append(PluginStatus(info, "failed", str(exc)))
    return failures


def check_hooks(pm: pluggy.PluginManager, name: str | None = None) -> None:
    """Refuse a registered plugin whose hook implementation matches no hook spec (a misspelled hook would never
    be called): one line naming the plugin and the hook. ``name`` limits the check to one plugin."""
    for hook_name in sorted(dir(pm.hook)):
        caller = getattr(pm.hook, hook_name, None)
        if hook_name.startswith("_") or caller is None or not hasattr(caller, "get_hookimpls"):
            continue
        if caller.spec is not None:
            continue
        for impl in caller.get_hookimpls():
            if getattr(impl, "optionalhook", False):
                continue
            if name is None or impl.plugin_name == name:
                close = [h for h in dir(hookspecs) if h.startswith("arbframe_")]
                import difflib

                hint = difflib.get_close_matches(hook_name, close, 1)
                raise DriverLoadError(
                    f"plugin {impl.plugin_name!r} implements unknown hook {hook_name!r}"
                    + (f" (did you mean {hint[0]!r}?)" if hint else "")
                )


def collect_schema_fragments(pm: pluggy.PluginManager) -> dict[str, Mapping[str, Any]]:
    """Dotted section path -> schema fragment, from every registered plugin's ``arbframe_config_schema``."""
    fragments: dict[str, Mapping[str, Any]] = {}
    for result in pm.hook.arbframe_config_schema():
        for path, schema in (result or {}).items():
            fragments[path] = schema
    return fragments

