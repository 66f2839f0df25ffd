"""Plugins (the example and every plugin shipped here) import only ``arbframe`` names and ``arbframe.testing``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import arbframe

ROOT = Path(__file__).resolve().parents[1]
#: directories that hold copies, not sources: pip/setuptools build trees, wheels, egg-info, caches, venvs
_NOT_SOURCES = {"build", "dist", "__pycache__", ".venv", "venv", ".tox", ".eggs"}


def plugin_sources(root: Path) -> list[Path]:
    """The examples' and plugins' own modules and every test of theirs (leftover ``build/`` copies left out).

    Plugin tests are held to the rule too: what they need of the kernel (a kernel built from config, the service
    loop, the FX service and health check, the storage writer) comes from ``arbframe.testing.plugin_harness``."""
    found = [
        *(root / "examples").rglob("*.py"),
        *(root / "plugins").glob("*/src/**/*.py"),
        *(root / "plugins").glob("*/tests/**/*.py"),
    ]
    return sorted(p for p in found if not any(part in _NOT_SOURCES or part.endswith(".egg-info")
                                              for part in p.relative_to(root).parts[:-1]))


SOURCES = plugin_sources(ROOT)


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


def test_leftover_build_copies_are_not_collected(tmp_path: Path) -> None:
    for rel in ("examples/demo/src/demo/plugin.py", "examples/demo/build/lib/demo/plugin.py",
                "plugins/p/src/p/mod.py", "plugins/p/src/p.egg-info/x.py", "plugins/p/src/build/lib/p/mod.py",
                "plugins/p/tests/test_p.py", "plugins/p/tests/build/lib/test_p.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("import arbframe\n")
    assert [p.relative_to(tmp_path).as_posix() for p in plugin_sources(tmp_path)] == [
        "examples/demo/src/demo/plugin.py", "plugins/p/src/p/mod.py", "plugins/p/tests/test_p.py"]


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
