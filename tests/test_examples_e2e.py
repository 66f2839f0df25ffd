"""End to end: the example plugin installed beside the kernel in a FRESH virtual environment, offline.

The kernel, the CSV storage plugin and ``examples/arbframe_exchange_bithumb`` are built from copies of their
source directories and installed (not editable) from the wheelhouse ``make install`` keeps in
``.venv/wheelhouse``; the Binance plugin too, for the other venue (in mock mode it needs nothing beyond the
kernel, so without aiohttp wheels in the wheelhouse it is installed ``--no-deps``). Then the fresh
environment's own ``arbframe`` lists the example as ``ok``, reports its health check, and ``arbframe run --once``
records spreads with Bithumb in place of Upbit — from a local fake of Bithumb's REST API, and from the simulated
market in mock mode.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from arbframe.testing import require_binary

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
WHEELHOUSE = ROOT / ".venv" / "wheelhouse"
EXAMPLE = ROOT / "examples" / "arbframe_exchange_bithumb"
IGNORE = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist", ".pytest_cache", "tests")


@dataclass
class FreshVenv:
    root: Path
    bin: Path
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin / "arbframe"), *args], capture_output=True, text=True, env=self.env,
                              cwd=self.root, timeout=timeout)


def _pip_supports_python_option() -> bool:
    import pip

    major, minor = (int(x) for x in pip.__version__.split(".")[:2])
    return (major, minor) >= (22, 3)


def _check(cmd: list[str], **kwargs) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{result.stdout}\n{result.stderr}"


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> FreshVenv:
    require_binary(WHEELHOUSE.is_dir() and any(WHEELHOUSE.glob("pluggy-*.whl")),
                   f"no offline wheelhouse at {WHEELHOUSE} (run `make install`)")
    base = tmp_path_factory.mktemp("fresh-venv")
    # build from copies: pip builds in the source tree, and other test runs share the repository
    src = base / "src"
    kernel = src / "arbframe"
    kernel.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, kernel / name)
    shutil.copytree(ROOT / "arbframe", kernel / "arbframe", ignore=IGNORE)
    dists = {}
    for path in (ROOT / "plugins" / "arbframe_storage_csv", ROOT / "plugins" / "arbframe_exchange_binance", EXAMPLE):
        dists[path.name] = shutil.copytree(path, src / path.name, ignore=IGNORE)

    venv_dir = base / "venv"
    python = venv_dir / "bin" / "python"
    quiet = ["--quiet", "--disable-pip-version-check", "--no-index", "--find-links", str(WHEELHOUSE)]
    if _pip_supports_python_option():
        _check([sys.executable, "-m", "venv", "--without-pip", str(venv_dir)])
        pip = [sys.executable, "-m", "pip", "--python", str(python), "install", *quiet]
    else:  # pragma: no cover - old pip: the fresh venv brings its own
        _check([sys.executable, "-m", "venv", str(venv_dir)])
        pip = [str(python), "-m", "pip", "install", *quiet]
    _check([*pip, "setuptools", "wheel"])
    targets = [str(kernel), str(dists["arbframe_storage_csv"]), str(dists["arbframe_exchange_bithumb"])]
    has_aiohttp = any(WHEELHOUSE.glob("aiohttp-*.whl"))
    if has_aiohttp:
        targets.append(str(dists["arbframe_exchange_binance"]))
    _check([*pip, "--no-build-isolation", *targets])
    if not has_aiohttp:
        # the other venue runs in mock mode, which never imports aiohttp
        _check([*pip, "--no-build-isolation", "--no-deps", str(dists["arbframe_exchange_binance"])])

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["XDG_CACHE_HOME"] = str(base / "xdg-cache")  # stevedore's entry-point cache: private and fresh
    env["PATH"] = f"{venv_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return FreshVenv(base, venv_dir / "bin", env)


@pytest.fixture
def fake_bithumb(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    from arbframe_exchange_bithumb.fake_server import FakeBithumb

    with FakeBithumb().in_thread() as fake:
        yield fake


def _overlay(venv: FreshVenv, name: str, bithumb: dict[str, object]) -> tuple[Path, Path]:
    data = venv.root / f"data-{name}"
    cfg = venv.root / f"{name}.yml"
    cfg.write_text(json.dumps({  # JSON is YAML
        "mock_mode": True,
        "arbitrage": {"domestic": "bithumb", "foreign": "binance", "symbols": ["BTC", "ETH"]},
        "bithumb": bithumb,
        "storage": {"backend": "csv", "csv": {"data_dir": str(data)}},
    }))
    return cfg, data


def _spreads(data: Path) -> list[dict[str, str]]:
    with open(data / "spreads.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_the_fresh_environment_lists_the_example_plugin(venv: FreshVenv) -> None:
    result = venv.run("plugins", "--json")
    assert result.returncode == 0, result.stderr
    rows = {(r["group"], r["name"]): r for r in json.loads(result.stdout)}
    row = rows[("arbframe.exchange", "bithumb")]
    assert (row["distribution"], row["version"], row["status"]) == ("arbframe-exchange-bithumb", "0.1.0", "ok")
    assert rows[("arbframe.storage", "csv")]["status"] == "ok"
    assert ("arbframe.exchange", "upbit") not in rows  # really a fresh environment
    where = subprocess.run([str(venv.bin / "python"), "-c", "import arbframe_exchange_bithumb as m; print(m.__file__)"],
                           capture_output=True, text=True, env=venv.env, cwd=venv.root, check=True).stdout
    assert str(venv.root / "venv") in where and str(ROOT) not in where  # installed, not the checkout
    table = venv.run("plugins")
    assert "bithumb" in table.stdout and "arbframe-exchange-bithumb" in table.stdout


def test_run_once_records_spreads_from_the_example_venue(venv: FreshVenv, fake_bithumb) -> None:
    cfg, data = _overlay(venv, "rest", {"market_data": "rest", "base_url": fake_bithumb.url, "timeout_seconds": 2})
    health = venv.run("health", "--json", "--config", str(cfg))
    checks = {c["component"]: c for c in json.loads(health.stdout)["checks"]}
    assert checks["bithumb"]["status"] == "OK", health.stdout
    assert fake_bithumb.url in checks["bithumb"]["message"]

    result = venv.run("run", "--once", "--config", str(cfg))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    rows = _spreads(data)
    assert rows, result.stderr
    assert {(r["domestic_exchange"], r["foreign_exchange"]) for r in rows} == {("bithumb", "binance")}
    assert {r["symbol"] for r in rows} == {"BTC", "ETH"}
    btc = [Decimal(r["domestic_price"]) for r in rows if r["symbol"] == "BTC"]
    # executable prices walked from the fake venue's BTC book (mid 135,000,000 KRW, 1,000 KRW apart)
    assert all(Decimal("134900000") < p < Decimal("135100000") for p in btc), btc
    assert ("GET", "/public/orderbook/BTC_KRW") in fake_bithumb.requests
    assert ("GET", "/public/orderbook/USDT_KRW") in fake_bithumb.requests  # the tether premium's KRW-USDT book


def test_run_once_in_mock_mode_quotes_the_example_from_the_simulated_market(venv: FreshVenv) -> None:
    cfg, data = _overlay(venv, "mock", {"market_data": "auto"})
    result = venv.run("run", "--once", "--config", str(cfg))
    assert result.returncode == 0, result.stderr
    rows = _spreads(data)
    assert rows and all(r["domestic_exchange"] == "bithumb" and r["simulated"] == "true" for r in rows)
