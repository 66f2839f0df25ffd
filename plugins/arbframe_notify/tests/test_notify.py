"""arbframe-notify against a local aiohttp endpoint through apprise's ``json://`` scheme (nothing leaves 127.0.0.1).

What is proven: a storm is one message; the rate limit holds the next one back; ``submit`` never blocks, even while
a send hangs, and drops (counted, reported) past the queue bound; the kernel's events reach the endpoint; URL
secrets never appear in ``config show``, health output or log lines.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import subprocess
import sys
import time
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from arbframe_notify.notifier import Notifier, NotifyEvent, url_secrets
from arbframe_notify.plugin import PLUGIN_NAME
from prometheus_client import CollectorRegistry

from arbframe import DailySummary, ErrorRecord
from arbframe.testing.plugin_harness import PluginHarness

pytest.importorskip("apprise")
web = pytest.importorskip("aiohttp.web")

SECRET = "s3cretPassw0rd"
TOKEN = "tok9f8e7d6c5b4a"


class Endpoint:
    """A JSON webhook on 127.0.0.1: records every POST; ``hold`` makes it hang until released."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.auth: list[str] = []
        self.paths: list[str] = []
        self.arrived = asyncio.Event()
        self.hold: asyncio.Event | None = None
        self.runner: Any = None
        self.port = 0

    async def handle(self, request: Any) -> Any:
        if self.hold is not None:
            await self.hold.wait()
        self.messages.append(await request.json())
        self.auth.append(request.headers.get("Authorization", ""))
        self.paths.append(request.path)
        self.arrived.set()
        return web.json_response({"ok": True})

    async def start(self) -> Endpoint:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    def url(self, path: str = "hook") -> str:
        return f"json://notify:{SECRET}@127.0.0.1:{self.port}/{path}"

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            self.arrived.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{len(self.messages)} of {count} messages arrived: {self.messages}")
            try:
                await asyncio.wait_for(self.arrived.wait(), remaining)
            except asyncio.TimeoutError:
                pass
        return self.messages

    async def stop(self) -> None:
        if self.hold is not None:
            self.hold.set()
        await self.runner.cleanup()


@pytest.fixture
async def endpoint() -> Any:
    ep = await Endpoint().start()
    yield ep
    await ep.stop()


async def _close(notifier: Notifier, timeout: float = 10.0) -> bool:
    return await asyncio.to_thread(notifier.close, timeout)


def _error(i: int) -> NotifyEvent:
    return NotifyEvent("error", f"error in upbit #{i}", "order book BTC unavailable: timeout", "failure")


# ------------------------------------------------------------------------------------------- batching
async def test_a_storm_is_one_message_and_the_rate_limit_holds_the_next(endpoint: Endpoint) -> None:
    registry = CollectorRegistry()
    notifier = Notifier([endpoint.url()], batch_seconds=0.3, min_interval_seconds=1.5, registry=registry)
    notifier.start()
    for i in range(200):
        assert notifier.submit(_error(i))
    (first,) = await endpoint.wait_for(1)
    assert first["title"] == "arbframe: 200 events (200 error)"
    assert first["type"] == "failure"
    lines = first["message"].splitlines()
    assert lines[0] == "- error in upbit #0: order book BTC unavailable: timeout"
    assert len(lines) == 21 and lines[-1] == "... and 180 more"
    assert endpoint.auth[0] == "Basic " + base64.b64encode(f"notify:{SECRET}".encode()).decode()
    sent_at = time.monotonic()

    notifier.submit(NotifyEvent("position_opened", "OPEN kimchi BTC", "qty 0.01"))
    notifier.submit(NotifyEvent("position_closed", "CLOSE kimchi BTC pnl 1,234 KRW", "", "success"))
    messages = await endpoint.wait_for(2)
    assert time.monotonic() - sent_at >= 1.5 - 0.3  # held back by min_interval_seconds, not by batch_seconds
    assert messages[1]["title"] == "arbframe: 2 events (1 position opened, 1 position closed)"
    assert messages[1]["type"] == "success"
    assert await _close(notifier)
    assert len(endpoint.messages) == 2
    assert registry.get_sample_value("arbframe_notify_messages_total", {"status": "sent"}) == 2
    assert registry.get_sample_value("arbframe_notify_events_total", {"kind": "error"}) == 200
    assert registry.get_sample_value("arbframe_notify_messages_total", {"status": "failed"}) == 0


