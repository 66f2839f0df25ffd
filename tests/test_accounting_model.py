"""The accounting model (docs/TRADING.md "PnL"), checked from first principles with Decimal.

- a hand-computed round trip: multi-level books, Upbit's fee in KRW, Binance's buy fee in BTC (the buy grossed up
  to the lot step) and its sell fee in USDT, USD/KRW 1400 -> 1410 between entry and exit; realized PnL, equity,
  FX translation, coin revaluation and the coin residue asserted exactly (the worked example of docs/TRADING.md);
- the same position while it is open: unrealized PnL and the close cost by hand, and the equity change made of them;
- conservation over random recordings, ending with positions closed or still open: realized PnL + unrealized PnL
  + close cost + FX translation + coin revaluation equals the equity change computed from the wallets alone;
- after a restart that resumes an open position, the same with the resumed position's value at the start.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from arbframe import BookLevel, FxRate, IdGenerator, MarketRules, OrderBook
from arbframe.builtins.storage import MemoryStorage
from arbframe.replay.backtest import build_engine, replay
from arbframe.replay.recording import RecordingReader
from arbframe.replay.synthetic import simulate_recording
from arbframe.trading.accounting import FeeSchedule, SideFee
from arbframe.trading.engine import Engine, MarketSnapshot
from arbframe.trading.paper import PaperWallet
from arbframe.trading.strategy import StrategyConfig

D = Decimal
T0 = datetime(2026, 3, 2, tzinfo=timezone.utc)
UPBIT_FEE = D("0.0025")
BINANCE_FEE = D("0.00075")


def book(venue: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]], ts: datetime) -> OrderBook:
    return OrderBook(venue, "BTC", tuple(BookLevel(D(p), D(q)) for p, q in bids),
                     tuple(BookLevel(D(p), D(q)) for p, q in asks), ts)


ENTRY_BOOKS = {
    "upbit": ([("140000000", "0.003"), ("139900000", "0.004"), ("139800000", "0.01"), ("139700000", "1")],
              [("140100000", "0.005"), ("140200000", "1")]),
    "binance": ([("95990", "1")],
                [("96000", "0.002"), ("96010", "0.003"), ("96020", "1")]),
}
EXIT_BOOKS = {
    "upbit": ([("134900000", "1")],
              [("135000000", "0.002"), ("135100000", "0.01"), ("135200000", "1")]),
    "binance": ([("96100", "0.004"), ("96090", "0.01"), ("96080", "1")],
                [("96110", "1")]),
}


def walk(levels: list[tuple[str, str]], qty: Decimal) -> Decimal:
    """Notional of ``qty`` taken level by level."""
    left, cost = qty, D(0)
    for price, size in levels:
        take = min(D(size), left)
        cost += take * D(price)
        left -= take
        if left == 0:
            return cost
    raise AssertionError("book too thin")


def hand_computed() -> dict[str, Decimal]:
    """Every figure of the round trip, from the books, fees and rates alone (docs/TRADING.md, worked example)."""
    with localcontext() as ctx:
        ctx.prec = 60
        r_in, r_out = D("1400"), D("1410")
        # order size: 1,000,000 KRW at the best Upbit bid, on the coarser lot step (0.0001)
        q = (D("1000000") / D("140000000") / D("0.0001")).to_integral_value(ROUND_FLOOR) * D("0.0001")
        # the Binance buy pays its fee in BTC: gross it up so that what arrives covers q, on Binance's 0.00001 step
        q_buy = (q / (1 - BINANCE_FEE) / D("0.00001")).to_integral_value(ROUND_CEILING) * D("0.00001")
        sell_up = walk(ENTRY_BOOKS["upbit"][0], q)  # entry: sell q on Upbit (bids)
        buy_bn = walk(ENTRY_BOOKS["binance"][1], q_buy)  # buy q_buy on Binance (asks)
        buy_up = walk(EXIT_BOOKS["upbit"][1], q)  # exit: buy q on Upbit (asks)
        sell_bn = walk(EXIT_BOOKS["binance"][0], q)  # sell q on Binance (bids)
        d_krw = sell_up * (1 - UPBIT_FEE) - buy_up * (1 + UPBIT_FEE)
        d_usdt = -buy_bn + sell_bn * (1 - BINANCE_FEE)
        d_btc_up = -q + q
        d_btc_bn = q_buy * (1 - BINANCE_FEE) - q
        residue = d_btc_up + d_btc_bn
        mark_in = (D("140000000") + D("140100000")) / 2
        mark_out = (D("134900000") + D("135000000")) / 2
        realized = d_krw + d_usdt * r_out + residue * mark_out
        start = {"KRW": D("10000000"), "USDT": D("10000"), "BTC": D("2")}  # BTC: 1 on each venue
        start_equity = start["KRW"] + start["USDT"] * r_in + start["BTC"] * mark_in
        end_equity = (start["KRW"] + d_krw) + (start["USDT"] + d_usdt) * r_out + (start["BTC"] + residue) * mark_out
        fx_translation = start["USDT"] * (r_out - r_in) + d_usdt * (r_out - r_out)
        coin_revaluation = start["BTC"] * (mark_out - mark_in) + residue * (mark_out - mark_out)
        # what the old model printed: each USDT leg at its own tick's rate
        old_model = (sell_up * (1 - UPBIT_FEE) - buy_bn * r_in - buy_up * (1 + UPBIT_FEE)
                     + sell_bn * (1 - BINANCE_FEE) * r_out)
        return {
            "q": q, "q_buy": q_buy, "d_krw": d_krw, "d_usdt": d_usdt, "d_btc_bn": d_btc_bn, "residue": residue,
            "mark_out": mark_out, "realized": realized, "start_equity": start_equity, "end_equity": end_equity,
            "fx_translation": fx_translation, "coin_revaluation": coin_revaluation, "old_model": old_model,
            "fees_exit_krw": buy_up * UPBIT_FEE + sell_bn * BINANCE_FEE * r_out,
        }


def hand_engine(storage=None) -> Engine:
    cfg = StrategyConfig.from_section({
        "symbols": ["BTC"], "directions": ["kimchi"], "entry_threshold": "0.02", "exit_threshold": "0.005",
        "cooldown_seconds": 0, "stop_loss_premium": None, "max_holding_seconds": None, "max_daily_loss_krw": None,
        "use_tether": False, "max_book_age_seconds": None,
    })
    rules = {("upbit", "BTC"): MarketRules("BTC", None, D("0.0001"), D("0.0001"), D("5000")),
             ("binance", "BTC"): MarketRules("BTC", D("0.01"), D("0.00001"), D("0.00001"), D("5"))}
    wallets = {"upbit": PaperWallet("upbit", "KRW", {"KRW": "10000000", "BTC": "1"}),
               "binance": PaperWallet("binance", "USDT", {"USDT": "10000", "BTC": "1"})}
    fees = {"upbit": FeeSchedule.flat(UPBIT_FEE),
            "binance": FeeSchedule(SideFee(BINANCE_FEE, "base"), SideFee(BINANCE_FEE, "quote"))}
    return Engine(cfg, storage=storage or MemoryStorage(), fee_domestic=UPBIT_FEE, fee_foreign=BINANCE_FEE,
                  fees=fees, rules=rules, quote_currencies={"upbit": "KRW", "binance": "USDT"}, wallets=wallets,
                  ids=IdGenerator(11))


def snap(books: dict, ts: datetime, rate: str) -> MarketSnapshot:
    return MarketSnapshot(ts, {(v, "BTC"): book(v, b, a, ts) for v, (b, a) in books.items()},
                          FxRate(f"fx{rate}", ts, D(rate), "static"))


def test_hand_computed_round_trip_realized_equity_fx_and_residue():
    want = hand_computed()
    storage = MemoryStorage()
    engine = hand_engine(storage)
    r1 = engine.process(snap(ENTRY_BOOKS, T0, "1400"))
    assert len(r1.opened) == 1 and r1.opened[0].qty == want["q"] == D("0.0071")
    buy = next(o for o in storage.orders if o.exchange == "binance")
    assert buy.qty == want["q_buy"] == D("0.00711") and buy.fee_currency == "BTC"
    assert buy.fee == want["q_buy"] * BINANCE_FEE
    r2 = engine.process(snap(EXIT_BOOKS, T0 + timedelta(seconds=60), "1410"))
    assert len(r2.closed) == 1
    closed = r2.closed[0]
    assert closed.realized_pnl_krw == want["realized"]
    assert closed.coin_residue == want["residue"] == D("0.0000046675")
    assert closed.exit_coin_mark_krw == want["mark_out"]
    assert closed.exit_fees_krw == want["fees_exit_krw"]
    assert engine.executor.wallets["upbit"].balances == {"KRW": D("10000000") + want["d_krw"], "BTC": D(1)}
    assert engine.executor.wallets["binance"].balances == {
        "USDT": D("10000") + want["d_usdt"], "BTC": D(1) + want["d_btc_bn"]}
    parts = engine.breakdown()
    assert parts.equity == want["end_equity"] and parts.start_equity == want["start_equity"]
    assert parts.realized == want["realized"] and parts.unrealized == parts.close_cost == parts.open_at_start == 0
    assert parts.fx_translation == want["fx_translation"] == D("100000")
    assert parts.coin_revaluation == want["coin_revaluation"] == D("-10200000")
    assert parts.coin_residue == {"BTC": want["residue"]}
    assert parts.change == want["realized"] + want["fx_translation"] + want["coin_revaluation"]
    assert engine.stats.total_pnl_krw == want["realized"]
    # the figures docs/TRADING.md quotes for this example
    assert want["realized"].quantize(D("0.01")) == D("29098.88")
    assert want["old_model"].quantize(D("0.01")) == D("35295.32")
    assert (want["end_equity"] - want["start_equity"]).quantize(D("0.01")) == D("-10070901.12")


def test_hand_computed_open_position_unrealized_close_cost_and_equity_change():
    """Right after the entry (same books, same rate): equity changed by what the entry legs are worth at the marks,
    which is the unrealized PnL (a close at the books now, exit fees included) plus the close cost."""
    engine = hand_engine()
    engine.process(snap(ENTRY_BOOKS, T0, "1400"))
    (position,) = engine.positions.values()
    with localcontext() as ctx:
        ctx.prec = 60
        rate, q = D("1400"), D("0.0071")
        q_buy = D("0.00711")
        mark = (D("140000000") + D("140100000")) / 2
        entry_krw = walk(ENTRY_BOOKS["upbit"][0], q) * (1 - UPBIT_FEE)  # sold on Upbit, fee in KRW
        entry_usdt = -walk(ENTRY_BOOKS["binance"][1], q_buy)  # bought on Binance, fee in BTC
        entry_btc = -q + q_buy * (1 - BINANCE_FEE)
        entry_value = entry_krw + entry_usdt * rate + entry_btc * mark
        # a close now: buy q back on Upbit (asks), sell q on Binance (bids), fees in KRW and USDT; no coin moves
        close_krw = -walk(ENTRY_BOOKS["upbit"][1], q) * (1 + UPBIT_FEE)
        close_usdt = walk(ENTRY_BOOKS["binance"][0], q) * (1 - BINANCE_FEE)
        unrealized = entry_value + close_krw + close_usdt * rate
        close_cost = -(close_krw + close_usdt * rate)
    parts = engine.breakdown()
    assert parts.change == entry_value  # the wallets alone: nothing else moved
    assert parts.realized == parts.fx_translation == parts.coin_revaluation == parts.open_at_start == 0
    # the engine's VWAP is a division rounded to 28 digits: the marks agree to far below a won
    assert abs(parts.unrealized - unrealized) < D("1e-12") and parts.unrealized == engine.stats.unrealized_pnl_krw
    assert abs(parts.close_cost - close_cost) < D("1e-12")
    assert parts.unrealized + parts.close_cost == parts.change == sum(amount for _, amount in parts.terms())
    assert close_cost > 0 > unrealized  # a close at the entry's books pays the spread and the fees back
    assert position.qty == q
    # the figures docs/TRADING.md quotes for this example (step 5)
    assert [x.quantize(D("0.01")) for x in (entry_value, close_cost, unrealized)] == [
        D("36064.65"), D("43982.31"), D("-7917.65")]


def test_a_restart_that_resumes_an_open_position_keeps_the_equity_identity():
    """The wallets after a restart hold the resumed position's entry legs: they are in the starting equity (at the
    first tick's rate and marks) and in the unrealized PnL or, once closed, in realized PnL; the open_at_start term
    takes them out once."""
    first = hand_engine()
    first.process(snap(ENTRY_BOOKS, T0, "1400"))
    (position,) = first.positions.values()
    engine = hand_engine()  # the restart: wallets as configured, the position resumed from storage
    engine.resume([position])
    engine.process(snap(ENTRY_BOOKS, T0 + timedelta(seconds=1), "1405"))
    parts = engine.breakdown()
    with localcontext() as ctx:
        ctx.prec = 60
        entry = engine._changes[position.id]
        mark = (D("140000000") + D("140100000")) / 2
        by_hand = sum((amount * {"KRW": D(1), "USDT": D("1405"), "BTC": mark}[asset]
                       for (_venue, asset), amount in entry.items()), D(0))
    assert parts.open_at_start == by_hand != 0
    assert parts.change == 0  # nothing moved since the restart's first tick
    assert sum(amount for _, amount in parts.terms()) == parts.change
    engine.process(snap(EXIT_BOOKS, T0 + timedelta(seconds=60), "1410"))
    assert not engine.positions
    parts = engine.breakdown()
    with localcontext() as ctx:
        ctx.prec = 60
        assert sum(amount for _, amount in parts.terms()) == parts.change != 0
    assert parts.realized == engine.stats.total_pnl_krw and parts.unrealized == parts.close_cost == 0


# ------------------------------------------------------------------------------------------ conservation
def _marks_and_rates(path) -> tuple[tuple[D, D], tuple[D, D]]:
    """(first FX rate, first BTC mark), (last FX rate, last BTC mark) read from the recording itself."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[1:]]

    def of(row):
        bids, asks = row["b"]["upbit"]["BTC"][:2]
        return D(row["fx"][0]), (D(bids.split()[0]) + D(asks.split()[0])) / 2

    return of(rows[0]), of(rows[-1])


