"""The real Prometheus and exporter binaries (Debian packages) against arbframe's /metrics and throwaway servers."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from arbframe.service.metrics_server import MetricsServer
from arbframe.testing.prometheus_server import (
    PostgresExporter,
    PrometheusServer,
    RedisExporter,
    free_port,
    http_get,
    metric_values,
    missing_reason,
    skip_or_fail,
    start_or_skip,
    wait_until,
)
from arbframe.trading.statistics import TradingMetrics

pytest.importorskip("aiohttp")

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"

pytestmark = pytest.mark.slow


class ThreadedServer:
    """A MetricsServer on its own event loop in a thread, so blocking test code can scrape it."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = MetricsServer(registry, port=0, cache_seconds=0)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> MetricsServer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        return self.server

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class RunningApp:
    """``arbframe run`` in a subprocess (mock market, CSV in a temp dir) with the metrics server on ``port``."""

    def __init__(self, workdir: Path, port: int, extra: dict | None = None, interval: float = 0.3) -> None:
        import yaml

        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        config = {
            "mock_mode": True,
            "storage": {"csv": {"data_dir": str(workdir / "data")}},
            "metrics_server": {"enabled": True, "host": "127.0.0.1", "port": port},
        }
        for key, value in (extra or {}).items():
            config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
        self.config_file = workdir / "app.yml"
        self.config_file.write_text(yaml.safe_dump(config))
        self.log = workdir / "run.log"
        env = {**os.environ, "XDG_CACHE_HOME": str(workdir / "xdg")}
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "arbframe", "run", "--config", str(self.config_file),
                 "--interval", str(interval)],
                cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"arbframe run exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            return http_get(self.url + "/ready", timeout=2)[0] == 200

        wait_until(ready, timeout, f"arbframe run to answer {self.url}/ready")

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def served_names(text: str) -> set[str]:
    """Every sample name a /metrics text can produce, including families announced without samples yet."""
    from prometheus_client.parser import text_string_to_metric_families

    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
                "summary": ("_count", "_sum", "_created"), "gauge": ("",), "info": ("_info",),
                "untyped": ("",), "unknown": ("",), "stateset": ("",), "gaugehistogram": ("_bucket",)}
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def _trading_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    metrics = TradingMetrics.get(registry)
    metrics.total_pnl.set(12345.0)
    metrics.premium.labels(symbol="BTC", direction="kimchi").set(0.031)
    metrics.tick_seconds.observe(0.002)
    metrics.ticks.inc()
    return registry


