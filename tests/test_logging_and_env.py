"""Logging obeys the config and the command line (level, --quiet/--verbose, JSON lines with secrets masked);
``ARBFRAME_<SECTION>__<KEY>`` environment overrides are applied before validation and shown by ``config show``."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from arbframe.commands.options import setup_logging
from arbframe.core.errors import ConfigError
from arbframe.kernel.config import load_config


def _arbframe(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg"), **env}
    return subprocess.run([sys.executable, "-m", "arbframe", *args], cwd=tmp_path, env=full_env,
                          capture_output=True, text=True, timeout=120)


def _config(tmp_path: Path, level: str) -> str:
    path = tmp_path / f"{level}.yml"
    path.write_text(f"logging: {{level: {level}}}\nstorage: {{csv: {{data_dir: {tmp_path / 'data'}}}}}\n")
    return str(path)


@pytest.mark.slow
def test_run_once_obeys_logging_level_quiet_and_verbose(tmp_path: Path) -> None:
    error_only = _arbframe(tmp_path, "run", "--once", "--config", _config(tmp_path, "ERROR"))
    assert error_only.returncode == 0 and error_only.stderr == "", error_only.stderr
    info = _config(tmp_path, "INFO")
    normal = _arbframe(tmp_path, "run", "--once", "--config", info)
    assert " INFO " in normal.stderr and " DEBUG " not in normal.stderr
    quiet = _arbframe(tmp_path, "run", "--once", "--quiet", "--config", info)
    assert quiet.returncode == 0 and " INFO " not in quiet.stderr
    verbose = _arbframe(tmp_path, "run", "--once", "-v", "--config", _config(tmp_path, "ERROR"))
    assert " DEBUG " in verbose.stderr and " INFO " in verbose.stderr
    as_json = _arbframe(tmp_path, "run", "--once", "--config", info, ARBFRAME_LOGGING__FORMAT="json")
    lines = as_json.stderr.splitlines()
    assert lines and all(json.loads(line)["level"] in ("INFO", "WARNING") for line in lines)
    assert any("[BOT] Initializing bot service" in json.loads(line)["message"] for line in lines)


def test_json_format_masks_secrets_like_the_text_format(capsys) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        for fmt in ("json", "text"):
            setup_logging(level="INFO", fmt=fmt)
            log = logging.getLogger("arbframe.test")
            log.info("connecting to %s", "postgresql://bot:hunter2@db:5432/arb")
            try:
                raise RuntimeError("redis://:s3cret@cache:6379/0 refused")
            except RuntimeError:
                log.exception("cache down")
            log.debug("not shown at INFO")
            err = capsys.readouterr().err
            assert "hunter2" not in err and "s3cret" not in err and "not shown" not in err
            if fmt == "json":
                first, second = (json.loads(line) for line in err.splitlines() if line.startswith("{"))
                assert first["message"] == "connecting to postgresql://bot:***@db:5432/arb"
                assert (first["level"], first["logger"]) == ("INFO", "arbframe.test") and first["ts"].endswith("+00:00")
                assert second["message"] == "cache down" and "redis://:***@cache" in second["exc"]
            else:
                assert "postgresql://bot:***@db:5432/arb" in err and "redis://:***@cache" in err
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_env_overrides_nested_keys_as_yaml_scalars() -> None:
    env = {
        "ARBFRAME_STORAGE__BACKEND": "postgres",
        "ARBFRAME_STORAGE__POSTGRES__ENABLE_TIMESCALE": "true",
        "ARBFRAME_METRICS_SERVER__PORT": "9100",
        "ARBFRAME_ARBITRAGE__SYMBOLS": "[BTC, XRP]",
        "ARBFRAME_PAPER__BALANCES__UPBIT__KRW": "123.5",   # matches the existing upper-case key
        "ARBFRAME__MODE": "live",                          # top level
        "ARBFRAME_LIVE_CONFIRM": "true",                   # single underscore: interpolation only, not an override
        "ARBFRAME_FX__STATIC_RATE": "1400.25",
    }
    config = load_config([], env=env, fragments={})
    assert config["storage"]["backend"] == "postgres" and config["storage"]["postgres"]["enable_timescale"] is True
    assert config["metrics_server"]["port"] == 9100 and config["arbitrage"]["symbols"] == ["BTC", "XRP"]
    assert config["paper"]["balances"]["upbit"]["KRW"] == 123.5 and "krw" not in config["paper"]["balances"]["upbit"]
    assert config["mode"] == "live" and "live_confirm" not in config and config["fx"]["static_rate"] == 1400.25
    assert load_config([], env=env, overrides={"mode": "paper"}, fragments={})["mode"] == "paper"  # CLI wins


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("ARBFRAME_METRICS_SERVER__PORT", "abc", "metrics_server.port: expected an integer, got 'abc'"),
    ("ARBFRAME_MODE__X", "1", "mode is str, not a section"),
    ("ARBFRAME_LOGGING__LEVEL", "LOUD", "logging.level: 'LOUD' is not allowed"),
    ("ARBFRAME_FX__SOURCE", "[unclosed", "ARBFRAME_FX__SOURCE (fx.source): not a YAML value"),
])
def test_bad_env_override_names_the_key_path(name: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config([], env={name: value}, fragments={})
    assert expected in str(info.value) and info.value.exit_status == 2


@pytest.mark.slow
def test_config_show_lists_and_masks_env_overrides(tmp_path: Path) -> None:
    shown = _arbframe(tmp_path, "config", "show", ARBFRAME_UPBIT__API_SECRET="topsecret-value",
                      ARBFRAME_FX__STATIC_RATE="1401")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("# environment overrides: ARBFRAME_FX__STATIC_RATE, ARBFRAME_UPBIT__API_SECRET")
    assert "topsecret-value" not in shown.stdout and "static_rate: 1401" in shown.stdout
    bad = _arbframe(tmp_path, "config", "show", ARBFRAME_METRICS_SERVER__PORT="abc")
    assert bad.returncode == 2 and "metrics_server.port" in bad.stderr and "ARBFRAME_METRICS_SERVER__PORT" in bad.stderr
