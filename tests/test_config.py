"""Config loading: overlays, interpolation, both validation passes, and every kind of bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from arbframe.core.errors import ConfigError, DriverNotInstalled
from arbframe.kernel.config import interpolate, load_config, masked


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_embedded_defaults_follow_the_seed() -> None:
    config = load_config([])
    assert config["storage"]["backend"] == "csv"
    assert config["storage"]["postgres"]["schema"] == "public"
    assert config["redis"] == {
        "enabled": False, "url": "redis://localhost:6379/0", "prefix": "arb", "health_ttl_seconds": 60,
    }
    assert config["mode"] == "paper"
    assert config["mock_mode"] is True


def test_config_base_yml_is_the_embedded_defaults() -> None:
    repo = Path(__file__).resolve().parents[1]
    from arbframe.kernel.config import embedded_defaults_text

    assert (repo / "config" / "base.yml").read_text() == embedded_defaults_text()


def test_overlays_apply_in_order(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yml", "redis: {prefix: one, health_ttl_seconds: 5}\n")
    b = write(tmp_path, "b.yml", "redis: {prefix: two}\n")
    config = load_config([a, b])
    assert config["redis"]["prefix"] == "two"
    assert config["redis"]["health_ttl_seconds"] == 5
    assert config["redis"]["enabled"] is False


def test_env_interpolation_with_defaults_and_types(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yml", "metrics_server: {port: '${PORT:-9100}', host: '${HOST}'}\n")
    config = load_config([path], env={"HOST": "0.0.0.0"})
    assert config["metrics_server"]["port"] == 9100
    assert config["metrics_server"]["host"] == "0.0.0.0"
    config = load_config([path], env={"HOST": "h", "PORT": "8001"})
    assert config["metrics_server"]["port"] == 8001


def test_database_url_env_is_used() -> None:
    config = load_config([], env={"DATABASE_URL": "postgresql://u:pw@db:5432/x"})
    assert config["storage"]["postgres"]["dsn"] == "postgresql://u:pw@db:5432/x"


def test_missing_variable_without_default_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "d.yml", "redis: {url: '${NO_SUCH_VAR_XYZ}'}\n")
    with pytest.raises(ConfigError, match=r"redis\.url: environment variable \$\{NO_SUCH_VAR_XYZ\} is not set"):
        load_config([path], env={})


def test_invalid_yaml_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yml", "storage:\n  backend: csv\n  csv: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_config([path])
    assert f"{path}:" in str(info.value)
    assert "invalid YAML" in str(info.value)
    assert ":4:" in str(info.value) or ":3:" in str(info.value)


def test_unknown_key_suggests_the_close_one(tmp_path: Path) -> None:
    path = write(tmp_path, "e.yml", "metrics_server: {prot: 8000}\n")
    with pytest.raises(ConfigError, match=r"metrics_server\.prot: unknown key \(did you mean 'port'\?\)"):
        load_config([path])
    path = write(tmp_path, "f.yml", "storrage: {backend: csv}\n")
    with pytest.raises(ConfigError, match=r"storrage: unknown key \(did you mean 'storage'\?\)"):
        load_config([path])


def test_wrong_type_names_path_value_and_expectation(tmp_path: Path) -> None:
    path = write(tmp_path, "g.yml", "redis: {enabled: maybe}\n")
    with pytest.raises(ConfigError, match=r"redis\.enabled: expected a boolean \(true/false\), got 'maybe'"):
        load_config([path])


def test_out_of_range(tmp_path: Path) -> None:
    path = write(tmp_path, "h.yml", "metrics_server: {port: 70000}\n")
    with pytest.raises(ConfigError, match=r"metrics_server\.port: 70000 is out of range; expected a number <= 65535"):
        load_config([path])


def test_enum_value(tmp_path: Path) -> None:
    path = write(tmp_path, "i.yml", "mode: papper\n")
    with pytest.raises(ConfigError, match=r"mode: 'papper' is not allowed \(did you mean 'paper'\?\)"):
        load_config([path])


def test_unknown_backend_lists_installed_and_distribution(tmp_path: Path) -> None:
    path = write(tmp_path, "j.yml", "storage: {backend: mongo}\n")
    with pytest.raises(DriverNotInstalled) as info:
        load_config([path])
    message = str(info.value)
    assert "storage.backend" in message and "'mongo'" in message
    assert "csv" in message
    assert "arbframe-storage-mongo" in message


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file not found: .*nope\.yml"):
        load_config([str(tmp_path / "nope.yml")])


def test_secret_values_are_masked_in_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "k.yml", "redis: {url: 12345}\n")
    with pytest.raises(ConfigError) as info:
        load_config([path])
    assert "12345" not in str(info.value)


def test_masking_hides_passwords_and_keys() -> None:
    shown = masked(
        {
            "storage": {"postgres": {"dsn": "postgresql://arbitrage:s3cret@db:5432/arbitrage"}},
            "redis": {"url": "redis://:hunter2@r:6379/0"},
            "upbit": {"api_key": "AKIA", "api_secret": "zzz", "enabled": True},
            "other": {"dsn": "host=db password=pw1 dbname=x"},
        },
        {"properties": {"upbit": {"properties": {"api_key": {"writeOnly": True}}}}},
    )
    text = repr(shown)
    for secret in ("s3cret", "hunter2", "AKIA", "zzz", "pw1"):
        assert secret not in text
    assert shown["storage"]["postgres"]["dsn"] == "postgresql://arbitrage:***@db:5432/arbitrage"
    assert shown["upbit"]["enabled"] is True


def test_interpolate_leaves_plain_strings() -> None:
    assert interpolate({"a": "x", "b": [1, "${A}"]}, {"A": "y"}, source="t") == {"a": "x", "b": [1, "y"]}


def test_live_overlay_validates_and_keeps_keys_in_the_environment() -> None:
    repo = Path(__file__).resolve().parents[1]
    config = load_config([str(repo / "config" / "live.yml")], env={"UPBIT_API_KEY": "k1", "UPBIT_API_SECRET": "s1"})
    assert config["mode"] == "live" and config["mock_mode"] is False
    assert config["live"]["confirm"] is False
    assert config["upbit"]["api_key"] == "k1" and config["binance"]["api_key"] == ""
    assert "k1" not in (repo / "config" / "live.yml").read_text()


def test_not_installed_hint_names_the_real_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    """Installed from an index: the distribution's name (no checkout folder to point at)."""
    from arbframe.core import errors

    monkeypatch.setattr(errors, "checkout_plugin_folder", lambda dist: None)
    missing = errors.DriverNotInstalled
    assert "pip install arbframe-exchange-upbit" in str(missing("arbframe.fx", "exchange", ["static"]))
    assert "pip install arbframe-storage-pg" in str(missing("arbframe.storage", "postgres", ["csv"]))


def test_not_installed_hint_from_a_checkout_names_the_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    """From a source checkout the plugins are folders to install, not names an index knows."""
    from arbframe.core.errors import DriverNotInstalled

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(repo)
    text = str(DriverNotInstalled("arbframe.storage", "postgres", ["csv"], "storage.backend"))
    assert "pip install plugins/arbframe_storage_pg" in text and "source checkout" in text
    monkeypatch.chdir(repo / "docs")
    text = str(DriverNotInstalled("arbframe.exchange", "upbit", []))
    assert f"pip install {repo / 'plugins' / 'arbframe_exchange_upbit'}" in text
    assert "pip install arbframe-storage-sqlite" in str(DriverNotInstalled("arbframe.storage", "sqlite", ["csv"]))
