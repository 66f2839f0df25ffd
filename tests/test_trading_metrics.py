"""Trading metrics exposition, plugin events through the kernel (isolated), cache publication per tick."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal as D

from prometheus_client import CollectorRegistry, generate_latest

from arbframe import BookLevel, FxRate, IdGenerator, MarketRules, OrderBook, hookimpl
from arbframe.builtins.memory_cache import MemoryCache
from arbframe.builtins.storage import MemoryStorage
from arbframe.builtins.trading import arbframe_config_schema
from arbframe.kernel.plugin_host import Kernel
from arbframe.trading.engine import Engine, MarketSnapshot
from arbframe.trading.paper import PaperWallet
from arbframe.trading.statistics import TradingMetrics, TradingStats, format_metrics_summary
from arbframe.trading.strategy import StrategyConfig

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
HIGH = ([("105000", "5"), ("104000", "10")], [("105100", "5"), ("106000", "10")],
        [("99.9", "4"), ("99", "10")], [("100", "4"), ("101", "10")])
LOW = ([("100400", "20")], [("100500", "20")], [("100", "20")], [("100.1", "20")])


def _book(exchange, bids, asks, ts):
    return OrderBook(exchange, "BTC", tuple(BookLevel(D(p), D(q)) for p, q in bids),
                     tuple(BookLevel(D(p), D(q)) for p, q in asks), ts)


def snapshot(ts, up_bids, up_asks, bn_bids, bn_asks):
    return MarketSnapshot(ts, {("upbit", "BTC"): _book("upbit", up_bids, up_asks, ts),
                               ("binance", "BTC"): _book("binance", bn_bids, bn_asks, ts)},
                          FxRate("fx", ts, D("1000"), "static"))


def make_engine(registry=None):
    cfg = StrategyConfig.from_section({
        "symbols": ["BTC"], "order_notional_krw": 1000000, "entry_threshold": 0.02, "exit_threshold": 0.005,
        "cooldown_seconds": 0,
    })
    rules = {
        ("upbit", "BTC"): MarketRules("BTC", None, D("0.01"), D("0.01"), D("5000")),
        ("binance", "BTC"): MarketRules("BTC", D("0.01"), D("0.01"), D("0.01"), D("5")),
    }
    wallets = {
        "upbit": PaperWallet("upbit", "KRW", {"KRW": "10000000", "BTC": "20"}),
        "binance": PaperWallet("binance", "USDT", {"USDT": "100000", "BTC": "20"}),
    }
    return Engine(cfg, storage=MemoryStorage(), fee_domestic=D("0.0005"), fee_foreign=D("0.001"), rules=rules,
                  quote_currencies={"upbit": "KRW", "binance": "USDT"}, wallets=wallets, ids=IdGenerator(1),
                  metrics=TradingMetrics.get(registry) if registry is not None else None)

TRADING_NAMES = [
    "arbitrage_total_pnl_krw", "arbitrage_daily_pnl_krw", "arbitrage_unrealized_pnl_krw", "arbitrage_win_rate",
    "arbitrage_trades_total", "arbitrage_open_positions", "arbitrage_avg_trade_duration_seconds",
    "arbitrage_premium_ratio", "arbitrage_net_premium_ratio", "arbitrage_fx_rate_krw", "arbitrage_fx_age_seconds",
    "arbitrage_tick_duration_seconds", "arbitrage_ticks_total", "arbitrage_orders_total",
    "arbitrage_simulated_data", "arbitrage_heartbeat_timestamp_seconds", "arbframe_build_info",
]


def test_every_trading_metric_is_exposed_once_per_registry():
    registry = CollectorRegistry()
    first = TradingMetrics.get(registry)
    assert TradingMetrics.get(registry) is first  # one family set per registry, no duplicate registration
    first.orders.labels(exchange="upbit", side="buy", status="filled").inc()
    first.premium.labels(symbol="BTC", direction="kimchi").set(0.02)
    first.net_premium.labels(symbol="BTC", direction="kimchi").set(0.017)
    text = generate_latest(registry).decode()
    for name in TRADING_NAMES:
        assert f"\n{name}" in "\n" + text or f"{name}{{" in text, name
    assert TradingMetrics.get(CollectorRegistry()) is not first


def test_summary_line_and_empty_stats():
    stats = TradingStats()
    snap = stats.snapshot(T0)
    assert format_metrics_summary(snap).startswith(
        "[METRICS] pnl=0₩ win_rate=0.0% trades=0 open_pos=0 daily_pnl=0₩ avg_duration=0s"
    )


class Recorder:
    def __init__(self):
        self.events = []

    @hookimpl
    def arbframe_on_spread(self, spread):
        self.events.append(("spread", spread.symbol, spread.direction.value))

    @hookimpl
    def arbframe_on_order_filled(self, order, trade):
        assert trade.order_id == order.id
        self.events.append(("order", order.exchange, order.side.value))

    @hookimpl
    def arbframe_on_position_opened(self, position):
        self.events.append(("opened", position.id))

    @hookimpl
    def arbframe_on_position_closed(self, position):
        self.events.append(("closed", position.id, position.realized_pnl_krw))


class Broken:
    @hookimpl
    def arbframe_on_spread(self, spread):
        raise RuntimeError("plugin bug")

    @hookimpl
    def arbframe_on_position_opened(self, position):
        raise RuntimeError("plugin bug")


def test_events_reach_plugins_and_a_broken_plugin_never_stops_the_tick():
    kernel = Kernel({"storage": {"backend": "csv"}}, register_plugins=False)
    recorder, broken = Recorder(), Broken()
    kernel.register(recorder, "recorder")
    kernel.register(broken, "broken")
    engine = make_engine(registry=kernel.registry)
    engine.notify = kernel.notify
    r1 = engine.process(snapshot(T0, *HIGH))
    r2 = engine.process(snapshot(T0 + timedelta(seconds=1), *LOW))
    assert r1.opened and r2.closed  # the broken plugin did not stop anything
    pid = r1.opened[0].id
    kinds = [e[0] for e in recorder.events]
    assert kinds.count("spread") == 4 and kinds.count("order") == 4
    assert ("opened", pid) in recorder.events
    assert ("closed", pid, D("29914.56")) in [e[:3] for e in recorder.events if e[0] == "closed"]
    errors = kernel.registry.get_sample_value(
        "arbframe_plugin_errors_total", {"plugin": "broken", "hook": "arbframe_on_spread"})
    assert errors == 4
    kernel.close()


def test_tick_publishes_fx_heartbeat_and_spread_snapshots_to_the_cache():
    cache = MemoryCache({}, None)
    registry = CollectorRegistry()
    engine = make_engine(registry=registry)
    engine.cache = cache
    engine.process(snapshot(T0, *HIGH))
    fx = cache.get_fx_rate()
    assert fx is not None and fx.rate == D("1000")
    assert cache.get_heartbeat("bot_service") == T0
    snap = cache.get_spread_snapshot("BTC")
    assert snap["fx_rate"] == "1000" and snap["fx_source"] == "static"
    assert D(snap["kimchi"]["premium"]) > D("0.039") and "net_premium" in snap["reverse"]
    assert registry.get_sample_value("arbitrage_heartbeat_timestamp_seconds") == T0.timestamp()


def test_config_schema_fragments_cover_the_owned_sections():
    fragments = arbframe_config_schema()
    assert {"arbitrage", "fx", "paper", "simulation", "backtest", "live"} <= set(fragments)
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(fragments["arbitrage"])
    assert not list(validator.iter_errors({"symbols": ["BTC"], "entry_threshold": 0.02, "directions": ["kimchi"]}))
    assert list(validator.iter_errors({"directions": ["sideways"]}))
    assert list(validator.iter_errors({"no_such_key": 1}))