class Stack:
    """One Prometheus (first scrape of a new target takes ~5 s: its discovery throttle) scraping everything."""

    def __init__(self) -> None:
        self.skips: dict[str, str] = {}
        self.prometheus: PrometheusServer | None = None
        self.app: ThreadedServer | None = None
        self.postgres: object | None = None
        self.redis: object | None = None
        self.exporters: dict[str, PostgresExporter | RedisExporter] = {}
        self.run: RunningApp | None = None
        self.run_pg_redis: RunningApp | None = None  # PostgreSQL storage + Redis cache, scraped directly
        self.run_exit: list[int] = []
        self._cleanups: list[object] = []

    def need(self, part: str) -> None:
        if part in self.skips:
            skip_or_fail(self.skips[part])

    def close(self) -> None:
        for item in reversed(self._cleanups):
            try:
                item()  # type: ignore[operator]
            except Exception:  # cleanup must go on
                pass


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from arbframe.testing import postgres_server, redis_server

    st = Stack()
    reason = missing_reason("prometheus")
    if reason:
        skip_or_fail(reason)
    try:
        targets: dict[str, list[str]] = {}
        # the in-process metrics server (fixed port so Prometheus knows it before it starts)
        st.app = ThreadedServer(_trading_registry())
        st.app.server.port = free_port()
        targets["test-app"] = [f"127.0.0.1:{st.app.server.port}"]
        run_port = free_port()
        targets["arbitrage-metrics"] = [f"127.0.0.1:{run_port}"]  # the seed's job name
        # exporters against throwaway servers, where the binaries exist
        pg_reason = postgres_server.missing_reason() or missing_reason("prometheus-postgres-exporter")
        if pg_reason:
            st.skips["postgres"] = pg_reason
        else:
            st.exporters["postgres"] = PostgresExporter("postgresql://placeholder")
            targets["postgres-exporter"] = [st.exporters["postgres"].address]
        redis_reason = (None if redis_server.find_redis_server() else "redis-server not installed") or \
            missing_reason("prometheus-redis-exporter")
        if redis_reason:
            st.skips["redis"] = redis_reason
        else:
            st.exporters["redis"] = RedisExporter("redis://placeholder")
            targets["redis-exporter"] = [st.exporters["redis"].address]

        st.prometheus = PrometheusServer(targets, rule_files=[INFRA / "alerts.yml"]).start()
        st._cleanups.append(st.prometheus.cleanup)
        st.run = RunningApp(tmp_path_factory.mktemp("arbframe-run"), run_port)
        st._cleanups.append(lambda: st.run_exit.append(st.run.stop()))  # type: ignore[union-attr]
        st.app.__enter__()
        st._cleanups.append(lambda: st.app.__exit__(None, None, None))  # type: ignore[union-attr]
        if "postgres" in st.exporters:
            pg = postgres_server.PostgresServer().start()
            st._cleanups.append(pg.cleanup)
            st.postgres = pg
            exporter = st.exporters["postgres"]
            exporter.extra_env["DATA_SOURCE_NAME"] = pg.dsn + "?sslmode=disable"
            st._cleanups.append(exporter.cleanup)
            exporter.start()
        if "redis" in st.exporters:
            rs = redis_server.RedisServer().start()
            st._cleanups.append(rs.cleanup)
            st.redis = rs
            exporter = st.exporters["redis"]
            exporter.redis_url = f"redis://{rs.host}:{rs.port}"  # type: ignore[union-attr]
            st._cleanups.append(exporter.cleanup)
            exporter.start()
        if st.postgres is not None and st.redis is not None:
            st.run_pg_redis = RunningApp(tmp_path_factory.mktemp("arbframe-run-pg-redis"), free_port(), {
                "storage": {"backend": "postgres", "postgres": {"dsn": st.postgres.dsn}},  # type: ignore[attr-defined]
                "redis": {"enabled": True, "url": st.redis.url},  # type: ignore[attr-defined]
            })
            st._cleanups.append(lambda: st.run_exit.append(st.run_pg_redis.stop()))  # type: ignore[union-attr]
            st.run_pg_redis.wait_ready()
        st.run.wait_ready()
        yield st
    finally:
        st.close()


def test_prometheus_scrapes_the_metrics_server(stack: Stack) -> None:
    prom = stack.prometheus
    assert prom is not None
    prom.wait_for_target("test-app")
    (up,) = prom.wait_for_query('up{job="test-app"}')
    assert up["value"][1] == "1"
    (pnl,) = prom.wait_for_query('arbitrage_total_pnl_krw{job="test-app"}')
    assert float(pnl["value"][1]) == 12345.0
    (premium,) = prom.wait_for_query('arbitrage_premium_ratio{job="test-app",symbol="BTC"}')
    assert premium["metric"]["direction"] == "kimchi"
    (ticks,) = prom.wait_for_query('arbitrage_tick_duration_seconds_count{job="test-app"}')
    assert float(ticks["value"][1]) == 1.0