def _equity(balances: dict[str, dict[str, D]], rate: D, mark: D, bnb: bool) -> D:
    """Every balance at ``rate`` and ``mark``; BNB has a value (600 USDT) only when fees are paid in it."""
    value = {"KRW": D(1), "USDT": rate, "BTC": mark, "BNB": D("600") * rate if bnb else D(0)}
    with localcontext() as ctx:
        ctx.prec = 60
        return sum((value[asset] * amount for assets in balances.values() for asset, amount in assets.items()), D(0))


FEE_CASES = {
    "quote": {},
    "base": {"binance": {"buy": {"asset": "base"}, "sell": {"asset": "quote"}}},
    "bnb": {"binance": {"buy": {"asset": "BNB", "rate": "0.00075", "asset_price": "600"},
                        "sell": {"asset": "BNB", "rate": "0.00075", "asset_price": "600"}}},
}


@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), excursion=st.sampled_from(["0.02", "0.05", "0.1"]),
       fees=st.sampled_from(sorted(FEE_CASES)), entry=st.sampled_from(["0.005", "0.01", "0.02"]),
       hold=st.sampled_from([None, 30, 120]), exit_at=st.sampled_from(["0.002", "-1"]))
@example(seed=5, excursion="0.05", fees="base", entry="0.005", hold=30, exit_at="0.002")  # closes and residue
@example(seed=5, excursion="0.05", fees="bnb", entry="0.005", hold=None, exit_at="0.002")  # BNB fees
@example(seed=7, excursion="0.1", fees="quote", entry="0.01", hold=120, exit_at="0.002")
@example(seed=5, excursion="0.05", fees="base", entry="0.005", hold=None, exit_at="-1")  # every position left open
@example(seed=7, excursion="0.1", fees="bnb", entry="0.005", hold=120, exit_at="-1")  # some closed, some open
def test_equity_change_is_the_sum_of_its_terms_closed_or_open(tmp_path_factory, seed, excursion, fees, entry, hold,
                                                               exit_at):
    tmp = tmp_path_factory.mktemp("rec")
    rec = simulate_recording(tmp / "rec.jsonl", snapshots=240, seed=seed, depth=6, symbols=("BTC",),
                             excursion_prob=float(excursion))
    start = {"upbit": {"KRW": D("50000000"), "BTC": D("0.5")},
             "binance": {"USDT": D("40000"), "BTC": D("0.5"), "BNB": D("1")}}
    config = {
        # exit_at -1: no close premium falls that far and no stop loss: positions close at the holding timeout only
        "arbitrage": {"symbols": ["BTC"], "entry_threshold": entry, "exit_threshold": exit_at, "cooldown_seconds": 0,
                      "max_holding_seconds": hold, "max_positions_per_symbol": 2,
                      **({"stop_loss_premium": None} if exit_at == "-1" else {})},
        "paper": {"balances": {v: {k: str(x) for k, x in b.items()} for v, b in start.items()},
                  "fees": FEE_CASES[fees]},
    }
    reader = RecordingReader(rec)
    engine = build_engine(reader, config, MemoryStorage(), spread_log_interval_seconds=60.0)
    summary = replay(reader, engine)
    (r0, m0), (r1, m1) = _marks_and_rates(rec)
    wallets = {v: dict(w.balances) for v, w in engine.executor.wallets.items()}
    bnb = fees == "bnb"
    change = _equity(wallets, r1, m1, bnb) - _equity(start, r0, m0, bnb)  # from the wallets alone
    if bnb and engine.stats.trades:
        assert wallets["binance"]["BNB"] < 1  # the fees were paid in BNB
    parts = engine.breakdown()
    with localcontext() as ctx:
        ctx.prec = 60
        assert sum(amount for _, amount in parts.terms()) == change  # exactly
        # the summary's terms, as written, add up to its equity change, which is the wallets' change
        assert sum(D(amount) for amount in summary.equity_change_terms_krw.values()) == D(summary.equity_change_krw)
    assert D(summary.equity_change_krw) == change
    assert parts.realized == engine.stats.total_pnl_krw and parts.open_at_start == 0
    assert parts.unrealized == engine.stats.unrealized_pnl_krw
    assert summary.open_positions == len(engine.positions)
    if not engine.positions:
        assert parts.unrealized == parts.close_cost == 0
    if exit_at == "-1" and hold is None and engine.executor.wallets["upbit"].balances["BTC"] != start["upbit"]["BTC"]:
        assert engine.positions and engine.stats.trades == 0  # something opened, and nothing ever closes
