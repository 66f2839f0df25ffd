"""Every driver shipped in this repository runs the contract kit of its kind (static check over the sources)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, from the test extra
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
KITS = {
    "arbframe.storage": ("storage_kit", "StorageContract"),
    "arbframe.cache": ("cache_kit", "CacheContract"),
    "arbframe.exchange": ("exchange_kit", "ExchangeContract"),
    "arbframe.fx": ("fx_kit", "FxSourceContract"),
}


def _distributions() -> list[tuple[Path, dict]]:
    found = [(ROOT, tomllib.loads((ROOT / "pyproject.toml").read_text()))]
    for pyproject in sorted([*ROOT.glob("plugins/*/pyproject.toml"), *ROOT.glob("examples/*/pyproject.toml")]):
        found.append((pyproject.parent, tomllib.loads(pyproject.read_text())))
    return found


def _drivers() -> list[tuple[str, str, str, Path]]:
    """(distribution, group, "module:Class", test directory) of every driver entry point."""
    rows = []
    for root, project in _distributions():
        groups = project.get("project", {}).get("entry-points", {})
        tests = ROOT / "tests" if root == ROOT else root / "tests"
        for group in KITS:
            for target in groups.get(group, {}).values():
                rows.append((project["project"]["name"], group, target, tests))
    return rows


DRIVERS = _drivers()


def test_the_repository_has_drivers_of_every_kind() -> None:
    assert {group for _, group, _, _ in DRIVERS} == set(KITS)


@pytest.mark.parametrize(("dist", "group", "target", "tests"), DRIVERS, ids=[f"{d[0]}:{d[2]}" for d in DRIVERS])
def test_every_driver_runs_its_contract_kit(dist: str, group: str, target: str, tests: Path) -> None:
    _module, class_name = target.split(":")
    kit, contract = KITS[group]
    subclass = re.compile(rf"class \w+\((?:\w+\.)?{contract}\)")
    sources = "\n".join(p.read_text(encoding="utf-8") for p in sorted(tests.glob("*.py")))
    assert class_name in sources, f"{dist}: no test under {tests.relative_to(ROOT)} builds {class_name}"
    for path in sorted(tests.glob("test_*.py")):
        text = path.read_text(encoding="utf-8")
        if f"arbframe.testing.{kit}" in text and subclass.search(text):
            return
    pytest.fail(f"{dist}: {group} driver {target} has no test subclassing arbframe.testing.{kit}.{contract} "
                f"under {tests.relative_to(ROOT)}")
