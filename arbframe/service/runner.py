"""The service loop behind ``arbframe run`` (seed D3 ``run_bot_service.py`` and D4 ``run_live.py``).

:class:`TradingService` builds everything a tick needs from a :class:`~arbframe.kernel.plugin_host.Kernel`:
the simulated market (mock mode), both exchanges, the FX service (source -> cache -> read back), storage, cache,
the trading metrics and the :class:`~arbframe.trading.engine.Engine`; :meth:`TradingService.snapshot` gathers one
:class:`~arbframe.trading.engine.MarketSnapshot` (all books concurrently). :func:`run_loop` runs ticks at an interval
until ``--once``, ``--max-iterations``, ``--duration`` or SIGINT/SIGTERM; a signal lets the current tick finish,
then storage is flushed, the final metrics are logged and the exit status is 0. ``arbframe record`` reuses the
same service to save snapshots (see :mod:`arbframe.replay.backtest`).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

from arbframe.core.errors import ArbframeError, DriverLoadError
from arbframe.core.models import ErrorRecord, FxRate, IdGenerator, MarketRules, OrderBook, new_id, utcnow
from arbframe.service.isolation import IsolatedCache, IsolatedStorage
from arbframe.service.readiness import Readiness, VenueReadiness
from arbframe.trading.accounting import fee_schedules
from arbframe.trading.engine import Engine, MarketSnapshot, TickResult
from arbframe.trading.paper import DEFAULT_BALANCES, PaperWallet
from arbframe.trading.statistics import DayRollover, TradingMetrics, format_metrics_summary
from arbframe.trading.strategy import StrategyConfig

if TYPE_CHECKING:
    from arbframe.kernel.interfaces import Cache, Exchange, Storage
    from arbframe.kernel.plugin_host import Kernel
    from arbframe.market.simulation import SimulatedMarket

log = logging.getLogger("arbframe.runner")



class LiveModeRefused(ArbframeError):
    """``--mode live`` cannot start; the message says why."""

    exit_status = 2


@dataclass
class RunOptions:
    mode: str = "paper"
    once: bool = False
    interval: float | None = None
    duration: float | None = None
    max_iterations: int | None = None
    mock: bool | None = None
    data: str | None = None
    output: str | None = None
    force: bool = False


# ------------------------------------------------------------------------------------------------ live gate
def _has_credentials(section: Mapping[str, Any] | None) -> bool:
    section = section or {}
    return bool(str(section.get("api_key") or "").strip()) and bool(str(section.get("api_secret") or "").strip())


def live_refusal(config: Mapping[str, Any]) -> str | None:
    """Why ``--mode live`` must not start, or None: credentials for both venues and ``live.confirm: true``."""
    arb = config.get("arbitrage") or {}
    venues = [str(arb.get("domestic", "upbit")), str(arb.get("foreign", "binance"))]
    missing = [v for v in venues if not _has_credentials(config.get(v))]
    if missing:
        return (
            f"live mode needs API credentials for {', '.join(missing)} "
            f"({', '.join(f'{v}.api_key/{v}.api_secret' for v in missing)} are empty); refusing to start. "
            "Use --mode paper, or --mode live --mock to rehearse on the simulated market"
        )
    if not (config.get("live") or {}).get("confirm"):
        return ("live mode places real orders and needs the explicit confirmation setting live.confirm: true; "
                "refusing to start")
    return None


# ------------------------------------------------------------------------------------------------- service
class TradingService:
    """Everything one venue pair needs to trade, built from a kernel (see the module docstring)."""

    def __init__(self, kernel: Kernel, *, mock: bool, ids: Any = None, with_engine: bool = True) -> None:
        self.kernel = kernel
        self.config = kernel.config
        self.mock = mock
        self.cfg = StrategyConfig.from_config(kernel.config)
        seed = (self.config.get("paper") or {}).get("seed")
        self.ids = ids or (IdGenerator(int(seed)) if seed is not None else new_id)
        self.with_engine = with_engine
        self.market: SimulatedMarket | None = None
        self.exchanges: dict[str, Exchange] = {}
        self.storage: Storage | None = None
        self.cache: Cache | None = None
        self.fx_service: Any = None
        self.engine: Engine | None = None
        self.metrics = TradingMetrics.get(kernel.registry)
        self.rules: dict[tuple[str, str], MarketRules] = {}
        self._last_fx_id: str | None = None
        self._tether_failed = False
        self.readiness: Readiness | None = None
        from arbframe.kernel.book import book_from_config

        self.book = book_from_config(kernel.config)
        self.book_lock: Any = None
        self.unreachable: set[str] = set()  # venues that gave no book in the last snapshot
        self.last_snapshot: MarketSnapshot | None = None  # of the last interval tick (event-driven ticks build on it)
        # live execution (mode live without --mock): arbframe.execution
        self.live = kernel.context.mode == "live" and not mock
        self.executor: Any = None
        self.reconciler: Any = None
        self.kill_switch: Any = None
        self.flatten_due = False
        self._kill_read_failed = False
        self._resume_seen: str | None = None  # the ts of the released kill switch state last taken

    @property
    def simulated(self) -> bool:
        return self.mock

    def note(self) -> str:
        return " [simulated data]" if self.mock else ""

    async def start(self) -> None:
        k = self.kernel
        cfg = self.cfg
        log.info("[BOT] Initializing bot service...")
        self.storage = k.load_storage_writer(wrap=lambda driver: _isolated(IsolatedStorage, driver, k))
        log.info("[BOT] Storage initialized: %s (writing to %s)", self.storage.describe(),
                 self.storage.active_backend())
        if self.with_engine:  # a trading runner: one per book (BookLocked, exit 2, when another has it)
            self.book_lock = self.storage.lock_book(self.book)
        if self.book_lock is not None:
            log.info("[BOT] %s by instance %s", self.book_lock.describe(), self.book.instance_id)
        self.cache = _isolated(IsolatedCache, k.load_cache(), k)
        log.info("[BOT] Cache initialized: %s (available=%s)", self.cache.describe(), self.cache.available)
        if self.mock:
            from arbframe.market.simulation import market_from_config

            self.market = market_from_config(self.config)
            k.context.market = self.market
            k.context.mock = True
            log.warning("[BOT] MOCK MODE: quotes come from the simulated market (seed=%s); every price, spread and "
                        "PnL below is simulated", self.market.seed)
        for role, name in (("domestic", cfg.domestic), ("foreign", cfg.foreign)):
            try:
                exchange = k.load_exchange(name, simulated=_simulated(name, role, k))
            except ArbframeError:
                raise
            except Exception as exc:
                raise DriverLoadError(f"arbitrage.{role}: exchange {name!r} could not be built: {exc}") from exc
            self.exchanges[name] = exchange  # closed on shutdown even when connect fails
            log.info("[BOT] Exchange %s initialized (mock=%s, quote=%s, fee=%s)", name,
                     getattr(exchange, "simulated", False), exchange.quote_currency, exchange.fee_rate)
        # start-up needs no network: what does not load now loads with retries while the service runs
        self.readiness = Readiness.for_exchanges(self.exchanges, list(cfg.symbols), self.config)
        k.register(self.readiness, "service:readiness")
        await asyncio.gather(*(v.prepare() for v in self.readiness.venues.values()))
        for name, venue in self.readiness.venues.items():
            self.rules.update({(name, symbol): rules for symbol, rules in venue.load_rules().items()})
        self.fx_service = self._build_fx()
        self.metrics.simulated.set(1 if self.mock else 0)
        self.metrics.precreate_orders(tuple(self.exchanges))
        self.publish_limits()
        log.info("[BOT] Metrics collector initialized")
        if self.with_engine:
            self.engine = self._build_engine(self._build_executor() if self.live else None)
            self._restore_totals()
            resumed = self.engine.resume(self.storage.load_positions())
            for p in resumed:
                log.info("[BOT] resumed open position %s: %s %s qty=%s opened %s", p.id, p.direction.value,
                         p.symbol, p.qty, p.opened_at.isoformat())
            if self.executor is not None:
                engine = self.engine
                self.executor.risk.mark_source = lambda: engine.marks  # residual exposure, marked to market
                await self._start_live()
        from arbframe.kernel.config import fx_source_name

        redis_cfg = self.config.get("redis") or {}
        log.info("[BOT] Config: fx_mode=%s storage_backend=%s redis_enabled=%s mode=%s mock=%s",
                 fx_source_name(self.config),
                 (self.config.get("storage") or {}).get("backend", "csv"),
                 bool(redis_cfg.get("enabled")), k.context.mode, self.mock)
        k.notify("arbframe_startup", context=k.context)

    def publish_limits(self, interval: float | None = None) -> None:
        """The configured limits as gauges (``docs/METRICS.md``): the alert rules compare against these."""
        cfg = self.cfg
        max_drawdown = (self.config.get("alerts") or {}).get("max_drawdown_krw")
        if self.executor is None:  # the execution gauges and limits exist in every mode (0: not live)
            from arbframe.execution.config import LiveConfig
            from arbframe.execution.risk import ExecutionMetrics, RiskGuard

            guard = RiskGuard(LiveConfig.from_config(self.config), ExecutionMetrics.get(self.kernel.registry))
            guard.reconciling = None
            guard.publish()
        self.metrics.publish_limits(
            max_daily_loss_krw=cfg.max_daily_loss_krw,
            max_fx_age_seconds=cfg.max_fx_age_seconds,
            max_drawdown_krw=Decimal(str(max_drawdown)) if max_drawdown is not None else cfg.max_daily_loss_krw,
            interval_seconds=interval if interval is not None else _interval(RunOptions(), self.config),
        )

    def _restore_totals(self) -> None:
        """PnL totals, win rate, trades and today's realized PnL (the daily loss limit) carry over restarts when the
        storage keeps closed positions; a storage that cannot load them leaves the totals at zero, with one line."""
        storage, engine = self.storage, self.engine
        assert storage is not None and engine is not None, "restored after start() built them"
        try:
            history = storage.load_closed_positions()
        except Exception as exc:  # a backend failing here must not stop the service: totals start at zero
            log.warning("[BOT] PnL totals start at zero: %s could not load closed positions (%s: %s)",
                        storage.describe(), type(exc).__name__, exc)
            return
        if history is None:
            log.info("[BOT] PnL totals start at zero: %s keeps no closed positions", storage.describe())
            return
        closed = engine.restore_history(history)
        if not closed:
            return
        stats = engine.stats
        log.info("[BOT] restored %d closed positions from storage: pnl=%s₩ trades=%d win_rate=%.1f%%", closed,
                 stats.total_pnl_krw.quantize(Decimal(1)), stats.trades, stats.win_rate * 100)

    def _build_fx(self) -> Any:
        """The configured FX source (``fx.source``) behind the FX service, in mock mode too.

        Mock mode does not swap the source: ``static`` gives exactly ``fx.static_rate``; ``exchange`` (the Upbit
        plugin) reads the simulated market's KRW-USDT book through the kernel context. The simulated market keeps
        its own USD/KRW for pricing its books, so the gap between the two is a realistic FX error.
        """
        from arbframe.trading.fx import FxService

        source = self.kernel.load_fx_source()
        name = getattr(source, "source_name", None) or getattr(source, "name", "") or type(source).__name__
        if self.mock:
            log.info("[BOT] FX source: %s (mock mode: the simulated market prices its books with its own USD/KRW, "
                     "the spreads with this rate)", name)
        else:
            log.info("[BOT] FX source: %s", name)
        ttl = int((self.config.get("redis") or {}).get("health_ttl_seconds", 60))
        assert self.cache is not None, "the FX service is built after start() loaded the cache"
        return FxService(source, self.cache, ttl_seconds=ttl, max_age_seconds=self.cfg.max_fx_age_seconds)

    def wallets(self) -> dict[str, PaperWallet]:
        return paper_wallets(self.config, {name: e.quote_currency for name, e in self.exchanges.items()})

    def _build_executor(self) -> Any:
        """The live executor over both exchanges' trading side, its kill switch and reconciliation."""
        from arbframe.execution.config import LiveConfig
        from arbframe.execution.control import KillSwitch
        from arbframe.execution.live import LiveExecutor, Venue
        from arbframe.execution.reconcile import Reconciler
        from arbframe.execution.residual import ResidualStore
        from arbframe.kernel.interfaces import Trading

        live_cfg = LiveConfig.from_config(self.config)
        venues: dict[str, Venue] = {}
        for name, exchange in self.exchanges.items():
            if not isinstance(exchange, Trading):
                raise LiveModeRefused(f"exchange {name!r} has no trading side (orders, balances): it cannot trade "
                                      "live; refusing to start")
            options: frozenset[str] = getattr(exchange, "order_options", frozenset())
            if "time_in_force" not in options:
                raise LiveModeRefused(f"exchange {name!r} does not declare IOC orders (Trading.order_options lacks "
                                      "time_in_force): live execution sends only limit IOC orders; refusing to start")
            if live_cfg.dry_run and "test" not in options:
                raise LiveModeRefused(f"exchange {name!r} cannot send test orders (Trading.order_options lacks test): "
                                      "live.dry_run would place real orders; refusing to start")
            venues[name] = Venue(name, exchange, exchange.quote_currency, exchange)
        self.kill_switch = KillSwitch(self.storage, self.kernel.context.data_dir)
        self.executor = LiveExecutor(venues, domestic=self.cfg.domestic, foreign=self.cfg.foreign,
                                     storage=self.storage, cfg=live_cfg, ids=self.ids, kill_switch=self.kill_switch,
                                     registry=self.kernel.registry, instance_id=self.book.instance_id)
        self.executor.residual_store = ResidualStore(self.storage, self.cfg.domestic, self.cfg.foreign,
                                                     self.book.symbols, self.kernel.context.data_dir)
        self.reconciler = Reconciler(self.executor, self.book.symbols)
        self.kernel.register(self.executor, "service:execution")
        log.warning("[BOT] LIVE MODE: orders on %s and %s, IOC at VWAP + %s bps%s", self.cfg.domestic,
                    self.cfg.foreign, live_cfg.max_slippage_bps,
                    " -- DRY RUN: every order goes to the venues' test endpoints, nothing is placed"
                    if live_cfg.dry_run else "")
        return self.executor

    async def _start_live(self) -> None:
        """Kill switch state, then the start-up reconciliation: entries wait until it is done."""
        await self.before_tick()
        reports = await self.reconciler.on_start()
        self.executor.adopt(reports)

    async def _read_kill(self) -> Any:
        """The stored kill switch, read off the event loop within 2 s (the last state when the store is slow)."""
        try:
            state = await asyncio.wait_for(asyncio.to_thread(self.kill_switch.read), 2.0)
        except asyncio.TimeoutError:
            if not self._kill_read_failed:
                log.warning("[BOT] kill switch: %s did not answer within 2s; keeping the last state",
                            self.kill_switch.where)
            self._kill_read_failed = True
            return self.kill_switch.state
        self._kill_read_failed = False
        return state

    async def before_tick(self) -> None:
        """Live: take the kill switch (effective this tick), trip it on the daily loss limit, rebaseline the
        balances after ``arbframe resume`` (one that released the switch, or a new one while it was not tripped:
        after a balance drift, or ``--flattened`` after trading a residual back by hand)."""
        executor = self.executor
        if executor is None:
            return
        state = await self._read_kill()
        was = executor.killed
        await executor.apply_kill(state)
        fresh = not (self._kill_read_failed or self.kill_switch.last_read_failed)  # not the last state kept
        resumed = not state.killed and (was or (fresh and self._resume_seen is not None
                                                and state.ts != self._resume_seen))
        if fresh and not state.killed:
            self._resume_seen = state.ts
        if resumed and self.reconciler is not None:
            await self.reconciler.refresh_balances(baseline=True)
        self.flatten_due = state.killed and state.flatten
        if executor.risk.residuals:  # marked to market: the gauge follows the price
            executor.risk.publish()
        if self.engine is not None and not executor.killed:
            why = executor.risk.daily_loss_trip(self.engine.stats.daily_pnl(utcnow()), self.cfg.max_daily_loss_krw)
            if why is not None:
                executor.trip(why)

    def _build_engine(self, executor: Any = None) -> Engine:
        cfg = self.cfg
        d, f = self.exchanges[cfg.domestic], self.exchanges[cfg.foreign]
        redis_cfg = self.config.get("redis") or {}
        return Engine(
            cfg,
            storage=self.storage,  # type: ignore[arg-type]
            fee_domestic=d.fee_rate,
            fee_foreign=f.fee_rate,
            fees=fee_schedules(self.config, {n: e.fee_rate for n, e in self.exchanges.items()}),
            rules=self.rules,
            quote_currencies={n: e.quote_currency for n, e in self.exchanges.items()},
            wallets=self.wallets(),
            ids=self.ids,
            cache=self.cache,
            service_name=self.kernel.context.service_name,
            cache_ttl_seconds=int(redis_cfg.get("health_ttl_seconds", 60)),
            publish_fx=True,  # fx, heartbeat and spread snapshots go out in one write_tick per tick
            metrics=self.metrics,
            notify=self.kernel.notify,
            simulated=self.mock,
            log_spreads=bool((self.config.get("arbitrage") or {}).get("log_spreads", True)),
            spread_log_interval_seconds=float(
                (self.config.get("arbitrage") or {}).get("spread_log_interval_seconds", 0)
            ),
            observe_tick_seconds=False,  # run_loop times engine + storage flush as one tick
            executor=executor,
        )

    async def current_fx(self) -> FxRate | None:
        from arbframe.trading.fx import FxUnavailable

        try:
            fx = await self.fx_service.current()
        except FxUnavailable as exc:
            log.warning("[BOT] %s", exc)
            return None
        if fx.id != self._last_fx_id:
            self._last_fx_id = fx.id
            if self.storage is not None:
                self.storage.log_fx_rate(fx)
        return fx

    async def snapshot(self) -> MarketSnapshot:
        """Advance the simulated market (mock) and gather every book and the FX rate concurrently."""
        if self.market is not None:
            self.market.step(utcnow())
        cfg = self.cfg
        venues = self.readiness.venues if self.readiness is not None else {}
        due = [v for v in venues.values() if v.due()]
        if due:
            await asyncio.gather(*(v.prepare() for v in due))
        skip = {name for name, v in venues.items() if not v.ready and not (v in due and v.connected)}
        keys = [(venue, symbol) for symbol in cfg.symbols for venue in (cfg.domestic, cfg.foreign)
                if venue not in skip]
        if cfg.use_tether and not self._tether_failed and cfg.domestic not in skip:
            keys.append((cfg.domestic, "USDT"))  # while the venue gets ready a failure here is not final
        tasks = [self.exchanges[v].fetch_order_book(s, cfg.book_depth) for v, s in keys]
        results = await asyncio.gather(self.current_fx(), *tasks, return_exceptions=True)
        fx_result = results[0]
        fx: FxRate | None = None
        if isinstance(fx_result, BaseException):
            log.warning("[BOT] FX rate unavailable: %r", fx_result)
        else:
            fx = cast("FxRate | None", fx_result)
        books: dict[tuple[str, str], OrderBook] = {}
        now = self.market.now if self.market is not None else utcnow()
        waiting: dict[str, dict[str, BaseException]] = {v.name: {} for v in due}
        answered: set[str] = set()
        for key, book in zip(keys, results[1:], strict=True):
            if not isinstance(book, BaseException):
                answered.add(key[0])
            if key[0] in waiting:  # a venue getting ready: its failures make its one reason line
                if isinstance(book, BaseException):
                    waiting[key[0]][key[1]] = book
                    continue
                venues[key[0]].book_arrived(key[1])
            if isinstance(book, BaseException):
                if key[1] == "USDT" and key[0] == cfg.domestic:
                    self._tether_failed = True
                    log.info("[BOT] KRW-USDT book unavailable on %s (%r): tether premium not recorded", key[0], book)
                    continue
                self.record_error(f"{key[0]}", f"order book {key[1]} unavailable: {book!r}", now)
                continue
            books[key] = cast(OrderBook, book)
        if due:
            self._settle(due, waiting)
        self.unreachable = {cfg.domestic, cfg.foreign} - answered
        self.last_snapshot = snap = MarketSnapshot(now, books, fx, simulated=self.mock)
        return snap

    def event_snapshot(self, streamed: Mapping[tuple[str, str], OrderBook]) -> MarketSnapshot:
        """The last interval snapshot with the newest streamed books over it (an event-driven evaluation)."""
        last = self.last_snapshot
        if last is None:
            return MarketSnapshot(utcnow(), dict(streamed), None, simulated=self.mock)
        books = dict(last.books)
        books.update(streamed)
        return MarketSnapshot(utcnow(), books, last.fx, simulated=self.mock)

    def event_ticks(self) -> Any:
        """:class:`~arbframe.service.events.EventTicks` over the venues that stream, when ``service.event_driven``
        (default on) and at least one venue streams; None otherwise (REST polling: interval ticks only)."""
        from arbframe.service.events import EventTicks, streaming_sources

        if not (self.config.get("service") or {}).get("event_driven", True) or self.engine is None:
            return None
        sources = streaming_sources(self.exchanges, self.cfg.symbols, self.cfg.book_depth)
        if not sources:
            return None
        engine, storage = self.engine, self.storage

        def evaluate(symbols: set[str]) -> None:
            result = engine.process(self.event_snapshot(ticks.books), symbols)
            if (result.opened or result.closed) and storage is not None:
                storage.flush()

        ticks = EventTicks(sources, self.cfg.symbols, evaluate)
        return ticks

    def _settle(self, due: list[VenueReadiness], errors: dict[str, dict[str, BaseException]]) -> None:
        """Rules that arrived go to the engine; each venue tried is ready or says why not (one line)."""
        for venue in due:
            for symbol, rules in venue.load_rules().items():
                self.rules[(venue.name, symbol)] = rules
                if self.engine is not None:
                    self.engine.set_rules(venue.name, symbol, rules)
            venue.settle(errors.get(venue.name))
        if self.engine is not None and self.readiness is not None:
            self.engine.unready = self.readiness.unready()


    def ready_state(self) -> tuple[bool, str]:
        """Ready to trade: storage writable or safely spooling, both venues answered last tick, not killed."""
        from arbframe.kernel.interfaces import HealthStatus

        problems = []
        health = getattr(self.storage, "health", None)
        if callable(health):
            result = health()
            if result.status is HealthStatus.ERROR:
                problems.append(f"storage: {result.message}")
        if self.unreachable:
            problems.append(f"venue(s) unreachable: {', '.join(sorted(self.unreachable))}")
        if getattr(self.engine, "killed", False):
            problems.append("kill switch tripped")
        if problems:
            return False, "; ".join(problems)
        return True, f"ticking; storage {self.storage.active_backend() if self.storage else '?'}"

    def record_error(self, component: str, message: str, now: Any = None) -> None:
        log.warning("[BOT] %s: %s", component, message)
        error = ErrorRecord(id=new_id(), ts=now or utcnow(), component=component, message=message, kind="market_data")
        if self.storage is not None:
            self.storage.log_error(error)
        self.kernel.notify("arbframe_on_error", error=error)

    def log_tick(self, snap: MarketSnapshot, result: Any) -> None:
        by_symbol: dict[str, list[str]] = {}
        for s in result.spreads:
            by_symbol.setdefault(s.symbol, []).append(
                f"{s.direction.value}={float(s.premium) * 100:+.3f}% (net {float(s.net_premium) * 100:+.3f}%)"
            )
        fx = snap.fx
        fx_text = f"fx={fx.rate} ({fx.source}, {fx.age_seconds(snap.ts):.0f}s)" if fx is not None else "fx=none"
        tether = next((s.tether_premium for s in result.spreads if s.tether_premium is not None), None)
        tether_text = f" tether={float(tether) * 100:+.3f}%" if tether is not None else ""
        for symbol, parts in by_symbol.items():
            log.info("[BOT] %s %s %s%s%s", symbol, " ".join(parts), fx_text, tether_text, self.note())

    def metrics_line(self) -> str:
        assert self.engine is not None
        return format_metrics_summary(self.engine.stats.snapshot(utcnow())) + self.note()

    async def close(self) -> None:
        k = self.kernel
        if self.storage is not None:
            try:
                self.storage.flush()
            except Exception as exc:
                log.error("[BOT] final storage flush failed: %r", exc)
        k.notify("arbframe_shutdown", context=k.context)
        for exchange in self.exchanges.values():
            try:
                await exchange.close()
            except Exception as exc:
                log.warning("[BOT] closing %s failed: %r", exchange.name, exc)
        if self.fx_service is not None:
            try:
                await self.fx_service.close()
            except Exception as exc:
                log.debug("closing FX source failed: %r", exc)
        k.close()


