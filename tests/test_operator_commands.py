"""``arbframe status``, ``profit`` and ``history`` on a CSV store whose rows the tests write themselves.

Every expected figure is computed here by hand, in Decimal, from the rows written (realized PnL and fees are the
recorded ones; the FX translation is ``USD units changed x (newest rate - rate at the close)``; an unrealized
mark is the entry legs' balance changes plus a close at the recorded VWAPs with the configured fees, at the FX
rate). The PostgreSQL variant is plugins/arbframe_storage_pg/tests/test_pg_operator_commands.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker

from arbframe.cli import main
from arbframe.core.models import Direction, FxRate, Position, PositionStatus, Spread

UTC = timezone.utc


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture(autouse=True)
def _restore_logging():
    """The commands set the root logger up (handlers, level): put it back for the next test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)
    for name in ("arbframe.upbit", "arbframe.binance"):
        logging.getLogger(name).setLevel(logging.NOTSET)


def position(pid: str, symbol: str, direction: Direction, opened: str, *, qty: str = "0.01",
             entry: tuple[str, str] = ("140000000", "96000"), entry_fx: str = "1400",
             entry_fees: str = "0") -> Position:
    return Position(
        id=pid, symbol=symbol, direction=direction, status=PositionStatus.OPEN, opened_at=at(opened), qty=D(qty),
        domestic_exchange="upbit", foreign_exchange="binance", entry_domestic_price=D(entry[0]),
        entry_foreign_price=D(entry[1]), entry_fx_rate=D(entry_fx), entry_premium=D("0.031"),
        entry_fees_krw=D(entry_fees),
    )


def closed(p: Position, when: str, *, pnl: str, exit_fees: str, exit_fx: str, changes: str | None) -> Position:
    return replace(p, status=PositionStatus.CLOSED, closed_at=at(when), exit_domestic_price=D("139000000"),
                   exit_foreign_price=D("96100"), exit_fx_rate=D(exit_fx), exit_premium=D("0.004"),
                   exit_fees_krw=D(exit_fees), realized_pnl_krw=D(pnl), close_reason="exit", balance_changes=changes)


def write_store(data_dir: Path, *, positions: list[tuple[Position, Position | None]], fx: list[FxRate] = (),
                spreads: list[Spread] = ()) -> None:
    """The store's rows, written by the CSV driver itself: each position's open row, then its close row."""
    from arbframe_storage_csv.storage import CsvStorage

    store = CsvStorage({"data_dir": str(data_dir)})
    for opened, done in positions:
        store.log_position_open(opened)
        if done is not None:
            store.log_position_close(done)
    for rate in fx:
        store.log_fx_rate(rate)
    for spread in spreads:
        store.log_spread(spread)
    store.close()


def config_file(tmp_path: Path, name: str, extra: dict[str, Any]) -> Path:
    doc = {"mode": "paper", "mock_mode": False,
           "storage": {"backend": "csv", "csv": {"data_dir": str(tmp_path / name)}},
           "arbitrage": {"symbols": ["BTC", "ETH"], "timezone": "Asia/Seoul", "max_daily_loss_krw": 500000}}
    for key, value in extra.items():
        doc[key] = {**doc.get(key, {}), **value} if isinstance(value, dict) else value
    path = tmp_path / f"{name}.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def cli_json(capsys, *argv: str) -> dict[str, Any]:
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def cli_text(capsys, *argv: str) -> str:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def check_schema(document: dict[str, Any], schema: dict[str, Any]) -> None:
    Draft202012Validator.check_schema(schema)
    Draft202012Validator(schema, format_checker=FormatChecker()).validate(document)


