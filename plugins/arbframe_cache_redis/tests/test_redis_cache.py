"""RedisCache against a throwaway redis-server: the contract kit, the key layout, TTLs and degradation."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from arbframe_cache_redis.cache import RedisCache, format_rate
from prometheus_client import CollectorRegistry

from arbframe import FxRate, PluginContext
from arbframe.testing.cache_kit import CacheContract
from arbframe.testing.redis_server import free_port, redis_server  # noqa: F401  (fixture)

pytestmark = pytest.mark.redis

T0 = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc)


def _context(tmp_path=None, service="bot_service") -> PluginContext:
    return PluginContext(config={}, pm=None, registry=CollectorRegistry(), data_dir=tmp_path, service_name=service)


def _errors(ctx: PluginContext, op: str) -> float:
    return ctx.registry.get_sample_value("arbframe_cache_errors_total", {"backend": "redis", "op": op}) or 0.0


def _writes(ctx: PluginContext) -> float:
    return ctx.registry.get_sample_value("arbframe_cache_writes_total", {"backend": "redis"}) or 0.0


class TestRedisCacheContract(CacheContract):
    @pytest.fixture(autouse=True)
    def _server(self, redis_server):  # noqa: F811
        self.server = redis_server

    def make_cache(self, prefix):
        return RedisCache({"url": self.server.url, "prefix": prefix}, None)

    def make_unreachable_cache(self, prefix):
        return RedisCache(
            {"url": f"redis://127.0.0.1:{free_port()}/0", "prefix": prefix, "socket_timeout_seconds": 0.3}, None
        )


# --------------------------------------------------------------------------------------------- key layout
def test_values_as_redis_cli_shows_them(redis_server):  # noqa: F811
    cache = RedisCache({"url": redis_server.url, "prefix": "arb", "health_ttl_seconds": 60}, _context())
    fx = FxRate(id="fx-1", ts=T0, rate=Decimal("1350.0"), source="static")
    assert cache.write_tick(
        fx=(fx, 60),
        heartbeat=("bot_service", T0, 60),
        spreads={"BTC": {"symbol": "BTC", "premium": Decimal("0.031")}},
    )
    assert redis_server.cli("GET", "arb:fx:usdkrw") == "1350.0"
    meta = json.loads(redis_server.cli("GET", "arb:fx:usdkrw:meta"))
    assert meta["rate"] == "1350.0" and meta["source"] == "static" and meta["id"] == "fx-1"
    assert meta["ts"] == "2026-01-02T03:04:05.123456+00:00"
    assert redis_server.cli("GET", "arb:heartbeat:bot_service") == "2026-01-02T03:04:05.123456+00:00"
    spread = json.loads(redis_server.cli("GET", "arb:spread:BTC"))
    assert spread["premium"] == "0.031" and spread["source"] == "bot_service" and "ts" in spread
    assert sorted(redis_server.cli("KEYS", "arb:*").split()) == [
        "arb:fx:usdkrw", "arb:fx:usdkrw:meta", "arb:heartbeat:bot_service", "arb:spread:BTC",
    ]
    cache.close()


def test_ttls_as_configured(redis_server):  # noqa: F811
    cache = RedisCache({"url": redis_server.url, "prefix": "arb"}, None)
    fx = FxRate(id="x", ts=T0, rate=Decimal("1350"), source="static")
    cache.write_tick(fx=(fx, 45), heartbeat=("bot_service", T0, 45), spreads={"BTC": {}})
    for key in ("arb:fx:usdkrw", "arb:fx:usdkrw:meta", "arb:heartbeat:bot_service"):
        assert 40 <= int(redis_server.cli("TTL", key)) <= 45, key
    assert 55 <= int(redis_server.cli("TTL", "arb:spread:BTC")) <= 60  # seed: spread snapshots fixed 60 s
    cache.close()


def test_rate_formatting():
    assert format_rate(Decimal("1350")) == "1350.0"
    assert format_rate(Decimal("1350.0")) == "1350.0"
    assert format_rate(Decimal("1.38725E+3")) == "1387.25"
    assert format_rate(Decimal("1387.123456789")) == "1387.123456789"
    assert format_rate(Decimal("1350.00")) == "1350.0"
    assert format_rate(Decimal("1387.10")) == "1387.1"


def test_exact_rate_survives_the_plain_key_formatting(redis_server):  # noqa: F811
    cache = RedisCache({"url": redis_server.url}, None)
    cache.set_fx_rate(FxRate(id="c", ts=T0, rate=Decimal("1350.00"), source="simulated"), 60)
    assert redis_server.cli("GET", "arb:fx:usdkrw") == "1350.0"
    assert str(cache.get_fx_rate().rate) == "1350.00"
    cache.close()


def test_rate_set_by_hand_is_read_as_external(redis_server):  # noqa: F811
    cache = RedisCache({"url": redis_server.url}, None)
    cache.set_fx_rate(FxRate(id="fx-1", ts=T0, rate=Decimal("1350.0"), source="static"), 60)
    redis_server.cli("SET", "arb:fx:usdkrw", "1400")
    got = cache.get_fx_rate()
    assert got.rate == Decimal("1400") and got.source == "external"
    redis_server.cli("SET", "arb:fx:usdkrw", "not a number")
    assert cache.get_fx_rate() is None
    cache.close()


def test_one_round_trip_per_tick(redis_server):  # noqa: F811
    ctx = _context()
    cache = RedisCache({"url": redis_server.url}, ctx)
    fx = FxRate(id="x", ts=T0, rate=Decimal("1350"), source="static")
    before = int(redis_server.cli("INFO", "stats").split("total_commands_processed:")[1].split()[0])
    assert cache.write_tick(
        fx=(fx, 60), heartbeat=("bot_service", T0, 60), spreads={s: {"symbol": s} for s in ("BTC", "ETH", "XRP")}
    )
    after = int(redis_server.cli("INFO", "stats").split("total_commands_processed:")[1].split()[0])
    # 2 fx keys + heartbeat + 3 spreads (+ the connection handshake and the first INFO itself)
    assert 6 <= after - before <= 12
    assert _writes(ctx) == 1.0
    cache.close()


# -------------------------------------------------------------------------------------------- degradation
def test_server_down_counts_backs_off_warns_rarely_and_recovers(redis_server, caplog):  # noqa: F811
    caplog.set_level(logging.INFO, logger="arbframe.cache.redis")
    clock = [100.0]
    ctx = _context()
    cache = RedisCache(
        {"url": redis_server.url, "backoff_initial_seconds": 1, "backoff_max_seconds": 4, "warn_interval_seconds": 30},
        ctx,
        monotonic=lambda: clock[0],
    )
    fx = FxRate(id="x", ts=T0, rate=Decimal("1350"), source="static")
    assert cache.write_tick(fx=(fx, 60), heartbeat=("bot_service", T0, 60))
    redis_server.stop()
    for _ in range(50):  # 50 ticks while down: every one returns at once, one warning only
        started = time.monotonic()
        assert cache.write_tick(fx=(fx, 60), heartbeat=("bot_service", T0, 60)) is False
        assert time.monotonic() - started < 1.0
        clock[0] += 0.1
    assert cache.degraded
    assert _errors(ctx, "tick") == 50
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "ticks continue" in warnings[0].getMessage()
    assert cache.get_fx_rate() is None
    redis_server.start()  # empty server on the same port
    clock[0] += 5  # past the longest backoff
    assert cache.write_tick(fx=(fx, 60), heartbeat=("bot_service", T0, 60)) is True
    assert not cache.degraded
    assert cache.get_heartbeat("bot_service") == T0
    assert any("reachable again" in r.getMessage() for r in caplog.records)
    cache.close()


def test_backoff_grows_then_caps(redis_server):  # noqa: F811
    clock = [0.0]
    cache = RedisCache(
        {"url": redis_server.url, "backoff_initial_seconds": 0.5, "backoff_max_seconds": 2},
        None, monotonic=lambda: clock[0],
    )
    redis_server.stop()
    delays = []
    for _ in range(5):
        cache.set_heartbeat("s", T0, 60)
        delays.append(cache._retry_at - clock[0])
        clock[0] = cache._retry_at
    assert delays == [0.5, 1.0, 2.0, 2.0, 2.0]
    cache.close()


def test_ping_probes_even_while_backing_off(redis_server):  # noqa: F811
    clock = [0.0]
    cache = RedisCache({"url": redis_server.url, "backoff_initial_seconds": 100}, None, monotonic=lambda: clock[0])
    redis_server.stop()
    assert cache.set_heartbeat("s", T0, 60) is False
    redis_server.start()
    assert cache.set_heartbeat("s", T0, 60) is False  # still backing off
    assert cache.ping() is True  # explicit probe ends the outage
    assert cache.set_heartbeat("s", T0, 60) is True
    cache.close()


def test_a_silent_server_cannot_hold_a_tick_longer_than_the_timeout():
    """A peer that accepts connections and never answers (a hung server, a black-holed network)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        port = listener.getsockname()[1]
        cache = RedisCache({"url": f"redis://127.0.0.1:{port}/0", "socket_timeout_seconds": 0.2}, None)
        fx = FxRate(id="x", ts=T0, rate=Decimal("1350"), source="static")
        started = time.monotonic()
        assert cache.write_tick(fx=(fx, 60), heartbeat=("s", T0, 60)) is False
        assert time.monotonic() - started < 0.2 * 3 + 0.3
        started = time.monotonic()
        assert cache.get_fx_rate() is None  # backing off now: immediate
        assert time.monotonic() - started < 0.05
        cache.close()
    finally:
        stop.set()
        thread.join(timeout=2)
        for s in held:
            s.close()
        listener.close()