def paper_wallets(config: Mapping[str, Any], quote_currencies: Mapping[str, str]) -> dict[str, PaperWallet]:
    """The paper wallets a run starts from: ``paper.balances.<venue>``, else the defaults of the venue's quote
    currency (``quote_currencies``: venue -> KRW / USDT)."""
    paper = (config.get("paper") or {}).get("balances") or {}
    out = {}
    for name, ccy in quote_currencies.items():
        balances = paper.get(name) or DEFAULT_BALANCES.get(ccy, {})
        out[name] = PaperWallet(name, ccy, {k: str(v) for k, v in balances.items()})
    return out


def _isolated(wrapper: Any, driver: Any, kernel: Kernel) -> Any:
    """The driver behind :mod:`arbframe.service.isolation`'s guard, named as the kernel registered it."""
    return wrapper(driver, kernel.pm.get_name(driver) or type(driver).__name__, kernel.registry)


def _simulated(name: str, role: str, kernel: Kernel) -> Any:
    """The simulated market's stand-in for a venue whose plugin is not installed (used in mock mode only)."""
    from arbframe.market.routing import simulated_venue

    return lambda: simulated_venue(name, kernel.context, role=role)


# ------------------------------------------------------------------------------------------------ run loop
class StopSignal:
    """SIGINT/SIGTERM set an event; the current tick finishes first."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.received: str | None = None
        self._installed: list[int] = []

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
                self._installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):  # non-main thread or platform without it
                pass

    def _on_signal(self, sig: int) -> None:
        self.received = signal.Signals(sig).name
        log.info("[BOT] received %s: finishing the current tick, then shutting down", self.received)
        self.event.set()

    def uninstall(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._installed:
            loop.remove_signal_handler(sig)
        self._installed.clear()


def service_name(config: Mapping[str, Any]) -> str:
    """``service.name``: the heartbeat key's last part (seed: ``bot_service``)."""
    return str((config.get("service") or {}).get("name") or "bot_service")


