"""``arbframe run --mode live`` in process, its exchanges replaced by the in-process fake venues: the live gate
opens with keys and confirmation, the start-up reconciliation runs before the first entry, entries and their
reports go through the live executor, the kill switch written by ``arbframe kill`` stops entries within one tick
and ``--flatten`` closes, and everything the venues did is in the CSV files."""

from __future__ import annotations

import asyncio
import csv
from decimal import Decimal as D

import pytest

from arbframe.cli import build_parser
from arbframe.kernel.plugin_host import Kernel
from arbframe.service.runner import RunOptions, kernel_for_run, run_loop
from arbframe.testing.execution_kit import FAST, live_pair


def live_kernel(tmp_path, pair, monkeypatch, **live):
    overrides = {
        "storage": {"backend": "csv", "csv": {"data_dir": str(tmp_path / "data")}},
        "upbit": {"api_key": "k", "api_secret": "s"}, "binance": {"api_key": "k", "api_secret": "s"},
        "live": {"confirm": True, **{k: v for k, v in FAST.items()}, "reconcile_interval_minutes": 10, **live},
        "arbitrage": {"symbols": ["BTC"], "order_notional_krw": 1_000_000, "entry_threshold": 0.02,
                      "exit_threshold": 0.005, "cooldown_seconds": 0, "use_tether": False,
                      "max_book_age_seconds": 30},
        "fx": {"source": "static", "static_rate": 1350},
        "paper": {"fees": {"binance": {"buy": {"asset": "base"}}}},
        "metrics_server": {"enabled": False},
        "service": {"instance_id": "live-test"},
    }
    exchanges = {"upbit": pair.up, "binance": pair.bn}
    monkeypatch.setattr(Kernel, "load_exchange", lambda self, name, simulated=None: exchanges[name])
    monkeypatch.chdir(tmp_path)
    return kernel_for_run(RunOptions(mode="live", mock=False), [], extra_overrides=overrides)


def command(*argv: str) -> int:
    """An ``arbframe`` sub-command as the CLI runs it, without replacing the test's log handlers."""
    args = build_parser(argv[0]).parse_args(list(argv))
    return args.handler(args)


def rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_live_mode_trades_through_the_executor(tmp_path, monkeypatch, caplog) -> None:
    caplog.set_level("INFO")
    pair = live_pair()
    kernel = live_kernel(tmp_path, pair, monkeypatch)
    assert asyncio.run(run_loop(kernel, RunOptions(mode="live", max_iterations=3, interval=0.2))) == 0
    messages = [r.getMessage() for r in caplog.records]
    done = next(i for i, m in enumerate(messages) if m.startswith("[RECON] start-up reconciliation done"))
    entry = next(i for i, m in enumerate(messages) if m.startswith("[BOT] ENTRY kimchi BTC"))
    assert done < entry  # reconciliation before the first entry
    positions = rows(tmp_path / "data" / "positions.csv")
    assert [(p["symbol"], p["status"], p["qty"]) for p in positions] == [("BTC", "open", "0.0100")]
    orders = rows(tmp_path / "data" / "orders.csv")
    assert {o["status"] for o in orders} == {"sent", "filled"} and len(orders) == 4
    trades = rows(tmp_path / "data" / "trades.csv")
    assert len(trades) == 2
    assert len(set(pair.upbit.placements + pair.binance.placements)) == 2
    assert kernel.registry.get_sample_value("arbframe_kill_switch") == 0
    assert kernel.registry.get_sample_value("arbframe_risk_limit", {"limit": "max_residual_krw"}) == 50000


