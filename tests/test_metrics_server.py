"""The aiohttp metrics server against a plain registry and fake health providers (no service needed)."""

from __future__ import annotations

import asyncio
import json
import socket
import sys

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge

from arbframe import HealthResult, HealthStatus
from arbframe.service.metrics_server import (
    CONTENT_TYPE,
    MetricsServer,
    health_http_status,
    health_payload,
    render_metrics,
    start_from_config,
    start_metrics_server,
)

aiohttp = pytest.importorskip("aiohttp")


def _registry() -> tuple[CollectorRegistry, Gauge]:
    registry = CollectorRegistry()
    pnl = Gauge("arbitrage_total_pnl_krw", "Total PnL in KRW", registry=registry)
    Counter("arbframe_plugin_errors", "errors", ["plugin", "hook"], registry=registry)
    pnl.set(1234.5)
    return registry, pnl


async def _get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


def test_importing_the_module_does_not_import_aiohttp() -> None:
    code = "import sys, arbframe.service.metrics_server; print('aiohttp' in sys.modules)"
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("own_thread", [True, False], ids=["own-thread", "on-loop"])
async def test_metrics_serves_the_registry_text(own_thread: bool) -> None:
    registry, _ = _registry()
    async with MetricsServer(registry, port=0, own_thread=own_thread) as server:
        assert server.running
        assert server.port != 0
        status, ctype, text = await _get(f"{server.url}/metrics")
    assert status == 200
    assert ctype.startswith("text/plain") and "version=0.0.4" in CONTENT_TYPE
    assert "# TYPE arbitrage_total_pnl_krw gauge" in text
    assert "arbitrage_total_pnl_krw 1234.5" in text
    assert text == render_metrics(registry).decode()


async def test_binds_loopback_by_default() -> None:
    registry, _ = _registry()
    server = await start_metrics_server(registry, None, port=0)
    try:
        assert server.host == "127.0.0.1"
        assert server.url.startswith("http://127.0.0.1:")
    finally:
        await server.stop()
        await server.stop()  # twice is harmless
    assert not server.running


async def test_metrics_cache_reuses_a_rendering_then_refreshes() -> None:
    registry, pnl = _registry()
    async with MetricsServer(registry, port=0, cache_seconds=3600) as server:
        _, _, first = await _get(f"{server.url}/metrics")
        pnl.set(99)
        _, _, cached = await _get(f"{server.url}/metrics")
        assert cached == first
    async with MetricsServer(registry, port=0, cache_seconds=0) as server:
        _, _, fresh = await _get(f"{server.url}/metrics")
        assert "arbitrage_total_pnl_krw 99.0" in fresh


async def test_concurrent_scrapes_share_one_rendering() -> None:
    from arbframe.service.metrics_server import _Cached

    calls = 0
    release = asyncio.Event()

    async def produce() -> bytes:
        nonlocal calls
        calls += 1
        await release.wait()
        return b"x 1\n"

    cached = _Cached(produce, ttl=0)
    tasks = [asyncio.ensure_future(cached.get()) for _ in range(8)]
    for _ in range(3):  # every task runs up to its await on the one pending rendering
        await asyncio.sleep(0)
    assert calls == 1 and not any(t.done() for t in tasks)
    release.set()
    assert await asyncio.gather(*tasks) == [b"x 1\n"] * 8
    assert calls == 1
    await cached.get()  # ttl 0: a later scrape renders again
    assert calls == 2


async def test_a_failed_rendering_is_retried_by_the_next_scrape() -> None:
    from arbframe.service.metrics_server import _Cached

    outcomes = [RuntimeError("collector broke"), b"ok"]

    async def produce() -> bytes:
        item = outcomes.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    cached = _Cached(produce, ttl=60)
    with pytest.raises(RuntimeError):
        await cached.get()
    assert await cached.get() == b"ok"