def _interval(opts: RunOptions, config: Mapping[str, Any]) -> float:
    if opts.interval is not None:
        return float(opts.interval)
    return float((config.get("service") or {}).get("interval_seconds", 30))


async def paced(opts: RunOptions, interval: float, stop: StopSignal) -> AsyncIterator[int]:
    """Yield iteration numbers at ``interval`` until --once, --max-iterations, --duration or a signal.

    The body of the ``async for`` runs between yields, so a signal received during a tick lets it finish.
    """
    deadline = time.monotonic() + opts.duration if opts.duration is not None else None
    limit = 1 if opts.once else opts.max_iterations
    iteration = 0
    next_tick = time.monotonic()
    while not stop.event.is_set():
        iteration += 1
        yield iteration
        if limit is not None and iteration >= limit:
            if opts.once:
                log.info("[BOT] Exiting (--once mode)")
            return
        next_tick += interval
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            log.info("[BOT] Duration of %gs reached", opts.duration)
            return
        wait = next_tick - now
        if wait < 0:
            next_tick, wait = now, 0.0
        if deadline is not None:
            wait = min(wait, deadline - now)
        try:
            await asyncio.wait_for(stop.event.wait(), timeout=wait)
        except asyncio.TimeoutError:
            pass
        if deadline is not None and time.monotonic() >= deadline and not stop.event.is_set():
            log.info("[BOT] Duration of %gs reached", opts.duration)
            return