# --------------------------------------------------------------------------------------- profit / history
P6 = position("p6", "ETH", Direction.KIMCHI, "2026-01-01T09:00:00")
P1 = position("p1", "BTC", Direction.KIMCHI, "2026-01-01T23:00:00", entry_fees="2500.5")
P2 = position("p2", "ETH", Direction.REVERSE, "2026-01-02T14:00:00", entry_fees="1000")
P3 = position("p3", "BTC", Direction.KIMCHI, "2026-01-02T14:30:00", entry_fees="1200")
P4 = position("p4", "BTC", Direction.REVERSE, "2026-01-03T01:00:00", entry_fees="800.1")
P5 = position("p5", "BTC", Direction.KIMCHI, "2026-01-03T04:00:00", entry_fees="700")
HISTORY = [
    # a row written before the accounting model: no balance changes
    (replace(P6, entry_fees_krw=D(10)), closed(replace(P6, entry_fees_krw=D(10)), "2026-01-01T10:00:00", pnl="100",
                                                exit_fees="10", exit_fx="1390", changes=None)),
    (P1, closed(P1, "2026-01-02T00:30:00", pnl="12345.678", exit_fees="2400.25", exit_fx="1400",
                changes="binance:BTC=0.000005 binance:USDT=-0.9 upbit:KRW=13560")),
    (P2, closed(P2, "2026-01-02T14:59:59", pnl="-3000.25", exit_fees="999.75", exit_fx="1410",
                changes="binance:USDT=2.5 upbit:KRW=-6500")),
    (P3, closed(P3, "2026-01-02T15:00:00", pnl="0", exit_fees="1300", exit_fx="1405.5",
                changes="binance:USDT=-1.25 upbit:KRW=1750")),
    (P4, closed(P4, "2026-01-03T03:00:00", pnl="5000.5", exit_fees="799.9", exit_fx="1402",
                changes="binance:BNB=-0.004 binance:USDT=3 upbit:KRW=-1000")),
    (P5, None),  # still open: never in profit or history
]
RATES = [FxRate("fx1", at("2026-01-03T00:00:00"), D("1399"), "static"),
         FxRate("fx2", at("2026-01-03T05:00:00"), D("1420"), "forex:dunamu"),
         FxRate("fx0", at("2026-01-01T00:00:00"), D("1300"), "static")]  # older, written last
BNB_FEES = {"fees": {"binance": {"buy": {"asset": "BNB", "rate": 0.00075, "asset_price": 300},
                                 "sell": {"asset": "BNB", "rate": 0.00075, "asset_price": 300}}}}


@pytest.fixture
def profit_store(tmp_path: Path) -> Path:
    write_store(tmp_path / "hist", positions=HISTORY, fx=RATES)
    return config_file(tmp_path, "hist", {"paper": BNB_FEES})


def test_profit_totals_per_symbol_and_per_day_hand_computed(profit_store: Path, capsys) -> None:
    from arbframe.commands.profit import JSON_SCHEMA

    doc = cli_json(capsys, "profit", "-c", str(profit_store))
    check_schema(doc, JSON_SCHEMA)
    # wins: realized PnL > 0 -> p6 (100), p1, p4; p2 lost, p3 made exactly 0 (not a win)
    assert (doc["trades"], doc["wins"], doc["losses"]) == (5, 3, 2)
    assert D(doc["win_rate"]) == D(3) / D(5)
    assert D(doc["realized_pnl_krw"]) == D("100") + D("12345.678") + D("-3000.25") + D("0") + D("5000.5")
    assert D(doc["realized_pnl_krw"]) == D("14445.928")
    fees = (D(10) + D(10)) + (D("2500.5") + D("2400.25")) + (D(1000) + D("999.75")) + (D(1200) + D(1300)) \
        + (D("800.1") + D("799.9"))
    assert D(doc["fees_krw"]) == fees == D("11020.5")
    assert doc["avg_held_seconds"] == (3600 + 5400 + 3599 + 1800 + 7200) / 5
    assert doc["first_close"] == "2026-01-01T10:00:00+00:00" and doc["last_close"] == "2026-01-03T03:00:00+00:00"
    # FX translation at the newest stored rate (1420 at 05:00, although 1300 was written after it): USD units
    # each close changed x (1420 - its exit rate); BNB counts at 300 USDT; p6 has no balance changes
    fx = doc["fx_translation"]
    expected_fx = (D("-0.9") * (1420 - D(1400)) + D("2.5") * (1420 - D(1410)) + D("-1.25") * (1420 - D("1405.5"))
                   + (D(3) + D("-0.004") * 300) * (1420 - D(1402)))
    assert expected_fx == D("21.275")
    assert D(fx["krw"]) == expected_fx
    assert (fx["rate"], fx["rate_source"], fx["rate_ts"], fx["positions_left_out"]) == (
        "1420", "forex:dunamu", "2026-01-03T05:00:00+00:00", 1)
    by_symbol = {g["symbol"]: g for g in doc["per_symbol"]}
    assert (by_symbol["BTC"]["trades"], by_symbol["BTC"]["wins"]) == (3, 2)
    assert D(by_symbol["BTC"]["realized_pnl_krw"]) == D("12345.678") + D(0) + D("5000.5")
    assert D(by_symbol["BTC"]["fees_krw"]) == D("4900.75") + D(2500) + D(1600)
    assert (by_symbol["ETH"]["trades"], by_symbol["ETH"]["wins"]) == (2, 1)
    assert D(by_symbol["ETH"]["realized_pnl_krw"]) == D(100) + D("-3000.25")
    assert D(by_symbol["ETH"]["win_rate"]) == D("0.5")
    # days in Asia/Seoul (UTC+9): 10:00Z Jan 1 -> Jan 1; 00:30Z and 14:59:59Z Jan 2 -> Jan 2; 15:00Z Jan 2 -> Jan 3
    days = {g["day"]: (g["trades"], g["wins"], D(g["realized_pnl_krw"]), D(g["fees_krw"])) for g in doc["per_day"]}
    assert days == {
        "2026-01-01": (1, 1, D(100), D(20)),
        "2026-01-02": (2, 1, D("12345.678") + D("-3000.25"), D("4900.75") + D("1999.75")),
        "2026-01-03": (2, 1, D("5000.5"), D(2500) + D(1600)),
    }
    assert doc["storage"].startswith("CsvStorage(") and doc["keeps_history"] is True