@pytest.mark.parametrize("own_thread", [True, False], ids=["own-thread", "on-loop"])
async def test_health_ok_and_error_status_codes(own_thread: bool) -> None:
    registry, _ = _registry()
    state = {"status": HealthStatus.OK}

    def provider() -> list[HealthResult]:
        return [
            HealthResult("redis", state["status"], "Connected to redis://localhost:6379/0"),
            HealthResult("csv", HealthStatus.OK, "CSV storage at data"),
            HealthResult("postgres", HealthStatus.DISABLED, "not configured"),
        ]

    async with MetricsServer(registry, provider, port=0, health_cache_seconds=0, own_thread=own_thread) as server:
        status, ctype, text = await _get(f"{server.url}/health")
        assert status == 200 and ctype.startswith("application/json")
        body = json.loads(text)
        assert body["status"] == "OK"
        assert [c["component"] for c in body["checks"]] == ["redis", "csv", "postgres"]
        assert body["checks"][0]["status"] == "OK"

        state["status"] = HealthStatus.ERROR
        status, _, text = await _get(f"{server.url}/health")
        assert status == 503
        assert json.loads(text)["status"] == "ERROR"

        state["status"] = HealthStatus.WARN
        status, _, text = await _get(f"{server.url}/health")
        assert status == 200 and json.loads(text)["status"] == "WARN"


async def test_health_async_provider_with_to_dict_and_timeout() -> None:
    registry, _ = _registry()

    class Report:
        def to_dict(self) -> dict:
            checks = [{"component": "redis", "status": "ERROR", "message": "down"}]
            return {"overall": "ERROR", "checks": checks}

    async def good() -> Report:
        return Report()

    async def hangs() -> Report:
        await asyncio.sleep(30)
        return Report()

    async with MetricsServer(registry, good, port=0) as server:
        status, _, text = await _get(f"{server.url}/health")
    assert status == 503 and json.loads(text)["checks"][0]["message"] == "down"

    async with MetricsServer(registry, hangs, port=0, health_timeout_seconds=0.2) as server:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        status, _, text = await _get(f"{server.url}/health")
        assert loop.time() - t0 < 5
    assert status == 503 and "did not finish" in json.loads(text)["message"]


async def test_health_provider_that_raises_answers_503() -> None:
    registry, _ = _registry()

    def broken() -> None:
        raise RuntimeError("boom")

    async with MetricsServer(registry, broken, port=0) as server:
        status, _, text = await _get(f"{server.url}/health")
    assert status == 503 and "boom" in json.loads(text)["message"]


async def test_health_without_provider_is_ok() -> None:
    registry, _ = _registry()
    async with MetricsServer(registry, port=0) as server:
        status, _, text = await _get(f"{server.url}/health")
    assert status == 200 and json.loads(text)["status"] == "OK"


@pytest.mark.parametrize("own_thread", [True, False], ids=["own-thread", "on-loop"])
async def test_ready_follows_the_provider(own_thread: bool) -> None:
    registry, _ = _registry()
    state = {"ready": False}

    def ready() -> tuple[bool, str]:
        return state["ready"], "first tick done" if state["ready"] else "waiting for the first tick"

    async with MetricsServer(registry, ready_provider=ready, port=0, own_thread=own_thread) as server:
        status, _, text = await _get(f"{server.url}/ready")
        assert status == 503 and json.loads(text) == {"ready": False, "reason": "waiting for the first tick"}
        state["ready"] = True
        status, _, text = await _get(f"{server.url}/ready")
        assert status == 200 and json.loads(text)["ready"] is True
        status, _, _ = await _get(f"{server.url}/nope")
        assert status == 404


def test_health_payload_shapes() -> None:
    payload = health_payload({"checks": {"redis": {"status": "WARN", "message": "slow"}}})
    assert payload["status"] == "WARN" and payload["checks"][0]["component"] == "redis"
    assert health_http_status(payload) == 200
    assert health_http_status(health_payload([HealthResult("x", HealthStatus.ERROR, "bad")])) == 503
    neutral = [HealthResult("x", HealthStatus.SKIP, ""), HealthResult("y", HealthStatus.DISABLED, "")]
    skipped = health_payload(neutral)
    assert skipped["status"] == "OK"
    with pytest.raises(TypeError):
        health_payload(42)