async def run_loop(kernel: Kernel, opts: RunOptions) -> int:
    """``arbframe run --mode paper|live``: ticks until a stop condition; 0 on a clean stop."""
    mock = bool(kernel.context.mock if opts.mock is None else opts.mock)
    service = TradingService(kernel, mock=mock)
    stop = StopSignal()
    stop.install()
    server = None
    iterations = 0
    periodic: asyncio.Task[Any] | None = None
    events: Any = None
    reconcile_stop = asyncio.Event()
    from arbframe.service.liveness import LoopState, heartbeat_path, write_heartbeat

    interval = _interval(opts, kernel.config)
    state = LoopState(interval, instance_id=service.book.instance_id)
    beat_file = heartbeat_path(kernel.config)
    try:
        await service.start()
        state.backend = service.storage.active_backend() if service.storage else ""
        _beat(beat_file, state, write_heartbeat)
        server = await _start_metrics_server(kernel, state, service.cache)
        log.info("[BOT] Starting bot service loop (interval=%gs, mode=%s%s)", interval, kernel.context.mode,
                 ", MOCK" if mock else "")
        log.info("[BOT] %s", service.metrics_line())
        engine, storage = service.engine, service.storage
        assert engine is not None and storage is not None
        redis_state = "enabled" if (kernel.config.get("redis") or {}).get("enabled") else "disabled"
        service.publish_limits(interval)
        tick_seconds = service.metrics.tick_seconds
        rollover = DayRollover(engine.stats)
        if service.reconciler is not None:
            periodic = asyncio.create_task(service.reconciler.run_periodic(reconcile_stop))
        events = service.event_ticks()
        if events is not None:
            events.start()
        async for _ in paced(opts, interval, stop):
            await service.before_tick()
            snap = await service.snapshot()
            started = time.perf_counter()
            result = engine.process(snap)
            if service.flatten_due:
                engine.close_all(snap, result)
            storage.flush()
            tick_seconds.observe(time.perf_counter() - started)  # engine, cache writes and the storage flush
            summary = rollover.update(snap.ts)
            if summary is not None:
                log.info("[BOT] day ended: %s%s", summary.text(), service.note())
                kernel.notify("arbframe_on_daily_summary", summary=summary)
            iterations += 1
            state.tick_done()
            state.backend = storage.active_backend()
            state.ready, state.ready_reason = service.ready_state()
            _beat(beat_file, state, write_heartbeat)
            service.log_tick(snap, result)
            log.info("[BOT] %s", service.metrics_line())
            log.info("[BOT] heartbeat - symbols=%s backend=%s redis=%s%s", list(service.cfg.symbols),
                     state.backend, redis_state, service.note())
    finally:
        stop.uninstall()
        if events is not None:
            await events.stop()
            log.info("[BOT] event-driven evaluations: %d (%d book changes)", events.evaluations, events.changes)
        state.stopped, state.ready, state.ready_reason = True, False, "stopped"
        reconcile_stop.set()
        if periodic is not None:
            await asyncio.gather(periodic, return_exceptions=True)
        if service.executor is not None:  # hedges in flight finish (bounded); the rest waits for the next start
            await service.executor.close(timeout=2 * service.executor.cfg.hedge_timeout_seconds + 5)
            if service.engine is not None and service.storage is not None:
                service.engine.settle_reports(await _last_snapshot(service), TickResult(utcnow()))
                service.storage.flush()
        if server is not None:
            try:
                await server.stop()
            except Exception as exc:
                log.debug("stopping the metrics server failed: %r", exc)
        if service.engine is not None:
            log.info("[BOT] final %s", service.metrics_line())
        log.info("[BOT] Shutting down (completed %d iterations)", iterations)
        await service.close()
        if service.storage is not None:
            _beat(beat_file, state, write_heartbeat)
    return 0