def test_profit_since_a_day_starts_at_midnight_in_the_trading_time_zone(profit_store: Path, capsys) -> None:
    doc = cli_json(capsys, "profit", "-c", str(profit_store), "--since", "2026-01-03")
    assert doc["since"] == "2026-01-02T15:00:00+00:00"  # midnight in Seoul; p3 closed exactly then: included
    assert (doc["trades"], doc["wins"]) == (2, 1)
    assert D(doc["realized_pnl_krw"]) == D(0) + D("5000.5")
    assert D(doc["fees_krw"]) == D(2500) + D(1600)
    assert D(doc["fx_translation"]["krw"]) == D("-1.25") * (1420 - D("1405.5")) + D("1.8") * (1420 - D(1402))
    assert doc["fx_translation"]["positions_left_out"] == 0
    assert [g["day"] for g in doc["per_day"]] == ["2026-01-03"]
    # an ISO time with an offset, and one without (read in the trading time zone): the same instant
    for since in ("2026-01-02T14:59:59Z", "2026-01-02T23:59:59"):
        doc = cli_json(capsys, "profit", "-c", str(profit_store), "--since", since)
        assert doc["since"] == "2026-01-02T14:59:59+00:00"
        assert [g["symbol"] for g in doc["per_symbol"]] == ["BTC", "ETH"] and doc["trades"] == 3
    doc = cli_json(capsys, "profit", "-c", str(profit_store), "--since", "2026-02-01")
    assert doc["trades"] == 0 and doc["realized_pnl_krw"] == "0" and doc["win_rate"] is None
    assert doc["fx_translation"]["krw"] == "0" and doc["per_day"] == []


def test_profit_text(profit_store: Path, capsys) -> None:
    out = cli_text(capsys, "profit", "-c", str(profit_store))
    assert "round trips         5 (3 won, 2 lost)" in out
    assert "win rate            60.0%" in out
    assert "realized PnL        14,446 KRW" in out
    assert "fees                11,020 KRW" in out  # 11,020.5 to whole won, half to even (as the engine's log)
    assert "FX translation      21 KRW at 1420 (forex:dunamu" in out and "1 positions without balance" in out
    assert "2026-01-02       2    1     50.0%    9,345     6,900" in out
    empty = cli_text(capsys, "profit", "-c", str(profit_store), "--since", "2027-01-01")
    assert empty.startswith("No positions closed since 2026-12-31T15:00:00+00:00")