async def test_start_from_config_disabled_enabled_and_port_taken(caplog: pytest.LogCaptureFixture) -> None:
    registry, _ = _registry()
    assert await start_from_config({}, registry) is None
    assert await start_from_config({"metrics_server": {"enabled": False, "port": 0}}, registry) is None

    server = await start_from_config({"metrics_server": {"enabled": True, "port": 0}}, registry)
    assert server is not None and server.host == "127.0.0.1" and not server.own_thread
    try:
        status, _, _ = await _get(f"{server.url}/metrics")
        assert status == 200
    finally:
        await server.stop()

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        caplog.set_level("ERROR", logger="arbframe.metrics_server")
        got = await start_from_config({"metrics_server": {"enabled": True, "port": port}}, registry)
    assert got is None
    assert "cannot listen" in caplog.text


async def test_health_provider_for_a_kernel_serves_the_health_report(tmp_path) -> None:
    from arbframe.builtins.memory_cache import MemoryCache
    from arbframe.kernel.config import load_config
    from arbframe.kernel.plugin_host import Kernel
    from arbframe.service.metrics_server import health_provider_for

    config = load_config([], overrides={"storage": {"csv": {"data_dir": str(tmp_path)}}})
    kernel = Kernel(config)
    storage = kernel.load_storage()
    try:
        provider = health_provider_for(kernel, MemoryCache({}, kernel.context), budget_seconds=2.0)
        async with MetricsServer(kernel.registry, provider, port=0) as server:
            status, _, text = await _get(f"{server.url}/health")
        body = json.loads(text)
        components = {c["component"].upper() for c in body["checks"]}
        assert "CSV" in components and "HEARTBEAT" in components
        assert status == (503 if body["status"] == "ERROR" else 200)
    finally:
        storage.close()
        kernel.close()


async def test_sliced_rendering_gives_the_same_bytes_and_yields() -> None:
    from arbframe.kernel.instruments import ExchangeMetrics
    from arbframe.service.metrics_server import render_metrics_async
    from arbframe.trading.statistics import TradingMetrics

    registry = CollectorRegistry()
    trading = TradingMetrics.get(registry)
    trading.tick_seconds.observe(0.002)
    trading.premium.labels(symbol="BTC", direction="kimchi").set(0.03)
    m = ExchangeMetrics.get(registry)
    for venue in ("upbit", "binance"):
        m.requests.labels(venue, "/book", "200").inc()
        m.request_seconds.labels(venue, "/book").observe(0.01)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.ensure_future(ticker())
    await asyncio.sleep(0)
    before = ticks
    body = await render_metrics_async(registry, slice_seconds=0)  # yield after every family
    task.cancel()
    assert body == render_metrics(registry)
    assert ticks - before > 10  # the loop ran other work between families


async def _raw(port: int, payload: bytes, timeout: float = 3.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


async def test_malformed_requests_log_no_traceback_and_one_line_at_most(caplog: pytest.LogCaptureFixture) -> None:
    registry, _ = _registry()
    caplog.set_level("DEBUG")
    async with MetricsServer(registry, port=0) as server:
        for i in range(200):
            answer = await _raw(server.port, b"GARBAGE \x00\x01 /x HTTP/9\r\n\r\n" if i % 2
                               else b"GET / HTTP/1.1\r\nno colon here\r\n\r\n")
            assert answer.startswith((b"HTTP/1.1 400", b"HTTP/1.0 400")) or answer == b"", answer[:80]
        status, _, _ = await _get(f"{server.url}/metrics")  # still serving
        assert status == 200
    lines = [r for r in caplog.records if r.levelno >= 30]
    assert len(lines) <= 1, [r.getMessage() for r in lines]
    assert all(r.exc_info is None and "Traceback" not in caplog.text for r in caplog.records)
    assert lines and "\n" not in lines[0].getMessage() and len(lines[0].getMessage()) < 300


async def test_a_half_sent_request_is_closed_after_the_header_timeout() -> None:
    registry, _ = _registry()
    async with MetricsServer(registry, port=0, header_timeout_seconds=0.3) as server:
        loop = asyncio.get_running_loop()
        started = loop.time()
        answer = await _raw(server.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n", timeout=5.0)  # never finished
        assert answer == b"" and loop.time() - started < 3.0
        silent = await _raw(server.port, b"", timeout=5.0)  # connects, sends nothing at all
        assert silent == b""
        status, _, _ = await _get(f"{server.url}/metrics")  # a complete request is served as before
        assert status == 200
