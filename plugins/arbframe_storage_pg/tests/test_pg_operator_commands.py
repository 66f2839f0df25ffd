"""``arbframe status``, ``profit`` and ``history`` reading PostgreSQL (a throwaway server, a fresh schema per test).

The rows are written by the driver itself (``log_*`` then ``close``); the commands run as an operator runs them
(``python -m arbframe ... --json``) and their output is checked against the schema each prints with
``--json-schema``. Every expected figure is computed here by hand, in Decimal, from those rows: realized PnL and
fees as recorded, FX translation ``USD units changed x (newest rate - exit rate)``, an unrealized mark as entry
legs plus a close at the recorded VWAPs with the configured fees.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker

from arbframe import Direction, FxRate, Position, PositionStatus, Spread

pytestmark = pytest.mark.postgres

UTC = timezone.utc


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def opened(pid: str, symbol: str, direction: Direction, when: str, *, qty: str = "0.01", fees: str = "0",
           changes: str | None = None) -> Position:
    return Position(
        id=pid, symbol=symbol, direction=direction, status=PositionStatus.OPEN, opened_at=at(when), qty=D(qty),
        domestic_exchange="upbit", foreign_exchange="binance", entry_domestic_price=D("135000000"),
        entry_foreign_price=D("95000"), entry_fx_rate=D("1380"), entry_premium=D("0.03"), entry_fees_krw=D(fees),
        balance_changes=changes,
    )


def closing(p: Position, when: str, *, pnl: str, fees: str, fx: str, changes: str) -> Position:
    return replace(p, status=PositionStatus.CLOSED, closed_at=at(when), exit_domestic_price=D("134000000"),
                   exit_foreign_price=D("95100"), exit_fx_rate=D(fx), exit_premium=D("0.005"), exit_fees_krw=D(fees),
                   realized_pnl_krw=D(pnl), close_reason="exit", balance_changes=changes)


Q1 = opened("q1", "BTC", Direction.KIMCHI, "2026-03-01T00:00:00", fees="300")
Q2 = opened("q2", "ETH", Direction.KIMCHI, "2026-03-01T14:00:00", fees="100")
Q3 = opened("q3", "BTC", Direction.REVERSE, "2026-03-02T03:00:00", fees="50")
# kimchi entry of 0.02 BTC: +2,700,000 KRW on Upbit (no fee written here), -1,900 USDT on Binance
O1 = opened("o1", "BTC", Direction.KIMCHI, "2026-03-02T04:05:00", qty="0.02",
            changes="binance:BTC=0.02 binance:USDT=-1900 upbit:BTC=-0.02 upbit:KRW=2700000")
CLOSES = [closing(Q1, "2026-03-01T01:00:00", pnl="2000.5", fees="250.25", fx="1380",
                  changes="binance:USDT=-1 upbit:KRW=3400"),
          closing(Q2, "2026-03-01T16:00:00", pnl="-750.75", fees="99.5", fx="1390",
                  changes="binance:USDT=0.5 upbit:KRW=-1440"),
          closing(Q3, "2026-03-02T03:30:00", pnl="1.25", fees="50", fx="1385",
                  changes="binance:USDT=2 upbit:KRW=-2800")]


def spread(sid: str, ts: str, symbol: str, direction: Direction, domestic: str, foreign: str) -> Spread:
    return Spread(id=sid, ts=at(ts), symbol=symbol, direction=direction, domestic_exchange="upbit",
                  foreign_exchange="binance", qty=D("0.01"), domestic_price=D(domestic), foreign_price=D(foreign),
                  fx_rate=D("1400"), fx_source="forex:dunamu", fx_age_seconds=D("0"), premium=D("0.02"),
                  net_premium=D("0.01"))


@pytest.fixture
def store(open_storage, section: dict[str, Any], tmp_path: Path) -> Path:
    """The rows, written by PostgresStorage; returns the config file of a CSV-free run on that schema."""
    s = open_storage()
    for p in (Q1, Q2, Q3, O1):
        s.log_position_open(p)
    for p in CLOSES:
        s.log_position_close(p)
    s.log_fx_rate(FxRate("fx-b", at("2026-03-02T04:00:00"), D("1400"), "forex:dunamu"))
    s.log_fx_rate(FxRate("fx-a", at("2026-03-01T00:00:00"), D("1375"), "static"))
    for row in (spread("s-old", "2026-03-02T03:00:00", "BTC", Direction.KIMCHI, "100000000", "80000"),
                spread("s-k", "2026-03-02T04:10:00", "BTC", Direction.KIMCHI, "135500000", "95200"),
                spread("s-r", "2026-03-02T04:10:00", "BTC", Direction.REVERSE, "135600000", "95100"),
                spread("s-eth", "2026-03-02T04:20:00", "ETH", Direction.KIMCHI, "5000000", "3500")):
        s.log_spread(row)
    s.close()
    doc = {
        "mode": "paper", "mock_mode": False,
        "storage": {"backend": "postgres", "postgres": section, "csv": {"data_dir": str(tmp_path / "csv")}},
        "arbitrage": {"symbols": ["BTC", "ETH"], "timezone": "Asia/Seoul", "max_daily_loss_krw": 500},
        "paper": {"balances": {"upbit": {"KRW": 5000000, "BTC": 2}, "binance": {"USDT": 5000, "BTC": 2}},
                  "fees": {"upbit": {"buy": {"rate": 0.001}, "sell": {"rate": 0.001}},
                           "binance": {"buy": {"rate": 0}, "sell": {"rate": 0}}}},
    }
    path = tmp_path / "pg.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def cli(run_arbframe):
    """cli(command, *args) -> the command's --json document, validated against its --json-schema."""
    schemas: dict[str, Any] = {}

    def run(command: str, *args: str) -> dict[str, Any]:
        if command not in schemas:
            printed = run_arbframe(command, "--json-schema")
            assert printed.returncode == 0, printed.stderr
            schemas[command] = json.loads(printed.stdout)
            Draft202012Validator.check_schema(schemas[command])
        result = run_arbframe(command, *args, "--json")
        assert result.returncode == 0, result.stderr
        document = json.loads(result.stdout)
        Draft202012Validator(schemas[command], format_checker=FormatChecker()).validate(document)
        return document

    return run