def test_missing_redis_py_leaves_an_unavailable_cache(monkeypatch, caplog):
    import builtins

    real_import = builtins.__import__

    def no_redis(name, *args, **kwargs):
        if name == "redis" or name.startswith("redis."):
            raise ImportError("No module named 'redis'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_redis)
    caplog.set_level(logging.WARNING, logger="arbframe.cache.redis")
    ctx = _context()
    cache = RedisCache({"url": "redis://:hunter2@localhost:1/0"}, ctx)
    assert cache.available is False
    assert "pip install redis" in caplog.text
    assert cache.set_fx_rate(FxRate(id="x", ts=T0, rate=Decimal(1), source="s"), 60) is False
    assert cache.get_fx_rate() is None and cache.ping() is False
    assert "redis-py missing" in cache.describe()
    assert "hunter2" not in caplog.text and "hunter2" not in cache.describe()
    assert _errors(ctx, "fx") == 1


def test_bad_url_is_a_config_error():
    from arbframe import ConfigError

    with pytest.raises(ConfigError, match=r"redis\.url"):
        RedisCache({"url": "http://:secret@x/0"}, None)
    try:
        RedisCache({"url": "http://:secret@x/0"}, None)
    except ConfigError as exc:
        assert "secret" not in str(exc)


def test_password_is_masked_in_describe_and_warnings(caplog):
    caplog.set_level(logging.WARNING, logger="arbframe.cache.redis")
    cache = RedisCache({"url": f"redis://:s3cret@127.0.0.1:{free_port()}/0", "socket_timeout_seconds": 0.2}, None)
    assert "s3cret" not in cache.describe()
    cache.set_heartbeat("s", T0, 60)
    assert "Redis at redis://:***@127.0.0.1" in caplog.text
    assert "s3cret" not in caplog.text
    cache.close()


def test_spread_snapshot_with_unencodable_value_fails_softly(redis_server):  # noqa: F811
    cache = RedisCache({"url": redis_server.url}, None)
    circular: dict = {}
    circular["self"] = circular
    assert cache.set_spread_snapshot("BTC", circular) is False
    assert cache.write_tick(spreads={"BTC": circular}) is False
    assert not cache.degraded  # a data error is not an outage
    assert cache.set_heartbeat("s", T0 + timedelta(seconds=1), 60) is True
    cache.close()