def test_history_newest_first_with_limit(profit_store: Path, capsys) -> None:
    from arbframe.commands.history import JSON_SCHEMA

    doc = cli_json(capsys, "history", "-c", str(profit_store))
    check_schema(doc, JSON_SCHEMA)
    assert [p["id"] for p in doc["positions"]] == ["p4", "p3", "p2", "p1", "p6"]
    assert (doc["total_closed"], doc["shown"]) == (5, 5)
    first = doc["positions"][0]
    assert first["held_seconds"] == 7200 and D(first["fees_krw"]) == D("800.1") + D("799.9")
    assert D(first["realized_pnl_krw"]) == D("5000.5") and first["direction"] == "reverse"
    doc = cli_json(capsys, "history", "-c", str(profit_store), "--limit", "2")
    assert [p["id"] for p in doc["positions"]] == ["p4", "p3"] and (doc["total_closed"], doc["shown"]) == (5, 2)
    out = cli_text(capsys, "history", "-c", str(profit_store), "-n", "1")
    lines = out.splitlines()
    assert lines[0].startswith("Closed positions, newest first: 1 of 5")
    assert lines[1].split() == ["CLOSED", "SYMBOL", "DIRECTION", "QTY", "HELD", "ENTRY", "EXIT", "REASON",
                                "FEES", "KRW", "PNL", "KRW"]
    # 03:00Z is 12:00 in Seoul
    assert lines[2].split() == ["2026-01-03", "12:00:00", "BTC", "reverse", "0.01", "2h00m", "3.100%", "0.400%",
                                "exit", "1,600", "5,000"]


def test_empty_store(tmp_path: Path, capsys) -> None:
    from arbframe.commands import history, profit, status

    cfg = str(config_file(tmp_path, "empty", {}))
    doc = cli_json(capsys, "history", "-c", cfg)
    check_schema(doc, history.JSON_SCHEMA)
    assert (doc["total_closed"], doc["shown"], doc["positions"]) == (0, 0, [])
    doc = cli_json(capsys, "profit", "-c", cfg)
    check_schema(doc, profit.JSON_SCHEMA)
    assert (doc["trades"], doc["realized_pnl_krw"], doc["fees_krw"], doc["win_rate"]) == (0, "0", "0", None)
    assert doc["fx_translation"] == {"krw": None, "rate": None, "rate_source": None, "rate_ts": None,
                                     "positions_left_out": 0, "note": None}
    doc = cli_json(capsys, "status", "-c", cfg, "--offline")
    check_schema(doc, status.JSON_SCHEMA)
    assert doc["positions"] == [] and doc["unrealized_pnl_krw"] is None and doc["fx"] is None
    assert doc["kill_switch"]["killed"] is False and doc["service"]["from"] is None
    assert doc["balances"]["equity_krw"] is None  # no FX rate: nothing can be valued
    assert doc["balances"]["venues"]["upbit"]["KRW"] == {"amount": "50000000", "value_krw": None}  # defaults
    assert doc["realized"]["trades"] == 0 and doc["limits"]["daily_loss"]["reached"] is False
    assert cli_text(capsys, "history", "-c", cfg).startswith("No closed positions yet in CsvStorage(")
    assert cli_text(capsys, "profit", "-c", cfg).startswith("No positions closed in CsvStorage(")
    text = cli_text(capsys, "status", "-c", cfg, "--offline")
    assert "kill switch     not killed (" in text and "Open positions (0)" in text


def test_json_schema_is_printed_without_a_store(tmp_path: Path, capsys) -> None:
    from arbframe.commands import history, profit, status

    for name, module in (("status", status), ("profit", profit), ("history", history)):
        printed = json.loads(cli_text(capsys, name, "--json-schema", "-c", str(tmp_path / "missing.yml")))
        Draft202012Validator.check_schema(printed)
        assert printed == {"$schema": "https://json-schema.org/draft/2020-12/schema", **module.JSON_SCHEMA}
    assert not (tmp_path / "data").exists()


def test_bad_since_and_limit_exit_2_with_one_line(profit_store: Path, run_cli) -> None:
    for argv, expected in ((("profit", "--since", "yesterday"), "--since: 'yesterday' is neither a date"),
                           (("profit", "--since", "2026-02-30"), "--since: '2026-02-30'"),
                           (("history", "--limit", "-3"), "--limit: '-3' is not a whole number")):
        result = run_cli(*argv, "-c", str(profit_store))
        assert result.returncode == 2, result.stderr
        assert result.stdout == ""
        assert result.stderr.strip().splitlines() == [result.stderr.strip()]
        assert expected in result.stderr and "Traceback" not in result.stderr