def test_profit_and_history_from_postgres(store: Path, cli) -> None:
    doc = cli("profit", "-c", str(store))
    assert doc["storage"].startswith("PostgresStorage(")
    assert (doc["trades"], doc["wins"], doc["losses"]) == (3, 2, 1)
    assert D(doc["win_rate"]) == D(2) / D(3)
    assert D(doc["realized_pnl_krw"]) == D("2000.5") + D("-750.75") + D("1.25") == D(1251)
    assert D(doc["fees_krw"]) == (D(300) + D("250.25")) + (D(100) + D("99.5")) + (D(50) + D(50)) == D("849.75")
    # newest stored rate: 1400 (the 1375 row was written after it but is older)
    expected_fx = D(-1) * (1400 - D(1380)) + D("0.5") * (1400 - D(1390)) + D(2) * (1400 - D(1385))
    assert D(doc["fx_translation"]["krw"]) == expected_fx == D(15)
    assert doc["fx_translation"]["rate"] == "1400" and doc["fx_translation"]["positions_left_out"] == 0
    days = {g["day"]: (g["trades"], g["wins"], D(g["realized_pnl_krw"]), D(g["fees_krw"])) for g in doc["per_day"]}
    # 01:00Z March 1 is 10:00 in Seoul; 16:00Z March 1 is 01:00 March 2 there
    assert days == {"2026-03-01": (1, 1, D("2000.5"), D("550.25")),
                    "2026-03-02": (2, 1, D("-750.75") + D("1.25"), D("199.5") + D(100))}
    symbols = {g["symbol"]: (g["trades"], g["wins"], D(g["realized_pnl_krw"])) for g in doc["per_symbol"]}
    assert symbols == {"BTC": (2, 2, D("2001.75")), "ETH": (1, 0, D("-750.75"))}
    since = cli("profit", "-c", str(store), "--since", "2026-03-02")
    assert since["since"] == "2026-03-01T15:00:00+00:00"
    assert (since["trades"], since["wins"], D(since["realized_pnl_krw"])) == (2, 1, D("-749.5"))
    assert D(since["fx_translation"]["krw"]) == D("0.5") * 10 + D(2) * 15
    hist = cli("history", "-c", str(store), "--limit", "2")
    assert [p["id"] for p in hist["positions"]] == ["q3", "q2"] and hist["total_closed"] == 3


