"""The CLI surface: version, help, config commands, and one clear line (exit 2) for bad input."""

from __future__ import annotations

import yaml

import arbframe


def test_version(run_cli) -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"arbframe {arbframe.__version__}"


def test_help_lists_kernel_and_plugin_commands_without_importing_plugins(run_cli) -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for name in ("plugins", "config"):
        assert name in result.stdout


def test_config_show_masks_secrets(run_cli, tmp_path) -> None:
    cfg = tmp_path / "s.yml"
    cfg.write_text("redis: {url: 'redis://:topsecret@cache:6379/0'}\n")
    result = run_cli("config", "show", "--config", str(cfg),
                     env={"DATABASE_URL": "postgresql://arbitrage:dbpass@db:5432/arbitrage"})
    assert result.returncode == 0, result.stderr
    assert "topsecret" not in result.stdout and "dbpass" not in result.stdout
    shown = yaml.safe_load(result.stdout)
    assert shown["redis"]["url"] == "redis://:***@cache:6379/0"
    assert shown["storage"]["postgres"]["dsn"] == "postgresql://arbitrage:***@db:5432/arbitrage"


def test_config_schema_is_draft_2020_12_json(run_cli) -> None:
    import json

    from jsonschema import Draft202012Validator

    result = run_cli("config", "schema")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    Draft202012Validator.check_schema(schema)
    assert "storage" in schema["properties"]


def test_bad_config_exits_2_with_one_line_and_no_traceback(run_cli, tmp_path) -> None:
    cases = {
        "yaml.yml": ("storage: [\n", "invalid YAML"),
        "unknown.yml": ("mode: paper\nmokc_mode: true\n", "did you mean 'mock_mode'"),
        "type.yml": ("metrics_server: {port: abc}\n", "metrics_server.port: expected an integer"),
        "range.yml": ("redis: {health_ttl_seconds: 0}\n", "redis.health_ttl_seconds: 0 is out of range"),
        "env.yml": ("redis: {url: '${ARBFRAME_TEST_UNSET}'}\n", "${ARBFRAME_TEST_UNSET} is not set"),
        "backend.yml": ("storage: {backend: sqlite}\n", "pip install arbframe-storage-sqlite"),
    }
    for name, (text, expected) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        result = run_cli("config", "validate", "--config", str(path))
        assert result.returncode == 2, (name, result.stderr)
        assert expected in result.stderr, (name, result.stderr)
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    missing = run_cli("config", "validate", "--config", str(tmp_path / "missing.yml"))
    assert missing.returncode == 2 and "config file not found" in missing.stderr
