"""Test helpers for arbframe and its plugins (public API, like ``arbframe`` itself).

- :mod:`arbframe.testing.storage_kit` — ``StorageContract``: contract tests for storage drivers.
- :mod:`arbframe.testing.cache_kit` — ``CacheContract``: contract tests for cache drivers.
- :mod:`arbframe.testing.exchange_kit` — ``ExchangeContract``: contract tests for exchange drivers.
- :mod:`arbframe.testing.fx_kit` — ``FxSourceContract``: contract tests for FX sources.
- :mod:`arbframe.testing.plugin_harness` — ``PluginHarness``: build a driver the way the kernel does (schema check,
  registration) and exercise its health check, metrics and event hooks; ``PluginHarness.from_config`` builds the
  kernel ``arbframe run`` builds, to tick the service loop with a plugin loaded, load the storage writer, or ask
  the kernel's FX service and FX health check about a source.
- :mod:`arbframe.testing.pytest_plugin` — the ``pytest11`` plugin: fixtures (``plugin_harness``,
  ``service_harness``, ``plugin_context``, ``fake_venue_loop``) and pytest-asyncio's mode.
- :mod:`arbframe.testing.postgres_server` / :mod:`arbframe.testing.redis_server` — throwaway servers on free
  ports in temp dirs, with ``stop()``/``start()`` for failure tests. They skip when the binaries are missing and
  fail under ``CI=true``.

Import the kit you need from its module; this package imports nothing heavy.
"""

from __future__ import annotations

import os


def require_binary(found: bool, reason: str) -> None:
    """Skip a test whose server binary is missing — or fail it under ``CI=true``, where it must exist."""
    import pytest

    if found:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: required)")
    pytest.skip(reason)