def test_status_from_postgres_hand_computed(store: Path, cli) -> None:
    report = cli("status", "-c", str(store), "--offline")
    # close of the 0.02 BTC kimchi position: buy on Upbit at the reverse row's 135,600,000 plus 0.1 %, sell on
    # Binance at its 95,100 without a fee; USDT at the newest stored rate, 1400
    krw = D(2700000) - D("0.02") * 135600000 * (1 + D("0.001"))
    usdt = D(-1900) + D("0.02") * 95100
    assert (krw, usdt) == (D(-14712), D(2))
    [pos] = report["positions"]
    assert D(pos["unrealized_pnl_krw"]) == krw + usdt * 1400 == D(-11912)
    assert pos["mark"]["source"] == "storage" and pos["mark"]["as_of"] == "2026-03-02T04:10:00+00:00"
    assert report["fx"]["from"] == "storage" and report["fx"]["as_of"] == "2026-03-02T04:00:00+00:00"
    # the closes were in March 2026, before the clock's today (tests/test_operator_commands.py pins the clock)
    assert report["limits"]["daily_loss"] == {"limit_krw": "500", "day": report["limits"]["daily_loss"]["day"],
                                              "today_realized_krw": "0", "reached": False}
    venues = report["balances"]["venues"]
    assert D(venues["upbit"]["KRW"]["amount"]) == D(5000000) + 3400 - 1440 - 2800 + 2700000
    assert D(venues["binance"]["USDT"]["amount"]) == D(5000) - 1 + D("0.5") + 2 - 1900
    mark = (D(135500000) + D(135600000)) / 2
    equity = (D(7699160) + D("1.98") * mark + D("3101.5") * 1400 + D("2.02") * mark)
    assert D(report["balances"]["equity_krw"]) == equity == D(554241260)
    assert report["realized"]["trades"] == 3 and D(report["realized"]["total_krw"]) == D(1251)
    assert report["storage"].startswith("PostgresStorage(") and report["kill_switch"]["killed"] is False
    assert report["kill_switch"]["where"].startswith("PostgresStorage(")  # read from the store every host shares
    # ETH: one direction recorded only, so no mark; its (default) balances are left out of equity
    assert report["balances"]["unvalued_assets"] == ["ETH"]
    assert "storage: no recorded spreads of ETH in both directions" in report["mark_notes"]


def test_profit_while_postgres_is_down_reads_the_local_copy(store: Path, pg, cli) -> None:
    """Positions come from the driver's local copy of what this host wrote; the FX rates cannot be read, so the
    translation uses the newest close's own rate and says why."""
    pg.stop()
    try:
        doc = cli("profit", "-c", str(store))
    finally:
        pg.start()
    assert doc["trades"] == 3 and D(doc["realized_pnl_krw"]) == D(1251)
    fx = doc["fx_translation"]
    assert "could not be read" in fx["note"] and fx["rate"] == "1385" and fx["rate_source"] == "exit rate of q3"
    assert D(fx["krw"]) == D(-1) * (1385 - D(1380)) + D("0.5") * (1385 - D(1390)) + D(2) * 0