def test_prometheus_scrapes_arbframe_run(stack: Stack) -> None:
    """The seed's D4 check: Prometheus scrapes the running service; up == 1 and the trading metrics arrive."""
    prom = stack.prometheus
    assert prom is not None
    prom.wait_for_target("arbitrage-metrics", timeout=30)
    (up,) = prom.wait_for_query('up{job="arbitrage-metrics"}')
    assert up["value"][1] == "1"
    (pnl,) = prom.wait_for_query('arbitrage_total_pnl_krw{job="arbitrage-metrics"}')
    assert pnl["metric"]["job"] == "arbitrage-metrics"
    float(pnl["value"][1])
    (ticks,) = prom.wait_for_query('arbitrage_ticks_total{job="arbitrage-metrics"} > 0')
    assert float(ticks["value"][1]) > 0
    (sim,) = prom.wait_for_query('arbitrage_simulated_data{job="arbitrage-metrics"}')
    assert sim["value"][1] == "1"
    premiums = prom.wait_for_query('arbitrage_premium_ratio{job="arbitrage-metrics"}')
    assert {(r["metric"]["symbol"], r["metric"]["direction"]) for r in premiums} >= {
        ("BTC", "kimchi"), ("BTC", "reverse"),
    }


def test_arbframe_run_serves_health_and_ready(stack: Stack) -> None:
    assert stack.run is not None
    status, body = http_get(stack.run.url + "/health")
    report = json.loads(body)
    assert status == (503 if report["status"] == "ERROR" else 200)
    assert {c["component"].lower() for c in report["checks"]} >= {"csv", "upbit", "binance", "fx", "heartbeat"}
    heartbeat = next(c for c in report["checks"] if c["component"].lower() == "heartbeat")
    assert heartbeat["status"] == "OK", heartbeat  # the service's own loop, seen in the same process
    status, body = http_get(stack.run.url + "/ready")
    assert status == 200 and json.loads(body)["ready"] is True


def test_prometheus_loads_the_shipped_alert_rules(stack: Stack) -> None:
    assert stack.prometheus is not None
    groups = stack.prometheus.api("rules")["groups"]
    names = {rule["name"] for group in groups for rule in group["rules"]}
    assert {"ArbframeDown", "ArbframeHeartbeatStale", "StorageSpoolBacklog", "RedisDown", "PostgresDown"} <= names
    assert all(rule.get("health") != "err" for group in groups for rule in group["rules"])


# --------------------------------------------------------------------------------------------- exporters
def test_postgres_exporter_reports_pg_up(stack: Stack) -> None:
    stack.need("postgres")
    exporter = stack.exporters["postgres"]
    assert metric_values(exporter.scrape(), "pg_up") == [({}, 1.0)]
    assert stack.prometheus is not None
    stack.prometheus.wait_for_target("postgres-exporter")
    (row,) = stack.prometheus.wait_for_query('pg_up{job="postgres-exporter"}')
    assert row["value"][1] == "1"


def test_redis_exporter_reports_redis_up(stack: Stack) -> None:
    stack.need("redis")
    exporter = stack.exporters["redis"]
    assert metric_values(exporter.scrape(), "redis_up") == [({}, 1.0)]
    assert stack.prometheus is not None
    stack.prometheus.wait_for_target("redis-exporter")
    (row,) = stack.prometheus.wait_for_query('redis_up{job="redis-exporter"}')
    assert row["value"][1] == "1"


def test_exporters_report_down_when_their_servers_stop() -> None:
    from arbframe.testing.postgres_server import start_or_skip as start_pg
    from arbframe.testing.redis_server import running_redis_server

    with (
        running_redis_server() as redis,
        start_or_skip(RedisExporter, f"redis://{redis.host}:{redis.port}") as exporter,
    ):
        assert metric_values(exporter.scrape(), "redis_up") == [({}, 1.0)]
        redis.stop()
        assert metric_values(exporter.scrape(), "redis_up") == [({}, 0.0)]
    server = start_pg()
    try:
        with start_or_skip(PostgresExporter, server.dsn) as exporter:
            assert metric_values(exporter.scrape(), "pg_up") == [({}, 1.0)]
            server.stop()
            assert metric_values(exporter.scrape(), "pg_up") == [({}, 0.0)]
    finally:
        server.cleanup()


