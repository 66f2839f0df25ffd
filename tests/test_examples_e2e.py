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
import subprocess
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import FreshVenv

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "arbframe_exchange_bithumb"


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, fresh_venv_builder: Callable[..., FreshVenv]) -> FreshVenv:
    base = tmp_path_factory.mktemp("fresh-venv")
    binance = ROOT / "plugins" / "arbframe_exchange_binance"
    sources = [ROOT / "plugins" / "arbframe_storage_csv", EXAMPLE]
    if any((ROOT / ".venv" / "wheelhouse").glob("aiohttp-*.whl")):
        return fresh_venv_builder(base, [*sources, binance])
    # the other venue runs in mock mode, which never imports aiohttp
    return fresh_venv_builder(base, sources, no_deps=[binance])


@pytest.fixture
def fake_bithumb(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    from arbframe_exchange_bithumb.testing.fake_server import FakeBithumb

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
