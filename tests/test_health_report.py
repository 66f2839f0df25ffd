"""The health report: layout and icons (seed D2 §3), aggregation, exit codes, concurrency and bounds."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from arbframe import FxRate, HealthCheck, HealthResult, HealthStatus
from arbframe.builtins.memory_cache import MemoryCache
from arbframe.builtins.static_fx import StaticFxSource
from arbframe.service.health import (
    HealthReport,
    aggregate_status,
    build_report,
    fx_check,
    heartbeat_check,
    kernel_checks,
    run_checks,
    run_checks_async,
)

OK, WARN, ERROR, SKIP, DISABLED = (HealthStatus.OK, HealthStatus.WARN, HealthStatus.ERROR, HealthStatus.SKIP,
                                   HealthStatus.DISABLED)
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def fixed(component: str, status: HealthStatus, message: str = "", **details) -> HealthCheck:
    return HealthCheck(component, lambda: HealthResult(component, status, message, details))


SEED_EXAMPLE = """\
────────────────────────────────────────────────────────────
arbframe: Health Check Report
────────────────────────────────────────────────────────────

[REDIS     ] ✅ OK       Connected to redis://localhost:6379/0
[POSTGRES  ] ✅ OK       Connected to localhost:5432/arbitrage
[CSV       ] ✅ OK       CSV storage at data

