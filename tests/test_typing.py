"""The kernel ships ``py.typed``: mypy must accept it, so a plugin author's type checker can trust its hints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_kernel_is_mypy_clean() -> None:
    pytest.importorskip("mypy", reason="mypy is in the kernel's test extra (make install)")
    result = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary", "--cache-dir",
                             str(Path(sys.prefix) / ".mypy_cache")], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, f"mypy found errors in the kernel:\n{result.stdout}{result.stderr}"