# ------------------------------------------------------------------------------------------------- status
STATUS_CFG = {
    "arbitrage": {"symbols": ["BTC"]},
    "paper": {"balances": {"upbit": {"KRW": 10000000, "BTC": 1}, "binance": {"USDT": 10000, "BTC": 1}},
              "fees": {"upbit": {"buy": {"rate": 0.0025}, "sell": {"rate": 0.0025}},
                       "binance": {"buy": {"rate": 0.001}, "sell": {"rate": 0.001}}}},
}
# kimchi entry of 0.01 BTC: sold on Upbit at 140,000,000 (KRW +1,400,000 - 0.25 % fee 3,500), bought on Binance
# at 96,000 (USDT -960 - 0.1 % fee 0.96)
OPEN = replace(position("open1", "BTC", Direction.KIMCHI, "2026-01-03T04:00:00", entry_fees="4844.0"),
               balance_changes="binance:BTC=0.01 binance:USDT=-960.96 upbit:BTC=-0.01 upbit:KRW=1396500")
LOSS = position("loss1", "BTC", Direction.REVERSE, "2026-01-03T01:00:00")
NOW = at("2026-01-03T06:00:00")  # 15:00 in Seoul
OTHER_OPEN = replace(position("xrp1", "XRP", Direction.KIMCHI, "2026-01-03T04:00:00"),
                     balance_changes="upbit:KRW=77 binance:USDT=-7")
OTHER_CLOSED = replace(position("btc-z", "BTC", Direction.KIMCHI, "2026-01-03T02:30:00"), instance_id="bot-z")


def spread(sid: str, ts: str, direction: Direction, domestic: str, foreign: str) -> Spread:
    return Spread(id=sid, ts=at(ts), symbol="BTC", direction=direction, domestic_exchange="upbit",
                  foreign_exchange="binance", qty=D("0.01"), domestic_price=D(domestic), foreign_price=D(foreign),
                  fx_rate=D("1420"), fx_source="forex:dunamu", fx_age_seconds=D("1"), premium=D("0.01"),
                  net_premium=D("0.005"))


@pytest.fixture
def status_store(tmp_path: Path) -> Path:
    write_store(
        tmp_path / "live", fx=[FxRate("fx2", at("2026-01-03T05:00:00"), D("1420"), "forex:dunamu")],
        positions=[(OPEN, None), (LOSS, closed(LOSS, "2026-01-03T02:00:00", pnl="-600000", exit_fees="1",
                                               exit_fx="1410", changes="binance:USDT=-0.5 upbit:KRW=1000")),
                   # other books in the same store: never counted (they would change every figure below)
                   (OTHER_OPEN, None), (OTHER_CLOSED, closed(OTHER_CLOSED, "2026-01-03T03:00:00", pnl="-1000000",
                                                             exit_fees="1", exit_fx="1410",
                                                             changes="binance:USDT=-99 upbit:KRW=-99"))],
        spreads=[spread("s0", "2026-01-03T05:00:00", Direction.KIMCHI, "120000000", "90000"),  # older: not used
                 spread("s1", "2026-01-03T05:59:00", Direction.KIMCHI, "139000000", "96500"),
                 spread("s2", "2026-01-03T05:59:30", Direction.REVERSE, "139100000", "96400")])
    return config_file(tmp_path, "live", STATUS_CFG)


def kernel_and_storage(cfg: Path):
    from arbframe.kernel.config import load_config
    from arbframe.kernel.plugin_host import Kernel, validate_selected

    kernel = Kernel(load_config([str(cfg)]))
    validate_selected(kernel)
    return kernel, kernel.load_storage()


def write_heartbeat(cfg: Path, last_tick: str) -> None:
    from arbframe.kernel.config import load_config
    from arbframe.service.liveness import heartbeat_path

    path = heartbeat_path(load_config([str(cfg)]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"instance_id": "bot", "pid": 4242, "host": "h", "interval_seconds": 5,
                                "started_at": "2026-01-03T00:00:00+00:00", "last_tick_at": last_tick,
                                "ticks": 99, "stopped": False}))