Overall:       ✅ OK
────────────────────────────────────────────────────────────"""


def test_layout_is_the_seeds_exactly():
    report = build_report([
        fixed("csv", OK, "CSV storage at data"),
        fixed("postgres", OK, "Connected to localhost:5432/arbitrage"),
        fixed("redis", OK, "Connected to redis://localhost:6379/0"),
    ])
    assert report.format() == SEED_EXAMPLE
    assert report.exit_code == 0


def test_icons_and_status_column():
    report = build_report([
        fixed("redis", DISABLED, "off"), fixed("upbit", WARN, "no keys"), fixed("binance", ERROR, "down"),
        fixed("postgres", SKIP, "not used"),
    ])
    text = report.format()
    assert "[REDIS     ] ⏸️ DISABLED off" in text
    assert "[POSTGRES  ] ⏭️ SKIP     not used" in text
    assert "[UPBIT     ] ⚠️ WARN     no keys" in text
    assert "[BINANCE   ] ❌ ERROR    down" in text
    assert "Overall:       ❌ ERROR" in text
    assert report.exit_code == 1


def test_aggregation():
    assert aggregate_status([]) is OK
    assert aggregate_status([OK, SKIP, DISABLED]) is OK
    assert aggregate_status([OK, WARN, SKIP]) is WARN
    assert aggregate_status([WARN, ERROR, OK]) is ERROR
    assert build_report([fixed("a", WARN)]).exit_code == 0
    assert build_report([fixed("a", DISABLED)]).exit_code == 0


def test_order_seed_components_first_kernel_last_one_row_each():
    report = build_report([
        fixed("heartbeat", OK), fixed("upbit", OK), fixed("csv", OK), fixed("fx", OK), fixed("redis", OK),
        fixed("binance", OK), fixed("redis", ERROR, "duplicate"),
    ])
    assert [o.component for o in report.outcomes] == ["redis", "csv", "upbit", "binance", "fx", "heartbeat"]
    assert report.result("redis").status is OK


def test_json_has_every_component_and_the_overall_status():
    report = build_report([fixed("redis", OK, "x", latency_ms=0.3), fixed("csv", ERROR, "y")])
    data = json.loads(report.to_json())
    assert data["status"] == data["overall"] == "ERROR"
    assert [c["component"] for c in data["checks"]] == ["redis", "csv"]
    assert data["checks"][0] == {
        "component": "redis", "status": "OK", "message": "x", "details": {"latency_ms": 0.3},
        "duration_ms": data["checks"][0]["duration_ms"],
    }


def test_verbose_shows_details_and_timings():
    text = build_report([fixed("redis", OK, "x", redis_version="7.0")]).format(verbose=True)
    assert "redis_version: 7.0" in text and "took" in text and "Checked 1 component(s)" in text


def test_checks_run_concurrently_and_each_is_bounded():
    release = threading.Event()

    def hang() -> HealthResult:
        release.wait(10)
        return HealthResult("hang", OK, "late")

    def slow() -> HealthResult:
        time.sleep(0.2)
        return HealthResult("slow", OK, "fine")

    checks = [HealthCheck("hang", hang, timeout_seconds=0.3)] + [
        HealthCheck(f"slow{i}", slow, timeout_seconds=2) for i in range(5)
    ]
    started = time.monotonic()
    outcomes = run_checks(checks)
    elapsed = time.monotonic() - started
    release.set()
    assert elapsed < 0.8  # five 0.2 s checks and a hung one, concurrently
    assert outcomes[0].status is ERROR and "no answer within 0.3s" in outcomes[0].result.message
    assert all(o.status is OK for o in outcomes[1:])


def test_overall_budget_caps_every_timeout():
    release = threading.Event()
    checks = [HealthCheck(f"h{i}", lambda: release.wait(10), timeout_seconds=5) for i in range(3)]
    started = time.monotonic()
    outcomes = run_checks(checks, budget_seconds=0.2)
    release.set()
    assert time.monotonic() - started < 0.6
    assert all(o.status is ERROR for o in outcomes)


def test_async_probes_are_bounded_too():
    async def ok() -> HealthResult:
        await asyncio.sleep(0.01)
        return HealthResult("a", OK, "async fine")

    async def hangs() -> HealthResult:
        await asyncio.sleep(10)
        return HealthResult("b", OK, "never")

    started = time.monotonic()
    outcomes = run_checks([HealthCheck("a", ok), HealthCheck("b", hangs, timeout_seconds=0.2)])
    assert time.monotonic() - started < 0.7
    assert outcomes[0].result.message == "async fine"
    assert outcomes[1].status is ERROR and "0.2s" in outcomes[1].result.message


def test_exceptions_and_wrong_types_become_errors_without_secrets():
    def boom() -> HealthResult:
        raise ConnectionError("cannot reach postgresql://arb:hunter2@db:5432/x")

    outcomes = run_checks([HealthCheck("pg", boom), HealthCheck("odd", lambda: "fine")])
    assert outcomes[0].status is ERROR
    assert "hunter2" not in outcomes[0].result.message and "arb:***@db" in outcomes[0].result.message
    assert outcomes[1].status is ERROR and "not a HealthResult" in outcomes[1].result.message


def test_messages_and_details_are_scrubbed():
    check = HealthCheck("r", lambda: HealthResult("r", OK, "redis://:pw123@h:1/0", {"url": "redis://u:pw123@h/0"}))
    report = build_report([check])
    assert "pw123" not in report.format(verbose=True)
    assert "pw123" not in report.to_json()


async def test_async_runner_for_the_metrics_server():
    outcomes = await run_checks_async([fixed("redis", OK, "x")])
    assert outcomes[0].status is OK
    payload = HealthReport(outcomes).to_dict()
    assert payload["status"] == "OK"


def test_metrics_server_accepts_the_report():
    from arbframe.service.metrics_server import health_http_status, health_payload

    payload = health_payload(build_report([fixed("redis", ERROR, "down")]))
    assert payload["status"] == "ERROR" and health_http_status(payload) == 503


# ---------------------------------------------------------------------------------------------- kernel checks
def test_heartbeat_check_states():
    now = [T0]
    cache = MemoryCache()
    check = heartbeat_check(cache, "bot_service", ttl_seconds=60, interval_seconds=10, clock=lambda: now[0])
    result = check.probe()
    assert result.status is WARN and "no heartbeat from bot_service" in result.message
    cache.set_heartbeat("bot_service", T0, 60)
    now[0] = T0 + timedelta(seconds=3)
    result = check.probe()
    assert result.status is OK and "alive" in result.message
    now[0] = T0 + timedelta(seconds=25)
    assert check.probe().status is WARN


def test_fx_check_reads_through_the_cache_first():
    cache = MemoryCache()
    source = StaticFxSource({"static_rate": 1350.0})
    check = fx_check(cache, source, clock=lambda: T0 + timedelta(seconds=5))
    result = asyncio.run(check.probe())
    assert result.status is OK and "1350.0 from static" in result.message and result.details["via"] == "source"
    cache.set_fx_rate(FxRate(id="a", ts=T0, rate=Decimal("1401.5"), source="exchange"), 60)
    result = asyncio.run(check.probe())
    assert result.status is OK and "1401.5 from exchange" in result.message and result.details["via"] == "memory"


def test_fx_check_failing_source_is_error():
    class Broken(StaticFxSource):
        async def fetch(self):
            raise TimeoutError("upbit KRW-USDT timed out")

    result = asyncio.run(fx_check(MemoryCache(), Broken({})).probe())
    assert result.status is ERROR and "timed out" in result.message


def test_kernel_checks_leave_heartbeat_out_for_an_unshared_cache(tmp_path):
    config = {"service": {"name": "svc", "interval_seconds": 5}, "redis": {"health_ttl_seconds": 30},
              "storage": {"csv": {"data_dir": str(tmp_path)}}}
    assert [c.component for c in kernel_checks(config, MemoryCache())] == ["fx", "liveness", "readiness"]
    assert [c.component for c in kernel_checks(config, MemoryCache(), same_process=True)] == ["fx", "heartbeat"]


def test_heartbeat_check_does_not_probe_a_cache_known_to_be_down():
    class Down(MemoryCache):
        degraded = True
        pings = 0

        def get_heartbeat(self, service):
            return None

        def ping(self):
            Down.pings += 1
            return False

    result = heartbeat_check(Down(), "bot_service").probe()
    assert result.status is SKIP and "unreachable" in result.message
    assert Down.pings == 0
