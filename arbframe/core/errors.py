"""Kernel exceptions. Each carries a message meant for the person running the command."""

from __future__ import annotations

from pathlib import Path


class ArbframeError(Exception):
    """Base of every error the CLI turns into a one-line message and an exit status."""

    exit_status = 1


class ConfigError(ArbframeError):
    """Bad configuration: the message names the key path, the value (secrets masked) and what was expected."""

    exit_status = 2


#: drivers whose distribution is not named ``arbframe-<kind>-<name>``
KNOWN_DISTRIBUTIONS: dict[tuple[str, str], str] = {
    ("storage", "postgres"): "arbframe-storage-pg",
    ("fx", "exchange"): "arbframe-exchange-upbit",
}


def checkout_plugin_folder(distribution: str) -> str | None:
    """``plugins/<folder>`` holding ``distribution`` when arbframe runs from a source checkout (relative to the
    working directory when it is below it), else None: the plugins of a checkout are not on any package index."""
    root = Path(__file__).resolve().parents[2]
    folder = root / "plugins" / distribution.replace("-", "_")
    if not (folder / "pyproject.toml").is_file():
        return None
    try:
        return str(folder.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(folder)


class DriverNotInstalled(ConfigError):
    """The config selects a driver no installed distribution provides."""

    def __init__(self, group: str, name: str, installed: list[str], key_path: str = "") -> None:
        kind = group.split(".", 1)[-1]
        where = f"{key_path}: " if key_path else ""
        names = ", ".join(sorted(installed)) or "none"
        dist = KNOWN_DISTRIBUTIONS.get((kind, name), f"arbframe-{kind}-{name}")
        folder = checkout_plugin_folder(dist)
        if folder is not None:
            hint = f"install the plugin from this source checkout (pip install {folder})"
        else:
            hint = f"install the distribution {dist} (pip install {dist})"
        super().__init__(f"{where}no {kind} driver named {name!r} is installed (installed: {names}); {hint}")
        self.group, self.name, self.installed = group, name, installed


class DriverLoadError(ArbframeError):
    """A selected driver is installed but cannot be imported or built."""

    exit_status = 2
