"""Stricter loading: a misspelled hook fails with one line; a name two distributions declare is refused."""

from __future__ import annotations

from importlib import metadata

import pytest

from arbframe import DriverLoadError, hookimpl
from arbframe.kernel import entrypoints, loader
from arbframe.testing.plugin_harness import PluginHarness


class Misspelled:
    @hookimpl
    def arbframe_on_spreads(self, spread) -> None:  # the real hook is arbframe_on_spread
        pass


def test_a_misspelled_hook_fails_registration_naming_plugin_and_hook() -> None:
    harness = PluginHarness()
    with pytest.raises(DriverLoadError) as info:
        harness.register(Misspelled(), "plugin:typo")
    message = str(info.value)
    assert "\n" not in message
    assert "'plugin:typo'" in message and "'arbframe_on_spreads'" in message and "arbframe_on_spread'" in message
    assert harness.pm.get_plugin("plugin:typo") is None


class _Dist:
    def __init__(self, name: str) -> None:
        self.metadata = {"Name": name}
        self.version = "1.0"


class _Ep:
    def __init__(self, name: str, dist: str) -> None:
        self.name, self.value, self.dist = name, "x:y", _Dist(dist)


def test_duplicate_entry_point_names_are_reported_and_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    eps = [_Ep("twin", "arbframe-exchange-a"), _Ep("twin", "arbframe-exchange-b"), _Ep("solo", "arbframe-c")]
    monkeypatch.setattr(metadata, "entry_points", lambda group=None: eps if group == "arbframe.exchange" else [])
    assert entrypoints.duplicate_names("arbframe.exchange") == {"twin": ["arbframe-exchange-a", "arbframe-exchange-b"]}
    with pytest.raises(DriverLoadError, match="declared by several distributions"):
        loader.load_entry_point("arbframe.exchange", "twin", key_path="arbitrage -> twin")
    statuses = {s.info.name: s.status for s in loader.probe_all(["arbframe.exchange"])}
    assert statuses["twin"] == "duplicate"