def test_status_marks_from_the_stores_last_spreads_hand_computed(status_store: Path) -> None:
    from arbframe.commands import status

    write_heartbeat(status_store, "2026-01-03T05:59:30+00:00")
    kernel, storage = kernel_and_storage(status_store)
    try:
        report = asyncio.run(status.gather(kernel, storage, offline=True, now=NOW)).to_json()
    finally:
        kernel.close()
    check_schema(report, status.JSON_SCHEMA)
    # close of the kimchi position: buy 0.01 on Upbit at the reverse row's 139,100,000 (+0.25 % fee), sell 0.01 on
    # Binance at its 96,400 (-0.1 % fee); valued at the newest stored rate, 1420
    krw = D(1396500) - D("0.01") * 139100000 * (1 + D("0.0025"))
    usdt = D("-960.96") + D("0.01") * 96400 * (1 - D("0.001"))
    assert (krw, usdt) == (D("2022.5"), D("2.076"))
    unrealized = krw + usdt * 1420
    assert unrealized == D("4970.42")
    [pos] = report["positions"]
    assert pos["id"] == "open1" and D(pos["unrealized_pnl_krw"]) == unrealized
    assert D(report["unrealized_pnl_krw"]) == unrealized and report["positions_unmarked"] == 0
    assert pos["mark"] == {"source": "storage", "detail": "the store's last spreads (VWAPs for 0.01 BTC)",
                           "as_of": "2026-01-03T05:59:00+00:00", "age_seconds": 60.0}
    assert report["fx"] == {"rate": "1420", "source": "forex:dunamu", "from": "storage",
                            "as_of": "2026-01-03T05:00:00+00:00", "age_seconds": 3600.0}
    assert report["service"]["last_tick_age_seconds"] == 30.0 and report["service"]["pid"] == 4242
    assert report["kill_switch"]["killed"] is False
    assert report["book"] == {"instance_id": "upbit-binance-BTC", "venues": ["upbit", "binance"], "symbols": ["BTC"],
                              "open_elsewhere": 1, "closed_elsewhere": 1}
    limits = report["limits"]
    # today in Seoul is 2026-01-03; the loss closed at 02:00Z (11:00 there): -600,000 <= -500,000
    assert limits["daily_loss"] == {"limit_krw": "500000", "day": "2026-01-03", "today_realized_krw": "-600000",
                                    "reached": True}
    assert limits["open_positions"] == {"open": 1, "max": 4}
    assert D(limits["open_notional_krw"]["open"]) == D("0.01") * 140000000
    assert limits["fx_age"]["blocks_entries"] is True and limits["fx_age"]["age_seconds"] == 3600.0
    # paper balances: configured start + the closed position's changes + the open position's entry legs
    amounts = {(v, a): D(x["amount"]) for v, assets in report["balances"]["venues"].items() for a, x in assets.items()}
    # (ETH: the default paper balances the config overlays; no configured symbol marks it, so it has no value)
    assert amounts == {("upbit", "KRW"): D(10000000) + 1000 + 1396500, ("upbit", "BTC"): 1 - D("0.01"),
                       ("binance", "USDT"): D(10000) - D("0.5") - D("960.96"), ("binance", "BTC"): 1 + D("0.01"),
                       ("upbit", "ETH"): D(10), ("binance", "ETH"): D(10)}
    assert report["balances"]["venues"]["upbit"]["ETH"]["value_krw"] is None
    mark = (D(139000000) + D(139100000)) / 2  # the mid of the domestic book (kimchi bid, reverse ask)
    values = {("upbit", "KRW"): D(11397500), ("upbit", "BTC"): D("0.99") * mark,
              ("binance", "USDT"): D("9038.54") * 1420, ("binance", "BTC"): D("1.01") * mark}
    for (venue, asset), value in values.items():
        assert D(report["balances"]["venues"][venue][asset]["value_krw"]) == value
    assert D(report["balances"]["equity_krw"]) == sum(values.values()) == D("302332226.8")
    assert report["balances"]["kind"] == "paper" and report["balances"]["unvalued_assets"] == ["ETH"]
    assert report["realized"] == {"keeps_history": True, "total_krw": "-600000", "trades": 1, "wins": 0,
                                  "win_rate": "0", "today_krw": "-600000"}


