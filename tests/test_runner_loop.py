"""The service loop in-process: pacing (--max-iterations, --duration), stop signal, live gate messages."""

from __future__ import annotations

import asyncio
import os
import time
from importlib import metadata

import pytest

from arbframe.kernel.config import load_config
from arbframe.kernel.plugin_host import Kernel
from arbframe.service.runner import RunOptions, StopSignal, live_refusal, paced, run_loop


def _kernel(tmp_path, **extra):
    names = {ep.name for ep in metadata.entry_points(group="arbframe.exchange")}
    if not {"upbit", "binance"} <= names:
        if os.environ.get("CI") == "true":
            pytest.fail("exchange plugins not installed (run `make install`)")
        pytest.skip("exchange plugins not installed (run `make install`)")
    overrides = {"storage": {"csv": {"data_dir": str(tmp_path / "data")}}, "mock_mode": True}
    overrides.update(extra)
    return Kernel(load_config([], overrides=overrides), mode="paper", mock=True)


async def _collect(opts: RunOptions, interval: float, stop: StopSignal) -> list[int]:
    return [i async for i in paced(opts, interval, stop)]


def test_paced_stops_on_limits_and_signal():
    stop = StopSignal()
    assert asyncio.run(_collect(RunOptions(once=True), 10, stop)) == [1]
    assert asyncio.run(_collect(RunOptions(max_iterations=3), 0, stop)) == [1, 2, 3]
    t0 = time.monotonic()
    got = asyncio.run(_collect(RunOptions(duration=0.3), 0.05, stop))
    elapsed = time.monotonic() - t0
    assert 3 <= len(got) <= 8 and elapsed < 2

    async def signalled() -> list[int]:
        s = StopSignal()
        out = []
        async for i in paced(RunOptions(), 0.01, s):
            out.append(i)
            if i == 2:
                s.event.set()  # as the SIGTERM handler does: this tick finishes, no further one starts
        return out

    assert asyncio.run(signalled()) == [1, 2]


def test_run_loop_ticks_records_and_publishes(tmp_path):
    kernel = _kernel(tmp_path)
    assert asyncio.run(run_loop(kernel, RunOptions(max_iterations=3, interval=0.01))) == 0
    assert kernel.registry.get_sample_value("arbitrage_ticks_total") == 3
    assert kernel.registry.get_sample_value("arbitrage_simulated_data") == 1
    lines = (tmp_path / "data" / "spreads.csv").read_text().splitlines()
    assert len(lines) == 1 + 3 * 4


def test_live_refusal_reasons():
    cfg = {"arbitrage": {"domestic": "upbit", "foreign": "binance"}}
    assert "credentials for upbit, binance" in live_refusal(cfg)
    cfg["upbit"] = {"api_key": "k", "api_secret": "s"}
    cfg["binance"] = {"api_key": "k", "api_secret": ""}
    assert "credentials for binance" in live_refusal(cfg)
    cfg["binance"]["api_secret"] = "s"
    assert "live.confirm: true" in live_refusal(cfg)
    cfg["live"] = {"confirm": True}
    assert live_refusal(cfg) is None  # keys and confirmation: live mode starts (docs/LIVE.md)


def _spreads(tmp_path) -> list[dict[str, str]]:
    import csv

    with open(tmp_path / "data" / "spreads.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_mock_mode_prices_with_the_configured_static_rate(tmp_path):
    """Mock mode honours fx.source: static -> exactly fx.static_rate, read back through the cache; the simulated
    market keeps its own USD/KRW for its books (a realistic FX error), and the records still say simulated."""
    from decimal import Decimal

    kernel = _kernel(tmp_path, fx={"source": "static", "static_rate": 1333.25})
    cache_box = {}
    original = kernel.load_cache

    def load_cache():
        cache_box["cache"] = original()
        return cache_box["cache"]

    kernel.load_cache = load_cache
    assert asyncio.run(run_loop(kernel, RunOptions(max_iterations=2, interval=0.01))) == 0
    rows = _spreads(tmp_path)
    assert len(rows) == 2 * 4
    assert {(r["fx_rate"], r["fx_source"], r["simulated"]) for r in rows} == {("1333.25", "static", "true")}
    fx = cache_box["cache"].get_fx_rate()  # published to the cache, read back from it
    assert fx is not None and fx.rate == Decimal("1333.25") and fx.source == "static"
    assert kernel.registry.get_sample_value("arbitrage_fx_rate_krw") == 1333.25
    assert kernel.registry.get_sample_value("arbitrage_simulated_data") == 1


def test_mock_mode_exchange_source_reads_the_simulated_krw_usdt_book(tmp_path):
    """fx.source: exchange in mock mode: the Upbit plugin's source, reading the simulated KRW-USDT mid."""
    from decimal import Decimal

    if "exchange" not in {ep.name for ep in metadata.entry_points(group="arbframe.fx")}:
        if os.environ.get("CI") == "true":
            pytest.fail("the Upbit plugin's `exchange` FX source is not installed (run `make install`)")
        pytest.skip("the Upbit plugin's `exchange` FX source is not installed (run `make install`)")
    kernel = _kernel(tmp_path, fx={"source": "exchange", "static_rate": 1350.0})
    assert asyncio.run(run_loop(kernel, RunOptions(max_iterations=1, interval=0.01))) == 0
    rows = _spreads(tmp_path)
    assert rows and {(r["fx_source"], r["simulated"]) for r in rows} == {("upbit:KRW-USDT", "true")}
    market = kernel.context.market
    book = market.order_book("upbit", "USDT", 1)
    assert Decimal(rows[0]["fx_rate"]) == (book.best_bid + book.best_ask) / 2
    # the tether premium against this rate is the KRW-USDT book against its own mid: close to zero
    assert all(abs(Decimal(r["tether_premium"])) < Decimal("0.01") for r in rows)
