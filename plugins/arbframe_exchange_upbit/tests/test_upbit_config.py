"""Config: every default declared once (the schema), and the WebSocket keepalive rule checked by ``arbframe config
validate`` as well as at build."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from arbframe_exchange_upbit import UpbitExchange, UpbitFxSource
from arbframe_exchange_upbit import exchange as upbit_module
from arbframe_exchange_upbit.exchange import SCHEMA

from arbframe import ConfigError, schema_defaults
from arbframe.testing.plugin_harness import PluginHarness


def test_every_default_comes_from_the_schema() -> None:
    ex = UpbitExchange({}, None)
    assert ex.config == schema_defaults(SCHEMA, {})
    assert ex.config["timeout_seconds"] == 5.0 and ex.config["simulated_balances"] == {"KRW": 10000000}
    assert not hasattr(upbit_module, "DEFAULTS")  # no second table of defaults
    assert all("default" in prop for key, prop in SCHEMA["properties"].items() if key != "symbols")
    assert UpbitExchange({"timeout_seconds": None}, None).config["timeout_seconds"] == 5.0  # null: the default


def test_the_fx_source_follows_the_connectors_section_and_its_defaults(context_factory) -> None:
    source = UpbitFxSource({}, context_factory("paper", False, {"upbit": {"base_url": "http://127.0.0.1:1",
                                                                         "max_retries": 0}}))
    assert (source.market, source.price, source.base_url) == ("KRW-USDT", "mid", "http://127.0.0.1:1")
    assert source.rest.retry.attempts == 1 and source.rest.http.timeout == 5.0  # upbit's timeout default


@pytest.mark.parametrize(("section", "shown"), [
    ({"ws_ping_interval_seconds": 20}, "15.0"),  # the timeout not set: its default is compared
    ({"ws_ping_interval_seconds": 5, "ws_silence_timeout_seconds": 5}, "5"),
])
def test_the_harness_refuses_a_watchdog_not_longer_than_the_keepalive(section, shown) -> None:
    with pytest.raises(ConfigError, match=rf"ws_silence_timeout_seconds: {shown} must be greater than "
                                          r"ws_ping_interval_seconds"):
        PluginHarness().validate(UpbitExchange, section)
    PluginHarness().validate(UpbitExchange, {"ws_ping_interval_seconds": 5, "ws_silence_timeout_seconds": 6})


def _validate(tmp_path: Path, upbit: dict) -> subprocess.CompletedProcess:
    config = tmp_path / "overlay.yml"
    config.write_text(yaml.safe_dump({"arbitrage": {"domestic": "upbit"}, "upbit": upbit}))
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    return subprocess.run([sys.executable, "-m", "arbframe", "config", "validate", "--config", str(config)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)


def test_config_validate_refuses_it_in_one_line_naming_both_keys(tmp_path: Path) -> None:
    done = _validate(tmp_path, {"ws_ping_interval_seconds": 15, "ws_silence_timeout_seconds": 10})
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "upbit.ws_silence_timeout_seconds: 10 must be greater than " \
                               "upbit.ws_ping_interval_seconds (15)" in lines[0]
    assert _validate(tmp_path, {"ws_ping_interval_seconds": 5}).returncode == 0
