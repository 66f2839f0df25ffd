"""What is installed, read from distribution metadata alone (no plugin is imported; ``--help`` uses this)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata

DRIVER_GROUPS: dict[str, str] = {
    "storage": "arbframe.storage",
    "cache": "arbframe.cache",
    "exchange": "arbframe.exchange",
    "fx": "arbframe.fx",
}
PLUGIN_GROUP = "arbframe.plugins"
COMMAND_GROUP = "arbframe.commands"
ALL_GROUPS = (*DRIVER_GROUPS.values(), PLUGIN_GROUP, COMMAND_GROUP)


@dataclass(frozen=True)
class EntryPointInfo:
    group: str
    name: str
    value: str
    distribution: str
    version: str


def installed(group: str) -> list[EntryPointInfo]:
    """Entry points of ``group``, sorted by name; the first distribution wins when two declare one name."""
    found: dict[str, EntryPointInfo] = {}
    for ep in metadata.entry_points(group=group):
        dist = getattr(ep, "dist", None)
        found.setdefault(
            ep.name,
            EntryPointInfo(
                group,
                ep.name,
                ep.value,
                dist.metadata["Name"] if dist is not None else "?",
                dist.version if dist is not None else "?",
            ),
        )
    return sorted(found.values(), key=lambda e: e.name)


def installed_names(group: str) -> list[str]:
    return [e.name for e in installed(group)]


def duplicate_names(group: str) -> dict[str, list[str]]:
    """Entry-point names of ``group`` declared by more than one distribution -> those distributions."""
    seen: dict[str, set[str]] = {}
    for ep in metadata.entry_points(group=group):
        dist = getattr(ep, "dist", None)
        seen.setdefault(ep.name, set()).add(dist.metadata["Name"] if dist is not None else "?")
    return {name: sorted(dists) for name, dists in seen.items() if len(dists) > 1}
