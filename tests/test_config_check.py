"""config_schema() and check_config(): the public way for a tool to check key paths, ranges and a config it
changed in code (arbframe-optimize checks its search space and every trial's config with them)."""

from __future__ import annotations

import copy

import pytest

from arbframe import ConfigError, check_config, config_schema, load_config


def test_the_schema_holds_the_sections_modules_contribute() -> None:
    schema = config_schema()
    entry = schema["properties"]["arbitrage"]["properties"]["entry_threshold"]
    assert entry["type"] == "number" and entry["minimum"] == 0 and entry["maximum"] == 10
    assert "paper" in schema["properties"] and "storage" in schema["properties"]


def test_check_config_names_the_key_path() -> None:
    schema = config_schema()
    config = load_config([])
    check_config(config, schema)  # the defaults pass
    wrong = copy.deepcopy(config)
    wrong["arbitrage"]["entry_threshold"] = 11
    with pytest.raises(ConfigError, match=r"arbitrage\.entry_threshold: 11 is out of range; expected a number <= 10"):
        check_config(wrong, schema)
    crossed = copy.deepcopy(config)
    crossed["arbitrage"]["exit_threshold"] = 0.5  # above the entry threshold: a rule across two keys
    with pytest.raises(ConfigError, match=r"arbitrage\.exit_threshold 0\.5 is above arbitrage\.entry_threshold"):
        check_config(crossed)
    infinite = copy.deepcopy(config)
    infinite["arbitrage"]["order_notional_krw"] = float("inf")
    with pytest.raises(ConfigError, match=r"arbitrage\.order_notional_krw: inf is not a finite number"):
        check_config(infinite, schema)
