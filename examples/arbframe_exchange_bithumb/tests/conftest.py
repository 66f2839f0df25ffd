"""Fixtures for the Bithumb example's tests (arbframe's pytest plugin brings the kit fixtures and asyncio mode).

The tests run against the installed distribution; in a checkout where it is not installed, ``src/`` is put on
``sys.path`` instead.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

if importlib.util.find_spec("arbframe_exchange_bithumb") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from arbframe_exchange_bithumb.testing.fake_server import FakeBithumb


@pytest.fixture
def fake_bithumb() -> Iterator[FakeBithumb]:
    """A fake Bithumb public API on a free local port (served from a thread: sync and async tests alike)."""
    with FakeBithumb().in_thread() as fake:
        yield fake
