"""The live scenario matrix end to end: ``arbframe run --mode live`` (the service loop in process, and as a real
subprocess for ``kill -9``) against the fake Upbit and the fake Binance servers at once, over HTTP and their
WebSockets, with faults injected on their order endpoints.

The fakes' default mids make the kimchi premium about 9.6 % (Upbit BTC 148,000,000 KRW; Binance BTC 100,000 USDT at
a static 1,350 KRW/USDT: 148/135 - 1), far above the 2 % entry threshold, so the first tick enters. Every scenario
ends with :func:`check`: each fake venue's own balances (free + locked) equal its starting balances plus what the
stored orders (latest state per client id) say they changed; the net coin exposure over both venues is zero (or
the residual the test expects); no client order id reached a venue twice; every stored order state has its
``[EXEC]`` log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.slow

upbit_fake = pytest.importorskip("arbframe_exchange_upbit.testing.fake_server")
binance_fake = pytest.importorskip("arbframe_exchange_binance.testing.fake_server")

from arbframe.execution.orders import latest_states, order_changes  # noqa: E402
from arbframe.service.runner import RunOptions, kernel_for_run, run_loop  # noqa: E402

UPBIT_KEYS = {"api_key": "test-access-key", "api_secret": "test-secret-key"}
BINANCE_KEYS = {"api_key": "fake-api-key", "api_secret": "fake-api-secret"}
QUOTES = {"upbit": "KRW", "binance": "USDT"}
BINANCE_BTC_STEP = D("0.00001")

#: every wait of the executor in milliseconds (the fakes answer on loopback)
FAST = {"hedge_timeout_seconds": 1.0, "hedge_retry_interval_seconds": 0.01, "lookup_interval_seconds": 0.02,
        "not_found_seconds": 0.3, "rate_limit_backoff_seconds": 0.02}


@contextlib.contextmanager
def fake_venues() -> Iterator[tuple[Any, Any]]:
    """Both fake servers, each on its own loop in a thread (the service under test runs its own loop)."""
    fu = upbit_fake.FakeUpbit()
    fb = binance_fake.FakeBinance(push_interval=0.05)
    with fu.in_thread(), fb.in_thread():
        yield fu, fb


def overlay(tmp_path: Path, fu: Any, fb: Any, *, websocket: bool = False, metrics_port: int | None = None,
            **live: Any) -> dict[str, Any]:
    return {
        "mode": "live", "mock_mode": False,
        "storage": {"backend": "csv", "csv": {"data_dir": str(tmp_path / "data")}},
        "redis": {"enabled": False},
        "fx": {"source": "static", "static_rate": 1350},
        "arbitrage": {"domestic": "upbit", "foreign": "binance", "symbols": ["BTC"], "use_tether": False,
                      "order_notional_krw": 1_000_000, "entry_threshold": 0.02, "exit_threshold": 0.005,
                      "cooldown_seconds": 0, "max_book_age_seconds": 30},
        "upbit": {"base_url": fu.base_url, "ws_url": fu.ws_url, "timeout_seconds": 0.5,
                  "use_websocket": websocket, **UPBIT_KEYS},
        "binance": {"base_url": fb.base_url, "ws_url": fb.ws_url, "timeout_seconds": 0.5,
                    "use_websocket": websocket, **BINANCE_KEYS},
        "live": {"confirm": True, **FAST, "reconcile_interval_minutes": 10, **live},
        "metrics_server": {"enabled": metrics_port is not None, "port": metrics_port or 8000},
        "service": {"instance_id": "live-e2e"},
    }


def run_service(tmp_path: Path, fu: Any, fb: Any, iterations: int, *, interval: float = 0.2,
                websocket: bool = False, **live: Any) -> int:
    """``arbframe run --mode live`` in process (the CLI's own entry: config, live gate, kernel, service loop)."""
    return run_kernel(tmp_path, fu, fb, iterations, interval=interval, websocket=websocket, **live)[0]


def run_kernel(tmp_path: Path, fu: Any, fb: Any, iterations: int, *, interval: float = 0.2,
               websocket: bool = False, metrics_port: int | None = None, **live: Any) -> tuple[int, Any]:
    """:func:`run_service`, also returning its kernel (its metrics registry outlives the run)."""
    cfg = overlay(tmp_path, fu, fb, websocket=websocket, metrics_port=metrics_port, **live)
    kernel = kernel_for_run(RunOptions(mode="live", mock=False), [], extra_overrides=cfg)
    return asyncio.run(run_loop(kernel, RunOptions(mode="live", max_iterations=iterations, interval=interval))), kernel


def totals(fake: Any) -> dict[str, D]:
    return {asset: sum(fake.balance(asset), D(0)) for asset in set(fake.balances) | set(fake.locked)}


def rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def stored_orders(tmp_path: Path) -> dict[str, Any]:
    from arbframe_storage_csv.storage import CsvStorage

    return latest_states(list(CsvStorage({"data_dir": str(tmp_path / "data")}).load_orders()))


def check(tmp_path: Path, fu: Any, fb: Any, start: dict[str, dict[str, D]], messages: list[str], *,
          residual: D = D(0)) -> dict[str, Any]:
    """The end state every scenario must reach (module docstring); returns the stored orders by client id."""
    orders = stored_orders(tmp_path)
    changes: dict[tuple[str, str], D] = {}
    for order in orders.values():
        assert order.status.value in ("filled", "canceled", "rejected"), f"not final: {order}"
        for key, amount in order_changes(order, QUOTES[order.exchange]).items():
            changes[key] = changes.get(key, D(0)) + amount
    for name, fake in (("upbit", fu), ("binance", fb)):
        now = totals(fake)
        for asset in set(now) | set(start[name]):
            expected = start[name].get(asset, D(0)) + changes.get((name, asset), D(0))
            assert now.get(asset, D(0)) == expected, f"{name} {asset}: venue {now.get(asset)}, storage {expected}"
    coin = sum((totals(f).get("BTC", D(0)) - start[n].get("BTC", D(0)) for n, f in (("upbit", fu), ("binance", fb))),
               D(0))
    # Binance takes a buy's fee in the coin: the buy is grossed up to the lot step, leaving up to a step of dust
    fees = sum((o.fee for o in orders.values() if o.fee_currency == "BTC"), D(0))
    assert abs(coin - residual) <= BINANCE_BTC_STEP + fees, f"net coin {coin}, expected residual {residual}"
    for name, fake in (("upbit", fu), ("binance", fb)):
        twice = [cid for cid, n in Counter(fake.placements).items() if n > 1]
        assert not twice, f"{name} received client order ids twice: {twice}"
    assert not set(fu.placements) & set(fb.placements), "a client order id reached both venues"
    assert set(orders) >= set(fu.placements) | set(fb.placements), "a venue saw an order the storage does not know"
    text = "\n".join(messages)
    for order in orders.values():
        assert f"[{order.client_order_id}]: {order.status.value}" in text, f"no log line for {order.client_order_id}"
    return orders


@pytest.fixture
def venues() -> Iterator[tuple[Any, Any, dict[str, dict[str, D]]]]:
    with fake_venues() as (fu, fb):
        yield fu, fb, {"upbit": totals(fu), "binance": totals(fb)}


def messages_of(caplog: Any) -> list[str]:
    return [r.getMessage() for r in caplog.records]


def test_both_legs_fill(tmp_path: Path, venues: Any, caplog: Any) -> None:
    caplog.set_level("INFO")
    fu, fb, start = venues
    assert run_service(tmp_path, fu, fb, 3) == 0
    messages = messages_of(caplog)
    orders = check(tmp_path, fu, fb, start, messages)
    assert sorted(o.status.value for o in orders.values()) == ["filled", "filled"], messages
    positions = {p["id"]: p for p in rows(tmp_path / "data" / "positions.csv")}
    assert [(p["symbol"], p["status"]) for p in positions.values()] == [("BTC", "open")]
    assert any(m.startswith("[BOT] ENTRY kimchi BTC") for m in messages)
    assert any("[EXEC] open kimchi BTC" in m and ": filled, hedged" in m for m in messages)


def wait_for(predicate: Any, what: str, timeout: float = 20.0) -> None:
    """Poll ``predicate`` (a file the service writes, a fake's state) until it holds; bounded."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def order_rows(tmp_path: Path) -> list[dict[str, str]]:
    return rows(tmp_path / "data" / "orders.csv")


def hedge_line(messages: list[str], purpose: str = "open") -> str:
    return next(m for m in messages if m.startswith(f"[EXEC] {purpose} ") and " hedged " in m)


def test_one_leg_rejected_unwinds_the_other(tmp_path: Path, venues: Any, caplog: Any) -> None:
    """Binance refuses every buy: the hedge retries it until ``hedge_timeout_seconds``, then buys back on Upbit
    what the Upbit leg sold (net zero coin; the cost is recorded on a zero-quantity position)."""
    caplog.set_level("INFO")
    fu, fb, start = venues
    fb.inject("reject", 1000, side="buy")
    assert run_service(tmp_path, fu, fb, 2, hedge_timeout_seconds=0.3) == 0
    messages = messages_of(caplog)
    orders = check(tmp_path, fu, fb, start, messages)
    kinds = Counter((o.exchange, o.status.value) for o in orders.values())
    assert kinds[("binance", "rejected")] >= 2 and kinds[("upbit", "filled")] == 2, kinds  # the leg and the unwind
    assert "unwound" in hedge_line(messages), messages
    assert any("unwinding" in m and "on upbit" in m for m in messages)
    positions = {p["id"]: p for p in rows(tmp_path / "data" / "positions.csv")}
    assert [p["close_reason"] for p in positions.values()] == ["open_unwound"]


def test_one_leg_partial_is_completed_by_a_hedge_retry(tmp_path: Path, venues: Any, caplog: Any) -> None:
    caplog.set_level("INFO")
    fu, fb, start = venues
    fb.inject("partial", 1, side="buy", fraction="0.5")
    assert run_service(tmp_path, fu, fb, 3) == 0
    messages = messages_of(caplog)
    orders = check(tmp_path, fu, fb, start, messages)
    binance = sorted(cid[-5:] for cid, o in orders.items() if o.exchange == "binance")
    assert binance == ["-ofh1", "-ofn0"], orders  # the first order (half filled) and one hedge retry
    assert ": filled, hedged" in hedge_line(messages)
    positions = {p["id"]: p for p in rows(tmp_path / "data" / "positions.csv")}
    assert [p["status"] for p in positions.values()] == ["open"]


@pytest.mark.parametrize("venue", ["upbit", "binance"])
def test_accept_then_timeout_is_looked_up_not_resent(tmp_path: Path, venues: Any, caplog: Any, venue: str) -> None:
    """The order fills but its answer comes after the driver's timeout: it is looked up by client id (by the
    driver, or by the executor once ``unknown``) and found filled; nothing is sent again for that leg."""
    caplog.set_level("INFO")
    fu, fb, start = venues
    fake = fu if venue == "upbit" else fb
    fake.inject("accept_then_timeout", 1, delay=3.0)
    assert run_service(tmp_path, fu, fb, 3) == 0
    messages = messages_of(caplog)
    orders = check(tmp_path, fu, fb, start, messages)
    assert sorted(o.status.value for o in orders.values()) == ["filled", "filled"], messages
    assert len(fake.placements) == 1  # looked up by client id, never resent
    lookups = [r for r in fake.requests if r in (("GET", "/v1/order"), ("GET", "/api/v3/order"))]
    assert lookups, fake.requests
    assert any("outcome unknown" in m or ": unknown (" in m or "looking it up" in m for m in messages), messages
    assert ": filled, hedged" in hedge_line(messages)


def test_server_error_after_accept_is_looked_up(tmp_path: Path, venues: Any, caplog: Any) -> None:
    """Binance fills the buy, then answers HTTP 500: the fill (and its commission, in BTC) is found by look-up."""
    caplog.set_level("INFO")
    fu, fb, start = venues
    fb.inject("error_after_accept", 1, status=500)
    assert run_service(tmp_path, fu, fb, 3) == 0
    messages = messages_of(caplog)
    orders = check(tmp_path, fu, fb, start, messages)
    assert sorted(o.status.value for o in orders.values()) == ["filled", "filled"], messages
    assert len(fb.placements) == 1 and ("GET", "/api/v3/order") in fb.requests  # looked up, never resent
    assert any("outcome unknown" in m or ": unknown (" in m for m in messages), messages


@pytest.mark.parametrize("venue", ["upbit", "binance"])
def test_rate_limited_order_is_resent_with_the_same_id(tmp_path: Path, venues: Any, caplog: Any, venue: str) -> None:
    """429 on one leg's order endpoint while the other leg fills: the same request (same client id) goes again
    after Retry-After (Binance) or the back-off (Upbit sends none), and is placed once."""
    caplog.set_level("INFO")
    fu, fb, start = venues
    if venue == "upbit":
        fu.inject("rate_limited", 2, path="/v1/orders")
    else:
        fb.inject("rate_limited", 2, path="/api/v3/order", retry_after=0.05)
    assert run_service(tmp_path, fu, fb, 3) == 0
    messages = messages_of(caplog)
    orders = check(tmp_path, fu, fb, start, messages)
    assert sorted(o.status.value for o in orders.values()) == ["filled", "filled"], messages
    fake = fu if venue == "upbit" else fb
    path = "/v1/orders" if venue == "upbit" else "/api/v3/order"
    assert fake.requests.count(("POST", path)) == 3 and len(fake.placements) == 1  # two 429s, then placed once
    assert ": filled, hedged" in hedge_line(messages)


def test_rate_limited_mid_hedge_resends_the_hedge_order_once(tmp_path: Path, venues: Any, caplog: Any) -> None:
    """The Binance leg fills half; the hedge retry for the other half meets two 429s (``skip=1``: the leg's own
    order passes): the same retry (same client id) is placed once after Retry-After and completes the hedge."""
    caplog.set_level("INFO")
    fu, fb, start = venues
    fb.inject("partial", 1, side="buy", fraction="0.5")
    fb.inject("rate_limited", 2, path="/api/v3/order", retry_after=0.05, skip=1)
    assert run_service(tmp_path, fu, fb, 3) == 0
    messages = messages_of(caplog)
    orders = check(tmp_path, fu, fb, start, messages)
    assert sorted(cid[-5:] for cid, o in orders.items() if o.exchange == "binance") == ["-ofh1", "-ofn0"], orders
    assert fb.requests.count(("POST", "/api/v3/order")) == 4 and len(fb.placements) == 2  # 1 + (2 x 429 + 1)
    assert ": filled, hedged" in hedge_line(messages)


def test_dry_run_never_fills_through_the_test_endpoints(tmp_path: Path, venues: Any, caplog: Any) -> None:
    caplog.set_level("INFO")
    fu, fb, start = venues
    assert run_service(tmp_path, fu, fb, 3, dry_run=True) == 0
    messages = messages_of(caplog)
    assert fu.orders == {} and fb.orders == {} and fu.placements == [] and fb.placements == []
    assert {"upbit": totals(fu), "binance": totals(fb)} == start
    assert fu.test_orders and ("POST", "/api/v3/order/test") in fb.requests
    assert ("POST", "/v1/orders") not in fu.requests and ("POST", "/api/v3/order") not in fb.requests
    assert any("rehearsed" in m for m in messages) and any("DRY RUN" in m for m in messages)
    assert [p for p in rows(tmp_path / "data" / "positions.csv") if p["status"] == "open"] == []


def write_overlay(tmp_path: Path, cfg: dict[str, Any]) -> Path:
    path = tmp_path / "overlay.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def cli_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg"), "PYTHONUNBUFFERED": "1"}


def test_kill_9_between_the_legs_then_restart_reconciles(tmp_path: Path, venues: Any, caplog: Any) -> None:
    """A real ``arbframe run --mode live`` subprocess is SIGKILLed after the Upbit leg filled and was stored while
    the Binance order request is held by the fake (a ``timeout`` fault on ``POST /api/v3/order``, longer than the
    test; the driver's own timeout is longer than the wait for the Upbit row, so nothing else happens first). The
    restarted service reconciles: the Binance order (stored ``sent``) was never placed, the hedge was never
    recorded, the Upbit excess is unwound; then it trades again."""
    caplog.set_level("INFO")
    fu, fb, start = venues
    fb.inject("timeout", 1, path="/api/v3/order", delay=60.0)
    cfg = overlay(tmp_path, fu, fb)
    cfg["binance"]["timeout_seconds"] = 30
    config = write_overlay(tmp_path, cfg)
    out = (tmp_path / "first.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "arbframe", "run", "--mode", "live", "--config", str(config),
                             "--interval", "0.2", "--max-iterations", "200"], cwd=tmp_path, env=cli_env(tmp_path),
                            stdout=out, stderr=subprocess.STDOUT)
    try:
        def upbit_leg_stored() -> bool:
            assert proc.poll() is None, (tmp_path / "first.log").read_text()
            return any(r["exchange"] == "upbit" and r["status"] == "filled" for r in order_rows(tmp_path))

        wait_for(upbit_leg_stored, "the Upbit leg stored filled", 60)
        assert ("POST", "/api/v3/order") in fb.requests and fb.placements == []  # the Binance request is held
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        out.close()
    first = (tmp_path / "first.log").read_text()
    assert "[EXEC] upbit sell" in first and ": filled" in first
    before = {r["client_order_id"]: r["status"] for r in order_rows(tmp_path)}
    assert sorted(before.values()) == ["filled", "sent"], before  # upbit filled, binance sent: nothing settled
    assert rows(tmp_path / "data" / "positions.csv") == []

    assert run_service(tmp_path, fu, fb, 3) == 0
    messages = messages_of(caplog)
    recon = [m for m in messages if m.startswith("[RECON]")]
    assert any("binance buy" in m and "never placed" in m for m in recon), recon
    assert any("was not recorded" in m and "unwinding the excess on upbit" in m for m in recon), recon
    done = next(i for i, m in enumerate(messages) if m.startswith("[RECON] start-up reconciliation done"))
    entry = next(i for i, m in enumerate(messages) if m.startswith("[BOT] ENTRY kimchi BTC"))
    assert done < entry  # settled before trading again
    check(tmp_path, fu, fb, start, first.splitlines() + messages)
    positions = {p["id"]: p for p in rows(tmp_path / "data" / "positions.csv")}
    assert sorted(p["status"] for p in positions.values()) == ["closed", "open"], positions


def test_kill_switch_mid_hedge_stops_retries_and_unwinds(tmp_path: Path, venues: Any, caplog: Any) -> None:
    """Binance refuses every buy, so the hedge keeps retrying its leg (``hedge_timeout_seconds`` is long); ``arbframe
    kill`` (a real subprocess on the same store) trips the switch: the running service takes it within a tick,
    the hedge stops retrying and unwinds the Upbit excess at once, and no entry follows."""
    caplog.set_level("INFO")
    fu, fb, start = venues
    fb.inject("reject", 10_000, side="buy")
    result: list[int] = []
    service = threading.Thread(target=lambda: result.append(run_service(
        tmp_path, fu, fb, 40, interval=0.1, hedge_timeout_seconds=20, hedge_retry_interval_seconds=0.05)))
    service.start()
    try:
        wait_for(lambda: sum(r["exchange"] == "binance" and r["status"] == "rejected"
                             for r in order_rows(tmp_path)) >= 2, "a hedge retry on Binance", 30)
        config = write_overlay(tmp_path, {"storage": {"backend": "csv", "csv": {"data_dir": str(tmp_path / "data")}}})
        kill = subprocess.run([sys.executable, "-m", "arbframe", "kill", "--reason", "e2e incident", "--config",
                               str(config)], cwd=tmp_path, env=cli_env(tmp_path), capture_output=True, timeout=60)
        assert kill.returncode == 0, kill.stdout + kill.stderr
    finally:
        service.join(60)
    assert result == [0]
    messages = messages_of(caplog)
    check(tmp_path, fu, fb, start, messages)
    assert any("kill switch tripped" in m and "e2e incident" in m for m in messages), messages
    assert any("kill switch tripped: no more hedge orders, unwinding the excess on upbit" in m for m in messages)
    assert "unwound" in hedge_line(messages)
    assert len([m for m in messages if m.startswith("[BOT] ENTRY")]) == 1
    positions = {p["id"]: p for p in rows(tmp_path / "data" / "positions.csv")}
    assert [p["close_reason"] for p in positions.values()] == ["open_unwound"]


def test_websocket_drop_mid_position_then_close(tmp_path: Path, venues: Any, caplog: Any) -> None:
    """Books from both venues' WebSockets; once the position is open both fakes close every WebSocket client and
    the Upbit price falls to the Binance price (premium about zero): the streams reconnect (REST meanwhile), the
    position closes with both legs filled, and the books balance."""
    caplog.set_level("INFO")
    fu, fb, start = venues
    result: list[int] = []
    service = threading.Thread(target=lambda: result.append(run_service(tmp_path, fu, fb, 30, interval=0.1,
                                                                         websocket=True)))
    service.start()
    try:
        wait_for(lambda: any(p["status"] == "open" for p in rows(tmp_path / "data" / "positions.csv")),
                 "the position open", 30)
        connections = (fu.ws_connections, len(fb.connections))
        for fake in (fu, fb):
            assert asyncio.run_coroutine_threadsafe(fake.drop_ws(), fake._loop).result(5) >= 1
        fu._loop.call_soon_threadsafe(fu.set_mid, "BTC", 135_000_000)
        wait_for(lambda: any(p["status"] == "closed" for p in rows(tmp_path / "data" / "positions.csv")),
                 "the position closed", 30)
    finally:
        service.join(60)
    assert result == [0]
    messages = messages_of(caplog)
    check(tmp_path, fu, fb, start, messages)
    assert fu.ws_connections > connections[0] and len(fb.connections) > connections[1]  # both reconnected
    assert ": filled, hedged" in hedge_line(messages, "close"), messages
    latest = {p["id"]: p for p in rows(tmp_path / "data" / "positions.csv")}
    assert [p["status"] for p in latest.values()] == ["closed"]


def http_json(url: str) -> Any:
    import json
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as exc:  # /health answers 503 while a check is ERROR (the kill switch)
        return json.loads(exc.read())
    except (urllib.error.URLError, ConnectionError):
        return None


def command(*argv: str) -> int:
    """An ``arbframe`` sub-command as the CLI runs it, in process (the test's log capture stays)."""
    from arbframe.cli import build_parser

    args = build_parser(argv[0]).parse_args(list(argv))
    return int(args.handler(args))


def test_hedge_and_unwind_both_refused_leave_a_residual_that_survives_a_restart(tmp_path: Path, venues: Any,
                                                                                  caplog: Any, capsys: Any) -> None:
    """Binance refuses every buy (the hedge retries its leg for ``hedge_timeout_seconds``) and Upbit refuses every
    buy too, so the unwind (buying back on Upbit what its leg sold) cannot complete either: the entry ends short
    on Upbit. The residual is recorded, exported and shown in ``/health``, trips the kill switch, blocks entries,
    and a restarted service restores it before anything else; the fakes' balances equal the stored orders and the
    net coin equals the residual. Flattened by hand on the venue and ``arbframe resume --flattened``: it is gone
    and the next run trades."""
    from arbframe.testing.redis_server import free_port

    caplog.set_level("INFO")
    fu, fb, start = venues
    fb.inject("reject", 100_000, side="buy")
    fu.inject("reject", 100_000, side="buy")
    port = free_port()
    health: list[Any] = []
    result: list[int] = []
    service = threading.Thread(target=lambda: result.append(run_kernel(
        tmp_path, fu, fb, 40, interval=0.1, metrics_port=port, hedge_timeout_seconds=0.3)[0]))
    service.start()
    try:
        def residual_in_health() -> bool:
            report = http_json(f"http://127.0.0.1:{port}/health")
            checks = {c["component"]: c for c in (report or {}).get("checks", [])}
            execution = checks.get("execution", {})
            if "BTC" in execution.get("details", {}).get("residual_exposure", ""):
                health.append(execution)
                return True
            return False

        wait_for(residual_in_health, "the residual in /health", 30)
        metrics = urllib_text(f"http://127.0.0.1:{port}/metrics")
    finally:
        service.join(60)
    assert result == [0]
    messages = messages_of(caplog)
    line = hedge_line(messages)
    assert ": unwound, hedged 0 of " in line and " residual -" in line and " BTC on upbit" in line, line
    qty = D(line.split(" residual -")[1].split(" ")[0])
    # the entry: 1,000,000 KRW / 148,000,000 = 0.0067567... BTC, down to Binance's 0.00001 lot: 0.00675, sold on
    # Upbit at the decision VWAP: its best bid, the 148,000,000 mid less one price unit (1,000 KRW at this price)
    krw = qty * 147_999_000
    assert (qty, krw) == (D("0.00675"), D("998993.25")), (qty, krw)
    orders = check(tmp_path, fu, fb, start, messages, residual=-qty)
    assert sum(o.exchange == "upbit" and o.status.value == "rejected" for o in orders.values()) >= 2  # unwinds
    # exported, alerted, blocking: the kill switch tripped on it and no entry followed. A running service marks it
    # to market: at the coin mark, the mid of Upbit's book, 148,000,000: 0.00675 x 148,000,000 = 999,000 KRW
    marked = qty * 148_000_000
    assert marked == D("999000")
    assert f"arbframe_residual_exposure_krw {float(marked)}" in metrics, metrics
    assert health[0]["status"] == "ERROR" and health[0]["details"]["residual_exposure"] == \
        "BTC -0.00675 (upbit -0.00675) = 999,000 KRW at 148000000 (market mark)"
    assert any("kill switch tripped automatically: residual exposure 999,000 KRW" in m for m in messages)
    assert len([m for m in messages if m.startswith("[BOT] ENTRY")]) == 1
    record = yaml.safe_load((tmp_path / "data" / "control" / "residual.upbit-binance-BTC.json").read_text())
    assert [(r["venue"], r["coin"], r["mark_krw"]) for r in record["residuals"]] == [("upbit", "-0.00675", "147999000")]

    # a restart: the residual is known before the first tick, entries stay blocked (kill switch or not)
    first = messages
    caplog.clear()
    assert command("resume", "--config", str(write_overlay(tmp_path, overlay(tmp_path, fu, fb)))) == 0
    assert "residual exposure: 998,993 KRW (live.max_residual_krw=50000: entries blocked)" in capsys.readouterr().out
    rc, kernel = run_kernel(tmp_path, fu, fb, 5, interval=0.1)
    assert rc == 0
    messages = messages_of(caplog)
    recon = [m for m in messages if m.startswith("[RECON]")]
    assert recon[0].startswith("[RECON] residual exposure BTC -0.00675 on upbit (short: buy 0.00675 there to flatten; "
                               "-998,993 KRW at 147999000; hedge "), recon
    assert any(m.startswith("[RECON] start-up reconciliation done: 0 hedge(s) settled; entries blocked: residual "
                            "exposure 998,993 KRW") for m in recon), recon
    # before the first tick no book is known: the figure is the hedge's price; then the market mark again
    assert kernel.registry.get_sample_value("arbframe_residual_exposure_krw") == float(marked)
    assert kernel.registry.get_sample_value("arbframe_execution_entries_paused") == 1
    assert not any(m.startswith("[BOT] ENTRY") for m in messages)
    assert any("entry on BTC blocked: residual exposure 998,993 KRW" in m for m in messages), messages
    check(tmp_path, fu, fb, start, first + messages, residual=-qty)

    # flattened by hand (bought back on Upbit), then `arbframe resume --flattened`: gone; the next run trades
    fu.clear()
    fb.clear()
    bought = fu.place_limit("BTC", "buy", 150_000_000, qty, "by-hand-1")
    assert bought.filled_qty == qty
    caplog.clear()
    config = write_overlay(tmp_path, overlay(tmp_path, fu, fb))
    assert command("resume", "--flattened", "--config", str(config)) == 0
    assert "residual exposure cleared (flattened by hand): 998,993 KRW" in capsys.readouterr().out
    rc, kernel = run_kernel(tmp_path, fu, fb, 3, interval=0.1)
    assert rc == 0
    messages = messages_of(caplog)
    assert not any("residual exposure BTC" in m for m in messages if m.startswith("[RECON]"))
    assert kernel.registry.get_sample_value("arbframe_residual_exposure_krw") == 0
    assert any(m.startswith("[BOT] ENTRY kimchi BTC") for m in messages)


def urllib_text(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as answer:
        return str(answer.read().decode())


@pytest.mark.parametrize("venue", ["upbit", "binance"])
def test_driver_gives_up_then_the_executor_looks_the_order_up_until_known(tmp_path: Path, venues: Any,
                                                                           caplog: Any, venue: str) -> None:
    """The executor's own ``unknown`` path: the order fills but its answer comes after the driver's timeout
    (``accept_then_timeout``), and the venue's order look-up answers 503 six times (``unavailable`` on the look-up
    path; Binance's order endpoint shares it with the POST, which ``skip=1`` lets pass). The driver's own two
    look-ups fail, so it raises the taxonomy's ``OrderStatusUnknown``; the executor stores ``unknown`` and queries
    by client id until the venue answers (four more failures, then ``filled``): one placement, never resent."""
    caplog.set_level("INFO")
    fu, fb, start = venues
    fake = fu if venue == "upbit" else fb
    fake.inject("accept_then_timeout", 1, delay=3.0)
    if venue == "upbit":
        fu.inject("unavailable", 6, path="/v1/order")
        driver = {"order_lookup_attempts": 2, "order_lookup_delay_seconds": 0.01, "max_retries": 0}
    else:
        fb.inject("unavailable", 6, path="/api/v3/order", skip=1)
        driver = {"order_lookup_attempts": 2, "order_lookup_interval_seconds": 0.01, "max_retries": 0}
    cfg = overlay(tmp_path, fu, fb)
    cfg[venue].update(driver)
    kernel = kernel_for_run(RunOptions(mode="live", mock=False), [], extra_overrides=cfg)
    assert asyncio.run(run_loop(kernel, RunOptions(mode="live", max_iterations=3, interval=0.2))) == 0
    messages = messages_of(caplog)
    orders = check(tmp_path, fu, fb, start, messages)
    assert sorted(o.status.value for o in orders.values()) == ["filled", "filled"], messages
    [cid] = fake.placements  # placed once; never resent
    states = [r["status"] for r in order_rows(tmp_path) if r["client_order_id"] == cid]
    assert states == ["sent", "unknown", "filled"], states
    lookup = ("GET", "/v1/order") if venue == "upbit" else ("GET", "/api/v3/order")
    assert fake.requests.count(lookup) == 7  # 2 by the driver, 5 by the executor: 6 answered 503, the 7th found it
    ours = [m for m in messages if f"[{cid}]" in m]
    assert ours[0].endswith(f"[{cid}]: sent")
    assert f"[{cid}]: unknown (order_status_unknown: " in ours[1] and ours[1].endswith("looking it up by client id)")
    retries = ours[2:-1]
    assert [m for m in retries if "lookup failed (VenueUnavailable" in m and m.endswith("trying again")] == retries
    assert len(retries) == 4 and f"[{cid}]: filled " in ours[-1], ours
    assert ": filled, hedged" in hedge_line(messages)
    assert kernel.registry.get_sample_value("arbframe_execution_unresolved_orders") == 0
    assert kernel.registry.get_sample_value("arbframe_execution_orders_total",
                                            {"exchange": venue, "status": "unknown"}) == 1
