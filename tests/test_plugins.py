"""Discovery: only selected drivers are imported; broken and incompatible plugins are reported, not fatal."""

from __future__ import annotations

import json
import sys

import pytest

from arbframe import hookimpl
from arbframe.core.errors import DriverLoadError
from arbframe.kernel.config import load_config, selected_drivers
from arbframe.kernel.entrypoints import installed_names
from arbframe.kernel.loader import load_entry_point
from arbframe.kernel.plugin_host import Kernel

BROKEN = "import no_such_module_anywhere\n"
INCOMPATIBLE = """
from arbframe import Storage
class OldStorage(Storage):
    api_version = 99
"""
NOTIFIER = """
from arbframe import hookimpl
seen = []
@hookimpl
def arbframe_on_error(error):
    raise RuntimeError("notifier is down")
"""


def test_listing_imports_nothing() -> None:
    before = set(sys.modules)
    names = installed_names("arbframe.storage")
    assert "csv" in names
    assert "arbframe_storage_csv.storage" not in set(sys.modules) - before


def test_only_selected_drivers_are_imported(run_cli, tmp_path) -> None:
    code = (
        "import sys, arbframe.kernel.config as c, arbframe.kernel.plugin_host as p\n"
        "k = p.Kernel(c.load_config([])); s = k.load_storage()\n"
        "print(sorted(m for m in sys.modules if m.startswith(('arbframe_', 'psycopg2', 'redis', 'aiohttp'))))\n"
    )
    import os
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "x")}, check=True).stdout
    loaded = eval(out.strip().splitlines()[-1])
    assert "arbframe_storage_csv.storage" in loaded
    # unselected drivers and heavy libraries stay unimported (``arbframe.plugins`` hook modules may load)
    assert not [m for m in loaded if m.split(".")[0] in ("arbframe_storage_pg", "psycopg2", "redis", "aiohttp")]
    assert "arbframe_cache_redis.cache" not in loaded or "redis" not in loaded


def test_broken_plugin_is_reported_and_kernel_survives(run_cli, fake_dist) -> None:
    site = fake_dist("arbframe-notify-broken", {"arbframe.plugins": {"broken": "broken_mod"}}, {"broken_mod": BROKEN})
    listing = run_cli("plugins", "--json", pythonpath=site)
    assert listing.returncode == 0, listing.stderr
    rows = {(r["group"], r["name"]): r for r in json.loads(listing.stdout)}
    broken = rows[("arbframe.plugins", "broken")]
    assert broken["status"] == "failed"
    assert "no_such_module_anywhere" in broken["error"]
    assert broken["distribution"] == "arbframe-notify-broken" and broken["version"] == "0.1"
    assert rows[("arbframe.storage", "csv")]["status"] == "ok"
    validated = run_cli("config", "validate", pythonpath=site)
    assert validated.returncode == 0, validated.stderr


def test_selected_broken_driver_stops_with_a_clear_message(run_cli, fake_dist, tmp_path) -> None:
    site = fake_dist("arbframe-storage-broken", {"arbframe.storage": {"broken": "broken_mod:X"}},
                     {"broken_mod": BROKEN})
    cfg = tmp_path / "c.yml"
    cfg.write_text("storage: {backend: broken}\n")
    result = run_cli("config", "validate", "--config", str(cfg), pythonpath=site)
    assert result.returncode == 2
    assert "storage.backend: plugin 'broken' (arbframe.storage) is installed but failed to load" in result.stderr
    assert "Traceback" not in result.stderr


def test_api_version_mismatch_refuses_and_is_reported(run_cli, fake_dist, tmp_path) -> None:
    site = fake_dist("arbframe-storage-old", {"arbframe.storage": {"old": "old_mod:OldStorage"}},
                     {"old_mod": INCOMPATIBLE})
    listing = run_cli("plugins", pythonpath=site)
    assert listing.returncode == 0
    assert "incompatible" in listing.stdout
    assert "targets arbframe plugin API 99" in listing.stdout
    cfg = tmp_path / "c.yml"
    cfg.write_text("storage: {backend: old}\n")
    result = run_cli("config", "validate", "--config", str(cfg), pythonpath=site)
    assert result.returncode == 2
    assert "targets arbframe plugin API 99, but this kernel provides API 1" in result.stderr


def test_raising_hook_is_isolated_and_counted() -> None:
    kernel = Kernel(load_config([]), register_plugins=False)
    calls = []

    class Bad:
        @hookimpl
        def arbframe_on_error(self, error):
            raise RuntimeError("boom")

    class Good:
        @hookimpl
        def arbframe_on_error(self, error):
            calls.append(error)

    kernel.register(Bad(), "bad-notifier")
    kernel.register(Good(), "good-notifier")
    kernel.notify("arbframe_on_error", error="e1")
    assert calls == ["e1"]
    value = kernel.registry.get_sample_value(
        "arbframe_plugin_errors_total", {"plugin": "bad-notifier", "hook": "arbframe_on_error"}
    )
    assert value == 1.0


def test_driver_instances_are_registered_and_contribute_health() -> None:
    kernel = Kernel(load_config([]), register_plugins=False)
    storage = kernel.load_storage()
    assert kernel.pm.get_plugin("storage:csv") is storage
    assert [c.component for c in kernel.health_checks()] == ["csv"]
    storage.close()


def test_unknown_entry_point_raises_not_installed() -> None:
    with pytest.raises(Exception, match="no storage driver named 'nope'"):
        load_entry_point("arbframe.storage", "nope")


def test_load_error_type() -> None:
    assert issubclass(DriverLoadError, Exception)


def test_selected_drivers_from_config() -> None:
    config = {"storage": {"backend": "hybrid"}, "redis": {"enabled": False},
              "arbitrage": {"domestic": "upbit", "foreign": "binance"}, "fx": {"source": "static"}}
    picks = selected_drivers(config)
    assert picks["storage"] == [("csv", "storage.backend")]
    assert picks["cache"] == [("redis", "redis.enabled")]
    assert [n for n, _ in picks["exchange"]] == ["upbit", "binance"]
