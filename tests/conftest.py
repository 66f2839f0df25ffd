"""Shared fixtures for the kernel and end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest


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
