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

from arbframe import EXCHANGE_ERROR_KINDS
from arbframe.kernel.config import load_config
from arbframe.kernel.plugin_host import Kernel
from arbframe.service.runner import RunOptions, TradingService, run_loop
from arbframe.trading.statistics import TradingStats


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
        for kind in EXCHANGE_ERROR_KINDS:  # the taxonomy's kinds, the only labels both venues count
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
    from arbframe.kernel.hookspecs import hookimpl

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


def test_tick_duration_includes_the_cache_writes(tmp_path) -> None:
    """Cache writes run on the tick, so the tick histogram sees them (storage writes go to the kernel's writer
    thread and cost the tick only the hand-off: tests/test_storage_writer.py)."""
    kernel = _kernel(tmp_path, service={"interval_seconds": 0.01})
    real_load = kernel.load_cache
    delay = 0.05

    def slow_cache() -> Any:
        cache = real_load()
        write_tick = cache.write_tick

        def slow_write_tick(*args: Any, **kwargs: Any) -> Any:
            time.sleep(delay)  # a cache server that takes 50 ms to answer
            return write_tick(*args, **kwargs)

        cache.write_tick = slow_write_tick
        return cache

    kernel.load_cache = slow_cache  # type: ignore[method-assign]
    assert asyncio.run(run_loop(kernel, RunOptions(max_iterations=3, interval=0.01))) == 0
    value = kernel.registry.get_sample_value
    assert value("arbitrage_tick_duration_seconds_count") == 3
    assert value("arbitrage_tick_duration_seconds_sum") >= 3 * delay
    assert value("arbitrage_tick_duration_seconds_bucket", {"le": "0.025"}) == 0


# ------------------------------------------------------------------------------- the kernel's alert-like events
class _Recorder:
    """Records the kernel's alert-like hook calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    from arbframe.kernel.hookspecs import hookimpl as _hookimpl

    @_hookimpl
    def arbframe_on_storage_fallback(self, backend: str, fallback: str, reason: str) -> None:
        self.calls.append(("fallback", {"backend": backend, "fallback": fallback, "reason": reason}))

    @_hookimpl
    def arbframe_on_daily_summary(self, summary: Any) -> None:
        self.calls.append(("summary", {"summary": summary}))


def test_day_rollover_summarises_the_day_that_ended() -> None:
    from datetime import datetime, timezone

    from arbframe.core.models import Direction, Position, PositionStatus
    from arbframe.trading.statistics import DayRollover

    stats = TradingStats("Asia/Seoul")
    rollover = DayRollover(stats)
    t0 = datetime(2025, 1, 1, 10, 0, tzinfo=timezone.utc)  # 19:00 KST, Jan 1
    assert rollover.update(t0) is None
    closed = Position(id="p1", symbol="BTC", direction=Direction.KIMCHI, status=PositionStatus.CLOSED, opened_at=t0,
                      qty=Decimal("0.01"), domestic_exchange="upbit", foreign_exchange="binance",
                      entry_domestic_price=Decimal(1), entry_foreign_price=Decimal(1), entry_fx_rate=Decimal(1),
                      entry_premium=Decimal(0), closed_at=t0, realized_pnl_krw=Decimal("-700"))
    stats.record_close(closed)
    assert rollover.update(datetime(2025, 1, 1, 14, 59, tzinfo=timezone.utc)) is None  # 23:59 KST
    summary = rollover.update(datetime(2025, 1, 1, 15, 0, tzinfo=timezone.utc))  # midnight KST
    assert summary is not None and str(summary.day) == "2025-01-01"
    assert summary.realized_pnl_krw == Decimal("-700") and summary.trades == 1
    assert "realized -700₩ in 1 trades" in summary.text()
    assert rollover.update(datetime(2025, 1, 1, 16, 0, tzinfo=timezone.utc)) is None


def test_run_loop_calls_the_daily_summary_hook_at_midnight(tmp_path, monkeypatch) -> None:
    from datetime import datetime, timedelta, timezone

    import arbframe.service.runner as runner_module

    times = iter(datetime(2025, 1, 1, 14, 59, 58, tzinfo=timezone.utc) + timedelta(seconds=i) for i in range(100))
    monkeypatch.setattr(runner_module, "utcnow", lambda: next(times))  # the simulated market's clock
    kernel = _kernel(tmp_path)
    recorder = _Recorder()
    kernel.register(recorder, "recorder")
    assert asyncio.run(run_loop(kernel, RunOptions(max_iterations=4, interval=0.01))) == 0
    summaries = [c[1]["summary"] for c in recorder.calls if c[0] == "summary"]
    assert [str(s.day) for s in summaries] == ["2025-01-01"]


def test_storage_fallback_calls_its_hook_with_the_password_masked(tmp_path) -> None:
    """A backend that cannot start at all (its driver fails to build, e.g. psycopg2 missing) falls back to CSV and
    says so through the hook; an unreachable server is not that case any more (the PostgreSQL driver spools)."""
    names = {ep.name for ep in metadata.entry_points(group="arbframe.storage")}
    if "postgres" not in names:
        pytest.skip("arbframe-storage-pg not installed")
    dsn = "postgresql://arb:hunter2secret@127.0.0.1:1/arb"
    kernel = _kernel(tmp_path, storage={
        "backend": "postgres", "csv": {"data_dir": str(tmp_path / "data")}, "postgres": {"dsn": dsn},
    })
    real_build = kernel.build_driver

    def build(kind: str, name: str, *args: Any, **kwargs: Any) -> Any:
        if (kind, name) == ("storage", "postgres"):
            raise RuntimeError(f"psycopg2 not importable for {dsn}")
        return real_build(kind, name, *args, **kwargs)

    kernel.build_driver = build  # type: ignore[method-assign]
    recorder = _Recorder()
    kernel.register(recorder, "recorder")
    storage = kernel.load_storage()
    assert storage.describe().lower().startswith("csv")
    ((kind, call),) = recorder.calls
    assert kind == "fallback" and call["backend"] == "postgres" and call["fallback"] == "csv"
    assert "hunter2secret" not in call["reason"] and "psycopg2" in call["reason"]
    kernel.close()
