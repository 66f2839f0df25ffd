"""Shared fixtures for the kernel and end-to-end tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WHEELHOUSE = Path(sys.prefix) / "wheelhouse"  # `make install` keeps the wheels inside the venv running the tests
_IGNORE = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist", ".pytest_cache", "tests")


@pytest.fixture
def fake_dist(tmp_path: Path) -> Callable[..., Path]:
    """Make an importable fake distribution (dist-info + module) in a directory to put on PYTHONPATH."""
    root = tmp_path / "site"
    root.mkdir(exist_ok=True)

    def make(name: str, entry_points: dict[str, dict[str, str]], modules: dict[str, str], version: str = "0.1") -> Path:
        info = root / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        lines = []
        for group, items in entry_points.items():
            lines.append(f"[{group}]")
            lines.extend(f"{k} = {v}" for k, v in items.items())
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        for module, source in modules.items():
            (root / f"{module}.py").write_text(textwrap.dedent(source))
        return root

    return make


@pytest.fixture
def run_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``python -m arbframe`` in a subprocess with a private stevedore cache and working directory."""

    def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60,
            pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg"), **(env or {})}
        if pythonpath is not None:
            full_env["PYTHONPATH"] = str(pythonpath)
        return subprocess.run(
            [sys.executable, "-m", "arbframe", *args], capture_output=True, text=True, env=full_env,
            cwd=cwd or tmp_path, timeout=timeout,
        )

    return run


# ------------------------------------------------------------------------------------------ fresh environments
@dataclass
class FreshVenv:
    """A virtual environment with only what a test installed, offline, from the ``make install`` wheelhouse."""

    root: Path
    bin: Path
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 60, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin / "arbframe"), *args], capture_output=True, text=True, env=self.env,
                              cwd=cwd or self.root, timeout=timeout)


def _check(cmd: Sequence[str]) -> None:
    result = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{result.stdout}\n{result.stderr}"


def build_fresh_venv(base: Path, sources: Sequence[Path], no_deps: Sequence[Path] = ()) -> FreshVenv:
    """Install the kernel and ``sources`` (copied first: pip builds in the source tree, and other test runs share
    the repository) into a new venv under ``base``, with ``--no-index`` from the wheelhouse; ``no_deps`` are
    installed without their dependencies. Skips when there is no wheelhouse."""
    from arbframe.testing import require_binary

    require_binary(WHEELHOUSE.is_dir() and any(WHEELHOUSE.glob("pluggy-*.whl")),
                   f"no offline wheelhouse at {WHEELHOUSE} (run `make install`)")
    src = base / "src"
    kernel = src / "arbframe"
    kernel.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, kernel / name)
    shutil.copytree(ROOT / "arbframe", kernel / "arbframe", ignore=_IGNORE)
    copies = {path: shutil.copytree(path, src / path.name, ignore=_IGNORE) for path in (*sources, *no_deps)}
    venv_dir = base / "venv"
    python = venv_dir / "bin" / "python"
    quiet = ["--quiet", "--disable-pip-version-check", "--no-index", "--find-links", str(WHEELHOUSE)]
    _check([sys.executable, "-m", "venv", "--without-pip", str(venv_dir)])
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", *quiet]
    _check([*pip, "setuptools", "wheel"])
    _check([*pip, "--no-build-isolation", str(kernel), *(str(copies[p]) for p in sources)])
    if no_deps:
        _check([*pip, "--no-build-isolation", "--no-deps", *(str(copies[p]) for p in no_deps)])
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["XDG_CACHE_HOME"] = str(base / "xdg-cache")  # stevedore's entry-point cache: private and fresh
    env["PATH"] = f"{venv_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return FreshVenv(base, venv_dir / "bin", env)


@pytest.fixture(scope="session")
def fresh_venv_builder() -> Callable[..., FreshVenv]:
    """:func:`build_fresh_venv` for tests (a test module cannot import this conftest under importlib mode)."""
    return build_fresh_venv
