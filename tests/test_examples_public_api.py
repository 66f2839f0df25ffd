"""Plugins (the example and every plugin shipped here) import only ``arbframe`` names and ``arbframe.testing``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import arbframe

ROOT = Path(__file__).resolve().parents[1]
#: plugins whose tests still reach into kernel internals; they join when they are ported to the venue SDK
TESTS_LATER = ("arbframe_exchange_upbit", "arbframe_exchange_binance")
SOURCES = sorted([
    *(ROOT / "examples").rglob("*.py"),
    *(ROOT / "plugins").glob("*/src/**/*.py"),
    *(p for p in (ROOT / "plugins").glob("*/tests/**/*.py") if p.relative_to(ROOT).parts[1] not in TESTS_LATER),
])


def _arbframe_imports(path: Path) -> list[tuple[int, str, list[str]]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and \
                node.module.split(".")[0] == "arbframe":
            found.append((node.lineno, node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "arbframe":
                    found.append((node.lineno, alias.name, []))
    return found


def test_there_are_example_sources() -> None:
    assert any(p.name == "exchange.py" for p in SOURCES)


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(ROOT)) for p in SOURCES])
def test_only_public_names_are_imported(path: Path) -> None:
    public = set(arbframe.__all__)
    for line, module, names in _arbframe_imports(path):
        where = f"{path.relative_to(ROOT)}:{line}"
        if module == "arbframe":
            private = [n for n in names if n not in public]
            assert not private, f"{where}: {private} are not public names of arbframe (arbframe.__all__)"
        else:
            assert module == "arbframe.testing" or module.startswith("arbframe.testing."), (
                f"{where}: imports the kernel-internal module {module}; use names from `arbframe` or arbframe.testing"
            )