def test_status_marks_from_the_cache_before_the_store(status_store: Path, monkeypatch) -> None:
    from arbframe.builtins.memory_cache import MemoryCache
    from arbframe.commands import status

    cache = MemoryCache()
    cache.set_fx_rate(FxRate("fxc", at("2026-01-03T05:59:50"), D("1430"), "forex:er_api"), 3600)
    cache.set_spread_snapshot("BTC", {
        "ts": "2026-01-03T05:59:55+00:00", "fx_rate": "1430", "fx_source": "forex:er_api", "fx_age_seconds": "5",
        "kimchi": {"domestic_price": "139500000", "foreign_price": "96600", "qty": "0.01"},
        "reverse": {"domestic_price": "139600000", "foreign_price": "96300", "qty": "0.01"}}, 3600)
    monkeypatch.setattr(status, "_cache", lambda kernel: cache)
    kernel, storage = kernel_and_storage(status_store)
    try:
        report = asyncio.run(status.gather(kernel, storage, offline=True, now=NOW)).to_json()
    finally:
        kernel.close()
    unrealized = (D(1396500) - D("0.01") * 139600000 * (1 + D("0.0025"))
                  + (D("-960.96") + D("0.01") * 96300 * (1 - D("0.001"))) * 1430)
    assert unrealized == D("-1449.89")
    assert D(report["positions"][0]["unrealized_pnl_krw"]) == unrealized
    assert report["positions"][0]["mark"]["source"] == "cache"
    assert report["positions"][0]["mark"]["age_seconds"] == 5.0
    assert (report["fx"]["from"], report["fx"]["rate"]) == ("cache", "1430")


def test_status_cli_json_and_text(status_store: Path, capsys) -> None:
    from arbframe.commands import status

    doc = cli_json(capsys, "status", "-c", str(status_store), "--offline")
    check_schema(doc, status.JSON_SCHEMA)
    assert D(doc["positions"][0]["unrealized_pnl_krw"]) == D("4970.42")  # the marks do not depend on the clock
    assert doc["positions"][0]["mark"]["source"] == "storage"
    assert D(doc["balances"]["equity_krw"]) == D("302332226.8")
    text = cli_text(capsys, "status", "-c", str(status_store), "--offline")
    assert "kill switch     not killed (" in text
    assert cli_text(capsys, "kill", "-c", str(status_store), "--reason", "drill") is not None
    doc = cli_json(capsys, "status", "-c", str(status_store), "--offline")
    assert (doc["kill_switch"]["killed"], doc["kill_switch"]["reason"]) == (True, "drill")
    assert "kill switch     KILLED since " in cli_text(capsys, "status", "-c", str(status_store), "--offline")
    assert "4,970  storage" in text
    assert "BTC marked with the store's last spreads (VWAPs for 0.01 BTC)" in text
    assert "equity  302,332,227 KRW" in text
    # the loss closed on 2026-01-03 (Seoul), long before the clock's today
    assert "daily loss      today 0 KRW realized of a -500,000 KRW limit (ok)" in text


def test_status_in_mock_mode_marks_on_the_simulated_market(status_store: Path, capsys) -> None:
    from arbframe.commands import status

    doc = cli_json(capsys, "status", "-c", str(status_store), "--mock")
    check_schema(doc, status.JSON_SCHEMA)
    assert doc["mock"] is True and doc["mark_notes"] == []
    mark = doc["positions"][0]["mark"]
    assert mark["source"] == "simulated" and "not the running service's market state" in mark["detail"]
    assert doc["positions"][0]["unrealized_pnl_krw"] is not None and doc["fx"]["from"] == "fx source"