def test_kill_switch_from_the_command_line_stops_entries_and_flattens(tmp_path, monkeypatch, caplog) -> None:
    caplog.set_level("INFO")
    pair = live_pair()
    kernel = live_kernel(tmp_path, pair, monkeypatch)
    assert asyncio.run(run_loop(kernel, RunOptions(mode="live", max_iterations=2, interval=0.2))) == 0
    assert len([p for p in rows(tmp_path / "data" / "positions.csv") if p["status"] == "open"]) == 1
    config = tmp_path / "arbframe.yml"
    config.write_text(f"storage: {{backend: csv, csv: {{data_dir: {tmp_path / 'data'}}}}}\n")
    assert command("kill", "--flatten", "--reason", "test incident", "--config", str(config)) == 0
    caplog.clear()
    kernel = live_kernel(tmp_path, pair, monkeypatch)
    assert asyncio.run(run_loop(kernel, RunOptions(mode="live", max_iterations=3, interval=0.2))) == 0
    messages = [r.getMessage() for r in caplog.records]
    assert any("kill switch tripped" in m and "test incident" in m for m in messages)
    latest = {p["id"]: p for p in rows(tmp_path / "data" / "positions.csv")}
    assert [p["close_reason"] for p in latest.values()] == ["kill"]
    assert not any(m.startswith("[BOT] ENTRY") for m in messages)
    assert kernel.registry.get_sample_value("arbframe_kill_switch") == 1
    assert command("resume", "--config", str(config)) == 0
    caplog.clear()
    kernel = live_kernel(tmp_path, pair, monkeypatch)
    assert asyncio.run(run_loop(kernel, RunOptions(mode="live", max_iterations=1, interval=0.2))) == 0
    assert any(m.startswith("[BOT] ENTRY") for m in (r.getMessage() for r in caplog.records))
    balances = pair.balances()
    assert balances[("upbit", "BTC")] + balances[("binance", "BTC")] - D(2) >= 0


def test_live_mode_refuses_read_only_exchanges(tmp_path, monkeypatch) -> None:
    from arbframe.kernel.interfaces import MarketData
    from arbframe.service.runner import LiveModeRefused

    class ReadOnly(MarketData):
        name = "upbit"
        quote_currency = "KRW"
        fee_rate = D("0.0005")

        async def fetch_order_book(self, symbol, depth=15):
            raise NotImplementedError

        def market_rules(self, symbol):
            raise KeyError(symbol)

    pair = live_pair()
    kernel = live_kernel(tmp_path, pair, monkeypatch)
    monkeypatch.setattr(Kernel, "load_exchange", lambda self, name, simulated=None: ReadOnly())
    with pytest.raises(LiveModeRefused, match="no trading side"):
        asyncio.run(run_loop(kernel, RunOptions(mode="live", max_iterations=1, interval=0.1)))


@pytest.mark.parametrize(("options", "live", "why"), [
    (frozenset(), {}, "does not declare IOC orders"),
    (frozenset({"time_in_force"}), {"dry_run": True}, "cannot send test orders"),
])
def test_live_mode_refuses_drivers_without_ioc_or_test_orders(tmp_path, monkeypatch, options, live, why) -> None:
    from arbframe.service.runner import LiveModeRefused

    pair = live_pair()
    for exchange in (pair.up, pair.bn):
        exchange.order_options = options
    kernel = live_kernel(tmp_path, pair, monkeypatch, **live)
    with pytest.raises(LiveModeRefused, match=why):
        asyncio.run(run_loop(kernel, RunOptions(mode="live", max_iterations=1, interval=0.1)))
    assert pair.upbit.placements == [] and pair.binance.placements == []


def test_dry_run_through_the_service_never_fills(tmp_path, monkeypatch, caplog) -> None:
    caplog.set_level("INFO")
    pair = live_pair()
    kernel = live_kernel(tmp_path, pair, monkeypatch, dry_run=True)
    assert asyncio.run(run_loop(kernel, RunOptions(mode="live", max_iterations=3, interval=0.2))) == 0
    assert pair.upbit.orders == {} and pair.binance.orders == {} and pair.balances() == pair.start
    assert any("DRY RUN" in r.getMessage() for r in caplog.records)
    assert any("(dry run: nothing placed)" in r.getMessage() for r in caplog.records)
    assert not (tmp_path / "data" / "positions.csv").exists() or \
        rows(tmp_path / "data" / "positions.csv") == []
