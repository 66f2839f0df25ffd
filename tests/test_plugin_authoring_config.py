"""Config rules that matter to third-party plugins: a venue in place of a default one, schema fragments."""

from __future__ import annotations

import pytest

import arbframe.kernel.config
from arbframe.core.errors import ConfigError
from arbframe.kernel.config import load_config


@pytest.fixture
def only_third_party_venue(monkeypatch):
    """Pretend the exchange plugins installed are `thirdparty` and `binance` (no upbit plugin)."""
    real = arbframe.kernel.config.installed_names

    def fake(group: str) -> list[str]:
        return ["binance", "thirdparty"] if group == "arbframe.exchange" else real(group)

    monkeypatch.setattr(arbframe.kernel.config, "installed_names", fake)


def test_default_venue_sections_do_not_need_their_plugin(only_third_party_venue) -> None:
    # the embedded defaults carry an `upbit:` section; without the upbit plugin it must still validate
    config = load_config([], overrides={"arbitrage": {"domestic": "thirdparty"}, "thirdparty": {"x": 1}})
    assert config["arbitrage"]["domestic"] == "thirdparty"
    assert "upbit" in config


def test_unknown_sections_are_still_refused(only_third_party_venue) -> None:
    with pytest.raises(ConfigError, match=r"thirdpraty: unknown key .did you mean 'thirdparty'"):
        load_config([], overrides={"thirdpraty": {}})


def test_selected_venue_must_be_installed(only_third_party_venue) -> None:
    with pytest.raises(ConfigError, match=r"arbitrage\.domestic: no exchange driver named 'upbit' is installed"):
        load_config([], overrides={"mock_mode": False, "arbitrage": {"domestic": "upbit"}})


def test_in_mock_mode_the_simulated_market_serves_a_venue_without_plugin(only_third_party_venue) -> None:
    config = load_config([], overrides={"mock_mode": True, "arbitrage": {"domestic": "upbit"}})
    assert config["arbitrage"]["domestic"] == "upbit"