async def test_one_event_is_sent_as_itself(endpoint: Endpoint) -> None:
    notifier = Notifier([endpoint.url()], batch_seconds=0.05, min_interval_seconds=0.05)
    notifier.start()
    notifier.submit(NotifyEvent("daily_summary", "day 2025-01-01: 5,000 KRW", "realized 5,000₩ in 3 trades"))
    (message,) = await endpoint.wait_for(1)
    assert message == {**message, "title": "arbframe: day 2025-01-01: 5,000 KRW",
                       "message": "realized 5,000₩ in 3 trades", "type": "info"}
    assert await _close(notifier)


async def test_submit_never_blocks_while_a_send_hangs_and_drops_past_the_bound(endpoint: Endpoint) -> None:
    endpoint.hold = asyncio.Event()
    registry = CollectorRegistry()
    notifier = Notifier([endpoint.url()], batch_seconds=0.01, min_interval_seconds=0.01, max_queue=50,
                        registry=registry)
    notifier.start()
    notifier.submit(_error(0))
    # wait until the worker is inside the hanging POST (the queue is empty again)
    deadline = time.monotonic() + 10
    while notifier.queued and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    started = time.perf_counter()
    accepted = [notifier.submit(_error(i)) for i in range(1, 1001)]
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5, f"1000 submits took {elapsed:.3f}s while the endpoint hung"
    assert sum(accepted) == 50 and notifier.dropped == 950
    assert registry.get_sample_value("arbframe_notify_events_dropped_total") == 950
    assert registry.get_sample_value("arbframe_notify_queue_depth") == 50
    endpoint.hold.set()
    messages = await endpoint.wait_for(2)
    assert messages[1]["title"] == "arbframe: 50 events (50 error)"
    assert messages[1]["message"].splitlines()[-1] == \
        "(950 more events were dropped: the notification queue was full)"
    assert await _close(notifier)


async def test_close_sends_what_is_queued_within_its_bound(endpoint: Endpoint) -> None:
    notifier = Notifier([endpoint.url()], batch_seconds=30, min_interval_seconds=60)
    notifier.start()
    notifier.submit(_error(1))
    notifier.submit(_error(2))
    started = time.monotonic()
    assert await _close(notifier, 10)
    assert time.monotonic() - started < 5  # not the 30 s batch window: shutdown flushes at once
    assert [m["title"] for m in endpoint.messages] == ["arbframe: 2 events (2 error)"]
    assert not notifier.submit(_error(3))  # closed


async def test_close_is_bounded_when_the_endpoint_hangs(endpoint: Endpoint) -> None:
    endpoint.hold = asyncio.Event()
    notifier = Notifier([endpoint.url()], batch_seconds=0.01, min_interval_seconds=0.01)
    notifier.start()
    notifier.submit(_error(1))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    assert not await _close(notifier, 0.5)
    assert time.monotonic() - started < 2


async def test_a_failed_delivery_is_counted_and_masked() -> None:
    registry = CollectorRegistry()
    port = _closed_port()
    notifier = Notifier([f"json://notify:{SECRET}@127.0.0.1:{port}/{TOKEN}"], batch_seconds=0.01,
                        min_interval_seconds=0.01, registry=registry)
    notifier.start()
    notifier.submit(_error(1))
    assert await _close(notifier, 20)
    assert notifier.failed == 1 and notifier.sent == 0
    assert registry.get_sample_value("arbframe_notify_messages_total", {"status": "failed"}) == 1
    assert SECRET not in notifier.last_error and TOKEN not in notifier.last_error


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------------------------------- secrets
def test_url_secrets_cover_tokens_in_every_part() -> None:
    found = url_secrets(f"tgram://123456789:{TOKEN}/-100200300?format=markdown")
    assert TOKEN in found and "123456789" in found and "-100200300" in found
    assert SECRET in url_secrets(f"mailto://me:{SECRET}@example.org")


