"""The kernel's layout stays true: no import circles, and no package imports one above it (docs/ARCHITECTURE.md).

The imports are read from the source with ``ast`` (nothing is imported), type-only and function-local imports
included: a circle that only exists under ``TYPE_CHECKING`` is still a knot a reader has to untie.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

KERNEL = Path(__file__).resolve().parents[1] / "arbframe"

#: Package -> rank, lowest first (docs/ARCHITECTURE.md "Layers"). A module may import modules of its own package
#: and of packages with a lower rank, never a higher one. "arbframe" is the public facade and the CLI.
LAYERS: dict[str, int] = {
    "core": 0,
    "kernel": 1,
    "venues": 2,
    "builtins": 3,
    "execution": 4,
    "trading": 5,
    "market": 6,
    "replay": 7,
    "service": 8,
    "testing": 9,
    "commands": 10,
    "arbframe": 11,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(KERNEL.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(KERNEL.rglob("*.py"))}


def _resolve(target: str, modules: dict[str, Path]) -> str | None:
    """The kernel module an import names: itself, or its closest enclosing module (``a.b.name`` -> ``a.b``)."""
    while target:
        if target in modules:
            return target
        target = target.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every kernel module ``module`` imports, at any depth of its source."""
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            # ``from arbframe.kernel import hookspecs`` imports the submodule, not the package
            targets = [f"{base}.{alias.name}" for alias in node.names] or [base]
        else:
            continue
        for target in targets:
            if not target.startswith("arbframe"):
                continue
            resolved = _resolve(target, modules)
            if resolved is not None and resolved != module:
                found.add(resolved)
    return found


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "arbframe"


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle (as a path that returns to its start), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep):], dep]
            if dep not in state and (cycle := visit(dep)) is not None:
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def test_every_kernel_package_has_a_layer() -> None:
    packages = {p.name for p in KERNEL.iterdir() if (p / "__init__.py").exists()}
    assert packages - set(LAYERS) == set(), "a new subpackage needs a rank in LAYERS and in docs/ARCHITECTURE.md"
    top_level = sorted(p.name for p in KERNEL.glob("*.py"))
    assert top_level == ["__init__.py", "__main__.py", "cli.py"]


def test_no_import_circles() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_no_upward_imports() -> None:
    upward = [
        f"{module} ({layer_of(module)}) imports {dep} ({layer_of(dep)})"
        for module, deps in import_graph().items()
        for dep in sorted(deps)
        if LAYERS[layer_of(dep)] > LAYERS[layer_of(module)]
    ]
    assert upward == []


def test_the_checker_sees_what_it_must(tmp_path: Path) -> None:
    """The walker itself: relative, type-only, function-local and submodule imports are all edges."""
    src = tmp_path / "arbframe"
    (src / "core").mkdir(parents=True)
    (src / "kernel").mkdir()
    for pkg in (src, src / "core", src / "kernel"):
        (pkg / "__init__.py").write_text("")
    (src / "core" / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from arbframe.kernel import b\n"
    )
    (src / "kernel" / "b.py").write_text("def f():\n    from ..core.a import X\n")
    modules = {_module_name_in(p, src): p for p in src.rglob("*.py")}
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    assert graph["arbframe.core.a"] == {"arbframe.kernel.b"}
    assert graph["arbframe.kernel.b"] == {"arbframe.core.a"}
    assert find_cycle(graph) == ["arbframe.core.a", "arbframe.kernel.b", "arbframe.core.a"]


def _module_name_in(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize("package", sorted(set(LAYERS) - {"arbframe"}))
def test_each_package_says_what_it_serves(package: str) -> None:
    doc = ast.get_docstring(ast.parse((KERNEL / package / "__init__.py").read_text(encoding="utf-8")))
    assert doc and len(doc.split()) >= 5, f"arbframe/{package}/__init__.py needs a docstring saying what it serves"