async def _last_snapshot(service: TradingService) -> MarketSnapshot:
    """The books and rate the last hedges are recorded against at shutdown (the last known rate when the venues
    or the FX source no longer answer)."""
    try:
        return await asyncio.wait_for(service.snapshot(), 5.0)
    except Exception:
        engine = service.engine
        return MarketSnapshot(utcnow(), {}, engine.last_fx if engine is not None else None)


def _beat(path: Any, state: Any, write: Any) -> None:
    try:
        write(path, state)
    except OSError as exc:  # a heartbeat file that cannot be written must not stop trading
        log.debug("heartbeat file %s not written: %r", path, exc)


async def _start_metrics_server(kernel: Kernel, state: Any, cache: Any = None) -> Any:
    if not (kernel.config.get("metrics_server") or {}).get("enabled"):
        return None
    from arbframe.service.metrics_server import health_provider_for, start_from_config

    def ready_provider() -> tuple[bool, str]:
        live, why = state.live()
        if not live:
            return False, f"not live: {why}"
        return state.ready, state.ready_reason

    # /health: liveness decides the HTTP status; the body is every plugin's checks plus the kernel's
    server = await start_from_config(
        kernel.config, kernel.registry, health_provider_for(kernel, cache, loop_state=state), ready_provider,
        live_provider=state.live,
    )
    if server is not None:
        log.info("[BOT] Metrics server listening on %s/metrics", server.url)
    return server


