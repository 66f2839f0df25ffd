"""arbframe's pytest plugin (entry point ``pytest11: arbframe``): kit fixtures come with the installed kernel.

- pytest-asyncio runs in ``auto`` mode unless the project chose a mode itself (``asyncio_mode`` in its ini or
  on the command line), so the kits' ``async def`` tests and fixtures work without configuration.
- Fixtures: ``plugin_harness`` (a factory of :class:`~arbframe.testing.plugin_harness.PluginHarness`, closed after
  the test), ``service_harness`` (the same for :meth:`PluginHarness.from_config
  <arbframe.testing.plugin_harness.PluginHarness.from_config>`: the kernel ``arbframe run`` builds, every installed
  plugin loaded), ``plugin_context`` (a factory of bare :class:`arbframe.PluginContext`), ``fake_venue_loop`` (starts
  and closes :class:`~arbframe.testing.fake_venue.FakeVenue` instances in the test's loop).
- A kit's required fixture (``exchange``, ``fx_source`` ...) that a test class does not provide fails the test
  with a message naming it; optional ones (``venue_faults``, ``failing_fx_source``) skip their checks.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from arbframe.testing.plugin_harness import PluginHarness
from arbframe.testing.plugin_harness import plugin_context as _plugin_context


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    with warnings.catch_warnings():  # inicfg (deprecated for reading values) is how to tell "set" from "default"
        warnings.simplefilter("ignore")
        in_ini = "asyncio_mode" in config.inicfg
    chosen = getattr(config.option, "asyncio_mode", None) or in_ini
    if not chosen and config.pluginmanager.hasplugin("asyncio"):
        config.option.asyncio_mode = "auto"


def _harnesses(tmp_path: Path, build: Callable[..., PluginHarness]) -> Iterator[Callable[..., PluginHarness]]:
    made: list[PluginHarness] = []

    def make(overrides: dict[str, Any] | None = None, **kw: Any) -> PluginHarness:
        kw.setdefault("data_dir", tmp_path / "data")
        harness = build(overrides, **kw)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.close()


@pytest.fixture
def plugin_harness(tmp_path: Path) -> Iterator[Callable[..., PluginHarness]]:
    """``plugin_harness(overrides, mode=..., mock=...)`` -> a harness with its data dir under ``tmp_path``."""
    yield from _harnesses(tmp_path, PluginHarness)


@pytest.fixture
def service_harness(tmp_path: Path) -> Iterator[Callable[..., PluginHarness]]:
    """``service_harness(overrides, mode=..., mock=..., env=...)`` -> :meth:`PluginHarness.from_config` with
    ``storage.csv.data_dir`` under ``tmp_path`` unless ``overrides`` set it; closed after the test."""
    yield from _harnesses(tmp_path, PluginHarness.from_config)


@pytest.fixture
def plugin_context(tmp_path: Path) -> Callable[..., Any]:
    """``plugin_context(config, mode=..., mock=...)`` -> a bare PluginContext with its data dir under tmp_path."""

    def make(config: dict[str, Any] | None = None, **kw: Any) -> Any:
        kw.setdefault("data_dir", tmp_path / "data")
        return _plugin_context(config, **kw)

    return make


@pytest.fixture
async def fake_venue_loop() -> AsyncIterator[Callable[[Any], Any]]:
    """``await start(FakeMyVenue())`` serves a fake in the test's event loop; every one is closed afterwards."""
    started: list[Any] = []

    async def start(fake: Any) -> Any:
        await fake.start()
        started.append(fake)
        return fake

    yield start
    for fake in started:
        await fake.close()
