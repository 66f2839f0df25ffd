"""What the alert rules need from /metrics: counters at 0 before their first event, the configured limits as
gauges, drawdown from peak, process/GC collectors, and a tick duration that includes the storage flush."""

from __future__ import annotations

import asyncio
import math
import os
import time
from decimal import Decimal
from importlib import metadata
from typing import Any

import pytest

from arbframe.config import load_config
from arbframe.metrics import TradingStats
from arbframe.plugins import Kernel
from arbframe.runner import RunOptions, TradingService, run_loop


def _kernel(tmp_path, **extra: Any) -> Kernel:
    names = {ep.name for ep in metadata.entry_points(group="arbframe.exchange")}
    if not {"upbit", "binance"} <= names:
        if os.environ.get("CI") == "true":
            pytest.fail("exchange plugins not installed (run `make install`)")
        pytest.skip("exchange plugins not installed (run `make install`)")
    overrides: dict[str, Any] = {"storage": {"csv": {"data_dir": str(tmp_path / "data")}}, "mock_mode": True}
    overrides.update(extra)
    return Kernel(load_config([], overrides=overrides), mode="paper", mock=True)


def _started(kernel: Kernel) -> TradingService:
    service = TradingService(kernel, mock=True)

    async def go() -> None:
        await service.start()
        await service.close()

    asyncio.run(go())
    return service


def test_counters_exist_at_zero_before_their_first_event(tmp_path) -> None:
    kernel = _kernel(tmp_path)
    _started(kernel)
    value = kernel.registry.get_sample_value
    for exchange in ("upbit", "binance"):
        for kind in ("banned", "http", "timeout", "api", "parse", "rate_limited"):
            assert value("arbframe_exchange_errors_total", {"exchange": exchange, "kind": kind}) == 0, (exchange, kind)
        assert value("arbframe_exchange_ws_reconnects_total", {"exchange": exchange}) == 0
        for side in ("buy", "sell"):
            for status in ("filled", "rejected"):
                labels = {"exchange": exchange, "side": side, "status": status}
                assert value("arbitrage_orders_total", labels) == 0, labels
    assert value("arbframe_exchange_rate_limit_waits_total", {"exchange": "binance", "group": "weight"}) == 0
    assert value("arbframe_exchange_rate_limit_waits_total", {"exchange": "upbit", "group": "orderbook"}) == 0
    for table in ("spreads", "positions", "orders", "trades", "fx_rates", "errors"):
        assert value("arbframe_storage_rows_written_total", {"backend": "csv", "table": table}) == 0
    # every registered plugin's hooks, e.g. the exchange drivers' health checks
    assert value("arbframe_plugin_errors_total", {"plugin": "exchange:upbit", "hook": "arbframe_health_checks"}) == 0
    assert value("arbframe_plugin_errors_total", {"plugin": "plugin:trading", "hook": "arbframe_config_schema"}) == 0


def test_plugin_error_counter_counts_from_zero(tmp_path) -> None:
    from arbframe.hookspecs import hookimpl

    class Broken:
        @hookimpl
        def arbframe_on_error(self, error: Any) -> None:
            raise RuntimeError("boom")

    kernel = _kernel(tmp_path)
    kernel.register(Broken(), "broken")
    labels = {"plugin": "broken", "hook": "arbframe_on_error"}
    assert kernel.registry.get_sample_value("arbframe_plugin_errors_total", labels) == 0
    kernel.notify("arbframe_on_error", error=None)
    assert kernel.registry.get_sample_value("arbframe_plugin_errors_total", labels) == 1
    kernel.close()


def test_process_and_gc_collectors_are_in_the_kernel_registry(tmp_path) -> None:
    kernel = Kernel(load_config([]), register_plugins=False)
    value = kernel.registry.get_sample_value
    assert value("process_resident_memory_bytes") > 0
    assert value("process_open_fds") > 0
    assert value("python_gc_collections_total", {"generation": "0"}) is not None


def test_configured_limits_are_exported_as_gauges(tmp_path) -> None:
    kernel = _kernel(
        tmp_path,
        arbitrage={"max_daily_loss_krw": 123456},
        fx={"max_age_seconds": 77},
        alerts={"max_drawdown_krw": 999},
        service={"interval_seconds": 5},
    )
    _started(kernel)
    value = kernel.registry.get_sample_value
    assert value("arbitrage_max_daily_loss_krw") == 123456
    assert value("arbitrage_max_fx_age_seconds") == 77
    assert value("arbitrage_max_drawdown_krw") == 999
    assert value("arbitrage_tick_interval_seconds") == 5


def test_unset_limits_are_nan_and_drawdown_defaults_to_the_daily_loss_limit(tmp_path) -> None:
    kernel = _kernel(tmp_path, arbitrage={"max_daily_loss_krw": None})
    _started(kernel)
    assert math.isnan(kernel.registry.get_sample_value("arbitrage_max_daily_loss_krw"))
    assert math.isnan(kernel.registry.get_sample_value("arbitrage_max_drawdown_krw"))
    kernel = _kernel(tmp_path, arbitrage={"max_daily_loss_krw": 250000})
    _started(kernel)
    assert kernel.registry.get_sample_value("arbitrage_max_drawdown_krw") == 250000


def test_drawdown_is_measured_from_the_peak() -> None:
    stats = TradingStats("UTC")
    stats.unrealized_pnl_krw = Decimal(1000)
    assert stats.drawdown_krw() == 0
    stats.unrealized_pnl_krw = Decimal(-500)
    assert stats.drawdown_krw() == 1500
    stats.total_pnl_krw = Decimal(2000)
    stats.unrealized_pnl_krw = Decimal(0)
    assert stats.drawdown_krw() == 0 and stats.peak_equity_krw == 2000


def test_tick_duration_includes_the_storage_flush(tmp_path) -> None:
    kernel = _kernel(tmp_path, service={"interval_seconds": 0.01})
    real_load = kernel.load_storage
    delay = 0.05

    def slow_storage() -> Any:
        storage = real_load()
        flush = storage.flush

        def slow_flush() -> None:
            time.sleep(delay)  # a database that takes 50 ms to accept the tick's rows
            flush()

        storage.flush = slow_flush
        return storage

    kernel.load_storage = slow_storage  # type: ignore[method-assign]
    assert asyncio.run(run_loop(kernel, RunOptions(max_iterations=3, interval=0.01))) == 0
    value = kernel.registry.get_sample_value
    assert value("arbitrage_tick_duration_seconds_count") == 3
    assert value("arbitrage_tick_duration_seconds_sum") >= 3 * delay
    assert value("arbitrage_tick_duration_seconds_bucket", {"le": "0.025"}) == 0