def kernel_for_run(opts: RunOptions, configs: list[str], extra_overrides: Mapping[str, Any] | None = None) -> Kernel:
    """Load the config for ``opts.mode``, apply the live gate and build a validated kernel.

    ``extra_overrides`` lets a caller (the backtest) add keys computed from the config itself.
    """
    from arbframe.kernel.config import load_config
    from arbframe.kernel.plugin_host import Kernel, validate_selected

    overrides: dict[str, Any] = {"mode": opts.mode}
    if opts.mock is not None:
        overrides["mock_mode"] = opts.mock
    overrides.update(extra_overrides or {})
    config = load_config(configs, overrides=overrides)
    if opts.mode == "live":
        if opts.mock:
            log.warning("[BOT] LIVE MODE REHEARSAL (--mock): no credentials are used, no real order is sent; quotes "
                        "come from the simulated market and fills are paper fills")
        else:
            reason = live_refusal(config)
            if reason is not None:
                raise LiveModeRefused(reason)
    mock = bool(config.get("mock_mode", False))
    kernel = Kernel(config, mode=opts.mode, mock=mock if opts.mode != "backtest" else False,
                    service_name=service_name(config))
    try:
        validate_selected(kernel)
    except Exception:
        kernel.close()
        raise
    return kernel


def run(opts: RunOptions, configs: list[str]) -> int:
    """``arbframe run --mode paper|live``: build the kernel and run the service loop until it stops."""
    return asyncio.run(run_loop(kernel_for_run(opts, configs), opts))