def test_status_kill_and_resume_show_the_stored_residual_exposure_hand_computed(status_store: Path,
                                                                                  capsys) -> None:
    """A hedge left 0.01 BTC short on Upbit (valued at its decision VWAP 148,000,000) and another 0.004 BTC long
    on Binance (at 150,000,000): BTC nets to -0.006 at the latest mark, 0.006 x 150,000,000 = 900,000 KRW, over
    the default live.max_residual_krw of 50,000. A runner that no longer trades XRP left 100 XRP long on Upbit
    (at 3,100: 310,000 KRW): shown, in the total (1,210,000), not in what blocks this book's entries.
    ``resume`` keeps them; ``resume --flattened`` clears them."""
    from arbframe_storage_csv.storage import CsvStorage

    from arbframe.commands import status
    from arbframe.execution.control import KillSwitch
    from arbframe.execution.residual import Residual, ResidualStore

    data = status_store.parent / "live"
    store = ResidualStore(CsvStorage({"data_dir": str(data)}), "upbit", "binance", ["BTC"])
    store.save("BTC", [Residual("p1", "open", "BTC", "upbit", D("-0.01"), D("148000000"), "2026-01-03T04:00:00+00:00"),
                       Residual("p2", "open", "BTC", "binance", D("0.004"), D("150000000"),
                                "2026-01-03T05:00:00+00:00")])
    ResidualStore(CsvStorage({"data_dir": str(data)}), "upbit", "binance", ["XRP"]).save(
        "XRP", [Residual("x1", "close", "XRP", "upbit", D("100"), D("3100"), "2026-01-02T04:00:00+00:00")])
    doc = cli_json(capsys, "status", "-c", str(status_store), "--offline")
    check_schema(doc, status.JSON_SCHEMA)
    residual = doc["residual_exposure"]
    # marked to market where status has a mark: BTC's, the mid of the stored spreads' Upbit prices, the kimchi
    # row's bid 139,000,000 and the reverse row's ask 139,100,000: 139,050,000; -0.006 x 139,050,000 = -834,300.
    # XRP has no book here: at its hedge's price, 100 x 3,100 = 310,000. Total 834,300 + 310,000 = 1,144,300
    assert (residual["total_krw"], residual["max_krw"], residual["blocks_entries"]) == ("1144300.000", "50000", True)
    assert residual["symbols"] == {
        "BTC": {"coin": "-0.006", "krw": "-834300.000", "mark_krw": "139050000", "marked": True, "in_book": True,
                "venues": {"binance": "0.004", "upbit": "-0.01"}},
        "XRP": {"coin": "100", "krw": "310000", "mark_krw": "3100", "marked": False, "in_book": False,
                "venues": {"upbit": "100"}}}
    assert [r["position_id"] for r in residual["residuals"]] == ["p1", "p2", "x1"]
    text = cli_text(capsys, "status", "-c", str(status_store), "--offline")
    assert ("residual        1,144,300 KRW of max 50,000 KRW (OVER: new entries blocked); flattened by hand: "
            "arbframe resume --flattened") in text
    assert "                BTC -0.006 (binance +0.004, upbit -0.01) = 834,300 KRW at 139050000 (market mark)\n" in text
    assert ("                XRP +100 (upbit +100) = 310,000 KRW at 3100 (hedge price) (not a symbol of this book: no "
            "runner of it "
            "counts it)") in text

    out = cli_text(capsys, "kill", "-c", str(status_store), "--status")
    assert "residual exposure: 1,210,000 KRW (live.max_residual_krw=50000: entries blocked)" in out
    assert "  XRP +100 (upbit +100) = 310,000 KRW at 3100 (hedge price) (not a symbol of this book)" in out
    assert "BTC -0.01 on upbit (short: buy 0.01 there to flatten; -1,480,000 KRW at 148000000; hedge p1 open" in out
    out = cli_text(capsys, "resume", "-c", str(status_store))
    assert "once it is flattened by hand on the venue: arbframe resume --flattened" in out
    assert len(store.load(every_symbol=True)) == 3
    assert KillSwitch(CsvStorage({"data_dir": str(data)})).read().flattened == ()
    out = cli_text(capsys, "resume", "-c", str(status_store), "--flattened")
    assert "residual exposure cleared (flattened by hand): 1,210,000 KRW (live.max_residual_krw=50000)" in out
    assert store.load(every_symbol=True) == []  # cleared in the store at once; a running runner drops them in a tick
    assert KillSwitch(CsvStorage({"data_dir": str(data)})).read().flattened == ("p1:open", "p2:open", "x1:close")
    doc = cli_json(capsys, "status", "-c", str(status_store), "--offline")
    assert (doc["residual_exposure"]["total_krw"], doc["residual_exposure"]["residuals"]) == ("0", [])
    assert "residual        none recorded (" in cli_text(capsys, "status", "-c", str(status_store), "--offline")
    assert "residual exposure: none recorded (nothing to clear)" in cli_text(
        capsys, "resume", "-c", str(status_store), "--flattened")
    # kill --flattened: the residual is cleared, the switch stays tripped with the reason it had
    store.save("BTC", [Residual("p3", "open", "BTC", "upbit", D("-0.01"), D("148000000"), "2026-01-03T06:00:00+00:00")])
    cli_text(capsys, "kill", "-c", str(status_store), "--reason", "hedge failures", "--flatten")
    out = cli_text(capsys, "kill", "-c", str(status_store), "--flattened")
    assert "residual exposure cleared (flattened by hand): 1,480,000 KRW" in out
    assert store.load(every_symbol=True) == []
    state = KillSwitch(CsvStorage({"data_dir": str(data)})).read()
    assert (state.killed, state.reason, state.flatten, state.flattened) == (True, "hedge failures", True, ("p3:open",))