async def test_apprise_log_lines_never_show_url_secrets(endpoint: Endpoint, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    notifier = Notifier([endpoint.url(f"hook-{TOKEN}")], batch_seconds=0.01, min_interval_seconds=0.01)
    notifier.start()
    notifier.submit(_error(1))
    await endpoint.wait_for(1)
    assert await _close(notifier)
    assert endpoint.paths == [f"/hook-{TOKEN}"]  # the token did go to the endpoint ...
    client_lines = [r.getMessage() for r in caplog.records if not r.name.startswith("aiohttp")]  # not the fake's
    assert any("JSON POST URL" in line for line in client_lines), client_lines  # ... apprise logged the request
    assert any("POST /*** HTTP" in line for line in client_lines), client_lines  # ... and so did urllib3 ...
    text = "\n".join(client_lines)
    assert TOKEN not in text and SECRET not in text  # ... with the secrets cut out


def _harness(service_harness: Any, url: str, arbitrage: dict[str, Any] | None = None, **notify: Any) -> PluginHarness:
    """The kernel `arbframe run --mode paper --mock` builds with notifications enabled (data under tmp_path)."""
    overrides = {
        "notify": {"enabled": True, "urls": [url], "batch_seconds": 0.05, "min_interval_seconds": 0.05, **notify},
        "arbitrage": arbitrage or {},
    }
    return service_harness(overrides, mode="paper", mock=True)


def test_config_show_masks_notification_urls(tmp_path: Path) -> None:
    config = tmp_path / "notify.yml"
    config.write_text(f"notify:\n  enabled: true\n  urls:\n    - tgram://123456789:{TOKEN}/-100200300\n"
                      f"    - json://notify:{SECRET}@127.0.0.1:9/hook\n")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    proc = subprocess.run([sys.executable, "-m", "arbframe", "config", "show", "--config", str(config)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert TOKEN not in proc.stdout and SECRET not in proc.stdout and "123456789" not in proc.stdout
    assert "- tgram://***" in proc.stdout and "- json://***" in proc.stdout


def test_health_names_channels_without_secrets(service_harness: Any) -> None:
    harness = _harness(service_harness, f"json://notify:{SECRET}@127.0.0.1:9/{TOKEN}")
    (result,) = harness.health("notify")
    assert result.status.value == "OK" and result.message == "json://***: 0 messages sent"
    assert SECRET not in json.dumps(result.details) and TOKEN not in json.dumps(result.details)


def test_disabled_adds_no_health_row_and_registers_nothing(service_harness: Any) -> None:
    harness = service_harness(mock=True)
    assert harness.pm.get_plugin(PLUGIN_NAME) is None
    assert harness.health("notify") == []
    assert harness.metric("arbframe_notify_messages_total", {"status": "sent"}) is None


# --------------------------------------------------------------------------------- the kernel's events
async def test_kernel_events_reach_the_endpoint(service_harness: Any, endpoint: Endpoint) -> None:
    harness = _harness(service_harness, endpoint.url(), events=["error", "daily_summary", "storage_fallback"])
    harness.notify("arbframe_startup", context=harness.context)
    now = datetime(2025, 1, 2, tzinfo=timezone.utc)
    harness.notify("arbframe_on_error", error=ErrorRecord(id="e1", ts=now, component="binance",
                                                          message="HTTP 418: banned", kind="market_data"))
    harness.notify("arbframe_on_storage_fallback", backend="postgres", fallback="csv",
                   reason="OperationalError: connection refused")
    harness.notify("arbframe_on_daily_summary", summary=DailySummary(
        day=date(2025, 1, 1), realized_pnl_krw=Decimal("-12345.6"), trades=3, total_pnl_krw=Decimal(1000),
        win_rate=0.5, open_positions=1, unrealized_pnl_krw=Decimal(10)))
    (message,) = await endpoint.wait_for(1)
    await asyncio.to_thread(harness.notify, "arbframe_shutdown", context=harness.context)
    harness.close()
    assert message["title"] == ("arbframe [simulated]: 3 events (1 error, 1 storage fallback, "
                                "1 daily summary)")
    body = message["message"]
    assert "- error in binance: HTTP 418: banned" in body
    assert "- storage postgres unavailable: recording to csv: OperationalError: connection refused" in body
    assert "- day 2025-01-01: -12,346 KRW: 2025-01-01: realized -12,346₩ in 3 trades" in body
    assert message["type"] == "failure"
    assert harness.metric("arbframe_plugin_errors_total", {"plugin": PLUGIN_NAME, "hook": "arbframe_on_error"}) == 0


async def test_a_service_run_sends_position_messages(service_harness: Any, endpoint: Endpoint) -> None:
    """`arbframe run` in mock mode with a low entry threshold opens (and may close) positions: messages arrive."""
    # every tick is an entry signal
    harness = _harness(service_harness, endpoint.url(),
                      {"entry_threshold": 0, "exit_threshold": 0, "cooldown_seconds": 0},
                      events=["position_opened", "position_closed"])
    # the service on its own loop in a thread, as in production: this loop serves the endpoint meanwhile
    assert await harness.run_in_thread(2, interval=0.01) == 0
    messages = await endpoint.wait_for(1)
    text = " ".join(m["title"] + " " + m["message"] for m in messages)
    assert "OPEN " in text and "premium" in text