# ------------------------------------------------------------------------------------ PromQL references
_PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
    "inf", "nan",
}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (strings, label matchers, groupings and functions removed)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        word = match.group(0)
        rest = expr[match.end():].lstrip()
        if rest.startswith("(") or word.lower() in _PROMQL_WORDS or word.startswith("$"):
            continue
        if match.start() > 0 and expr[match.start() - 1] in "$.0123456789":
            continue
        names.add(word)
    return names


def dashboard_exprs() -> list[str]:
    dash = json.loads((INFRA / "grafana/dashboards/arbframe.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dash["templating"]["list"] if v.get("definition")]
    return exprs


def alert_exprs() -> list[str]:
    import yaml

    rules = yaml.safe_load((INFRA / "alerts.yml").read_text())
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


def test_promql_name_extraction() -> None:
    assert promql_metric_names(
        'histogram_quantile(0.99, sum by (exchange, le) (rate(x_bucket{job=~"a|b"}[5m]))) * 60'
    ) == {"x_bucket"}
    assert promql_metric_names("time() - max(hb_seconds) > 120") == {"hb_seconds"}
    assert promql_metric_names('arbitrage_premium_ratio{symbol=~"$symbol"}') == {"arbitrage_premium_ratio"}
    assert promql_metric_names("label_values(arbitrage_premium_ratio, symbol)") == {
        "arbitrage_premium_ratio", "symbol",
    }


def test_every_dashboard_and_alert_expression_parses_in_prometheus(stack: Stack) -> None:
    """Prometheus itself parses each expression (an instant query answers 400 on a syntax error)."""
    assert stack.prometheus is not None
    for expr in dashboard_exprs() + alert_exprs():
        if expr.startswith("label_values("):
            continue  # a Grafana templating function, not PromQL
        stack.prometheus.query(expr.replace("$symbol", ".*"))


def _exporter_names(stack: Stack) -> set[str]:
    names: set[str] = set()
    for exporter in stack.exporters.values():
        names |= served_names(exporter.scrape())
    return names


def test_dashboard_and_alerts_only_use_metrics_that_are_served(stack: Stack) -> None:
    """Every metric the dashboard and the alert rules select is served by a live ``arbframe run`` (default config,
    and with PostgreSQL storage and the Redis cache), by the exporters, or is Prometheus' own ``up``."""
    assert stack.run is not None
    served = served_names(http_get(stack.run.url + "/metrics")[1])
    if stack.run_pg_redis is not None:
        text = http_get(stack.run_pg_redis.url + "/metrics")[1]
        served |= served_names(text)
        assert metric_values(text, "arbframe_cache_writes_total")  # the Redis cache wrote
        flushes = metric_values(text, "arbframe_storage_flush_duration_seconds_count")
        assert any(labels.get("backend") == "postgres" for labels, _ in flushes)  # PostgreSQL, not the fallback
    elif os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true: the postgres/redis run cannot happen: {stack.skips}")
    served |= _exporter_names(stack) | {"up"}

    missing: dict[str, set[str]] = {}
    unverifiable: set[str] = set()
    for where, exprs in (("dashboard", dashboard_exprs()), ("alerts", alert_exprs())):
        for expr in exprs:
            names = promql_metric_names(expr)
            if expr.startswith("label_values("):
                names.discard("symbol")  # label_values(metric, label): the label is not a metric
            for name in names - served:
                part = {"pg_": "postgres", "redis_": "redis"}.get(name.split("_", 1)[0] + "_")
                if part is not None and part in stack.skips:
                    unverifiable.add(f"{name} ({stack.skips[part]})")
                else:
                    missing.setdefault(where, set()).add(name)
    assert not missing, f"selected but never served: {missing}"
    if unverifiable:
        skip_or_fail(f"exporter metrics not checked: {sorted(unverifiable)}")


def test_every_served_family_is_documented(stack: Stack) -> None:
    assert stack.run is not None
    from prometheus_client.parser import text_string_to_metric_families

    docs = (ROOT / "docs" / "METRICS.md").read_text()
    documented = set(re.findall(r"`([a-z_:][a-z0-9_:]*)`", docs))
    text = http_get(stack.run.url + "/metrics")[1]
    if stack.run_pg_redis is not None:
        text += http_get(stack.run_pg_redis.url + "/metrics")[1]
    undocumented = set()
    for family in text_string_to_metric_families(text):
        if family.name.endswith("_created"):
            continue
        suffix = "_total" if family.type == "counter" else ""
        if family.name + suffix not in documented and family.name not in documented:
            undocumented.add(family.name + suffix)
    assert not undocumented, f"add these to docs/METRICS.md: {sorted(undocumented)}"


def test_arbframe_metrics_command_prints_the_same_families(stack: Stack, tmp_path: Path) -> None:
    assert stack.run is not None
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    out = subprocess.run(  # the same config as the running service (the command starts no server)
        [sys.executable, "-m", "arbframe", "metrics", "--config", str(stack.run.config_file)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60,
    )
    assert out.returncode == 0, out.stderr

    def families(text: str) -> set[str]:
        return {n for n in served_names(text) if not n.endswith("_created")}

    live = http_get(stack.run.url + "/metrics")[1]
    assert families(out.stdout) == families(live)
    fetched = subprocess.run(
        [sys.executable, "-m", "arbframe", "metrics", "--url", stack.run.url], capture_output=True, text=True,
        cwd=tmp_path, env=env, timeout=60,
    )
    assert fetched.returncode == 0, fetched.stderr
    assert metric_values(fetched.stdout, "arbitrage_ticks_total")[0][1] >= 1


def test_limit_rules_match_the_scraped_series(stack: Stack) -> None:
    """The rules compare two series of one target (a value and its configured limit): on real scrapes the
    one-to-one match finds a pair, and a healthy service is below every limit."""
    prom = stack.prometheus
    assert prom is not None
    prom.wait_for_query('arbitrage_max_fx_age_seconds{job="arbitrage-metrics"}')
    for left, right in (
        ("arbitrage_fx_age_seconds", "arbitrage_max_fx_age_seconds"),
        ("arbitrage_drawdown_krw", "arbitrage_max_drawdown_krw"),
        ("-arbitrage_daily_pnl_krw", "arbitrage_max_daily_loss_krw"),
        ("time() - arbitrage_heartbeat_timestamp_seconds", "clamp_min(3 * arbitrage_tick_interval_seconds, 60)"),
    ):
        rows = prom.wait_for_query(f'({left}) < bool ({right})')
        (row,) = [r for r in rows if r["metric"]["job"] == "arbitrage-metrics"]  # test-app has no limits: NaN
        assert row["value"][1] == "1", (left, right, row)  # 1: below the limit
    (limit,) = prom.query('arbitrage_max_daily_loss_krw{job="arbitrage-metrics"}')
    assert float(limit["value"][1]) == 500000  # the embedded default arbitrage.max_daily_loss_krw
    (interval,) = prom.query('arbitrage_tick_interval_seconds{job="arbitrage-metrics"}')
    assert float(interval["value"][1]) == 0.3  # RunningApp's --interval
    firing = prom.query('ALERTS{alertstate="firing", job="arbitrage-metrics"}')
    assert firing == [], firing


def test_arbframe_run_exits_cleanly_with_its_server(stack: Stack) -> None:
    """Last in the module: SIGTERM stops the loop and the server; the port is released."""
    assert stack.run is not None
    assert stack.run.stop() == 0
    assert "Shutting down" in stack.run.log.read_text()
    with pytest.raises(OSError):
        import urllib.request

        urllib.request.urlopen(stack.run.url + "/metrics", timeout=2)

