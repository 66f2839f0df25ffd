"""Event-driven ticks (issue 20, item 8): a streamed book change evaluates its symbol, coalesced, one at a time."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from arbframe.core.models import BookLevel, OrderBook
from arbframe.kernel.config import load_config
from arbframe.kernel.plugin_host import Kernel
from arbframe.service.events import EventTicks, streaming_sources
from arbframe.service.runner import RunOptions, TradingService, run_loop
from tests.test_runner_loop import _kernel

TS = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _book(venue: str, symbol: str, bid: str = "100", ask: str = "101") -> OrderBook:
    return OrderBook(venue, symbol, (BookLevel(Decimal(bid), Decimal(1)),), (BookLevel(Decimal(ask), Decimal(1)),),
                     TS)


class FakeStream:
    """A venue whose books arrive through an asyncio.Queue (what ``stream_order_books`` gives)."""

    def __init__(self, name: str, use_websocket: bool = True) -> None:
        self.name = name
        self.use_websocket = use_websocket
        self.queue: asyncio.Queue[OrderBook] = asyncio.Queue()
        self.opened: list[tuple[list[str], int]] = []

    def stream_order_books(self, symbols: list[str], depth: int = 15):
        self.opened.append((symbols, depth))

        async def books():
            while True:
                yield await self.queue.get()

        return books()

    def push(self, *symbols: str) -> None:
        for symbol in symbols:
            self.queue.put_nowait(_book(self.name, symbol))


class Recorder:
    """``evaluate``: records each call, checks no call overlaps another, and lets a test await the next one."""

    def __init__(self) -> None:
        self.calls: list[set[str]] = []
        self.inside = False
        self.arrived = asyncio.Event()

    def __call__(self, symbols: set[str]) -> None:
        assert not self.inside, "two evaluations at once"
        self.inside = True
        self.calls.append(set(symbols))
        self.inside = False
        self.arrived.set()

    async def next(self) -> set[str]:
        await asyncio.wait_for(self.arrived.wait(), 5)
        self.arrived.clear()
        return self.calls[-1]


async def _ticks(symbols=("BTC", "ETH", "XRP")):
    up, bn = FakeStream("upbit"), FakeStream("binance")
    rec = Recorder()
    ticks = EventTicks(streaming_sources({"upbit": up, "binance": bn}, symbols, 5), symbols, rec)
    ticks.start()
    return up, bn, rec, ticks


async def test_one_change_is_one_evaluation_of_that_symbol_only() -> None:
    up, bn, rec, ticks = await _ticks()
    try:
        up.push("BTC")
        assert await rec.next() == {"BTC"}
        assert up.opened == [(["BTC", "ETH", "XRP"], 5)] and bn.opened == [(["BTC", "ETH", "XRP"], 5)]
        bn.push("ETH")
        assert await rec.next() == {"ETH"}
        assert rec.calls == [{"BTC"}, {"ETH"}]  # XRP never evaluated: its books did not change
        assert ticks.books[("upbit", "BTC")].symbol == "BTC" and ("binance", "ETH") in ticks.books
        assert (ticks.evaluations, ticks.changes) == (2, 2)
    finally:
        await ticks.stop()
    assert not ticks.running


async def test_a_burst_on_both_venues_is_one_evaluation() -> None:
    up, bn, rec, ticks = await _ticks()
    try:
        up.push(*["BTC"] * 20)
        bn.push(*["BTC"] * 20)
        assert await rec.next() == {"BTC"}
        # a marker change afterwards: had the burst been evaluated twice, the second would come first
        up.push("XRP")
        assert await rec.next() == {"XRP"}
        assert rec.calls == [{"BTC"}, {"XRP"}]
        assert ticks.changes == 41
    finally:
        await ticks.stop()


async def test_a_burst_over_symbols_is_one_evaluation_of_each_changed_symbol() -> None:
    up, _bn, rec, ticks = await _ticks()
    try:
        up.push("BTC", "ETH", "BTC", "ETH")
        assert await rec.next() == {"BTC", "ETH"}
        assert len(rec.calls) == 1
    finally:
        await ticks.stop()


async def test_unconfigured_symbols_and_non_streaming_venues_trigger_nothing() -> None:
    up, rest = FakeStream("upbit"), FakeStream("binance", use_websocket=False)
    rec = Recorder()
    sources = streaming_sources({"upbit": up, "binance": rest}, ["BTC"], 5)
    assert list(sources) == ["upbit"] and rest.opened == []  # REST polling: the interval tick only
    ticks = EventTicks(sources, ["BTC"], rec)
    ticks.start()
    try:
        up.push("DOGE")  # streamed but not traded: kept, not evaluated
        up.push("BTC")
        assert await rec.next() == {"BTC"}
        assert rec.calls == [{"BTC"}] and ("upbit", "DOGE") in ticks.books and ticks.changes == 1
    finally:
        await ticks.stop()


async def test_a_failed_evaluation_does_not_stop_the_next(caplog) -> None:
    up = FakeStream("upbit")
    seen: list[set[str]] = []
    done = asyncio.Event()

    def evaluate(symbols: set[str]) -> None:
        seen.append(symbols)
        if len(seen) == 1:
            raise RuntimeError("boom")
        done.set()

    ticks = EventTicks(streaming_sources({"upbit": up}, ["BTC"], 5), ["BTC"], evaluate)
    ticks.start()
    try:
        up.push("BTC")
        while not seen:
            await asyncio.sleep(0)
        up.push("BTC")
        await asyncio.wait_for(done.wait(), 5)
        assert seen == [{"BTC"}, {"BTC"}]
        assert "event-driven evaluation of BTC failed" in caplog.text
    finally:
        await ticks.stop()


# ------------------------------------------------------------------------------------ with the trading service


async def test_partial_process_evaluates_only_the_given_symbols(tmp_path) -> None:
    kernel = _kernel(tmp_path)
    service = TradingService(kernel, mock=True)
    await service.start()
    try:
        engine = service.engine
        snap = await service.snapshot()
        symbols = list(service.cfg.symbols)
        assert len(symbols) >= 2
        one = symbols[0]
        result = engine.process(snap, {one})
        assert result.quotes and {q.symbol for q in result.quotes} == {one}
        assert (engine.ticks, engine.event_ticks) == (0, 1)
        assert result.spreads == []  # housekeeping (spread records, cache, metrics) is the interval tick's
        assert kernel.registry.get_sample_value("arbitrage_ticks_total") in (None, 0)
        full = engine.process(snap)
        assert {q.symbol for q in full.quotes} == set(symbols) and engine.ticks == 1
        event_snap = service.event_snapshot({})
        assert event_snap.books == snap.books and event_snap.fx == snap.fx
    finally:
        await service.close()


async def test_rest_and_mock_mode_run_interval_ticks_only(tmp_path) -> None:
    kernel = _kernel(tmp_path)
    service = TradingService(kernel, mock=True)
    await service.start()
    try:
        assert service.event_ticks() is None  # nothing streams in mock mode
    finally:
        await service.close()
    kernel = _kernel(tmp_path / "b")
    assert await run_loop(kernel, RunOptions(max_iterations=2, interval=0.01)) == 0
    assert kernel.registry.get_sample_value("arbitrage_ticks_total") == 2


async def test_event_driven_switch_is_schema_validated(tmp_path) -> None:
    from arbframe.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"service\.event_driven"):
        load_config([], overrides={"service": {"event_driven": "yes"}})
    assert load_config([], overrides={"service": {"event_driven": False}})["service"]["event_driven"] is False


async def test_service_with_streams_evaluates_on_fake_venue_book_changes(tmp_path) -> None:
    up_mod = pytest.importorskip("arbframe_exchange_upbit.testing.fake_server")
    bn_mod = pytest.importorskip("arbframe_exchange_binance.testing.fake_server")
    async with up_mod.FakeUpbit(ws_interval=0.05) as upbit:
        binance = bn_mod.FakeBinance(push_interval=None)
        await binance.start()
        try:
            common = {"rate_limit": 1000, "timeout_seconds": 2.0, "use_websocket": True}
            kernel = Kernel(load_config([], overrides={
                "mock_mode": False,
                "storage": {"csv": {"data_dir": str(tmp_path / "data")}},
                "arbitrage": {"symbols": ["BTC", "ETH"]},
                "fx": {"source": "static"},
                "upbit": {**common, "base_url": upbit.base_url, "ws_url": upbit.ws_url},
                "binance": {**common, "base_url": binance.base_url, "ws_url": binance.ws_url,
                            "use_websocket": False},  # REST: its books come from the interval tick
            }), mode="paper", mock=False)
            service = TradingService(kernel, mock=False)
            await service.start()
            try:
                await service.snapshot()
                ticks = service.event_ticks()
                assert ticks is not None and set(ticks.sources) == {"upbit"}
                rec = Recorder()
                inner = ticks.evaluate

                def evaluate(symbols: set[str]) -> None:
                    inner(symbols)
                    rec(symbols)

                ticks.evaluate = evaluate
                ticks.start()
                seen: set[str] = set()
                while seen != {"BTC", "ETH"}:  # the snapshots each stream sends on subscribing
                    seen |= await rec.next()
                before = len(rec.calls)
                # the fake Upbit moves its market every 50 ms while a client streams: realtime books follow
                while ("upbit", "BTC") not in ticks.books or len(rec.calls) == before:
                    await rec.next()
                assert all(call <= {"BTC", "ETH"} for call in rec.calls)
                assert service.engine.event_ticks == ticks.evaluations == len(rec.calls)
                assert ticks.evaluations <= ticks.changes
                await ticks.stop()
            finally:
                await service.close()
        finally:
            await binance.close()
