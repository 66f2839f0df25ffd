"""Property tests (hypothesis): accounting balances.

- a position's realized PnL is what its four legs changed in the wallets (fees included), valued at the close's
  FX rate and coin mark;
- wallets change only by fills and fees: every balance's change equals the sum of the order legs touching it;
- a fill never takes more than the book holds, and liquidity consumed in a tick is not re-used.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal as D

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from arbframe import BookLevel, FxRate, IdGenerator, MarketRules, OrderBook, Side
from arbframe.builtins.storage import MemoryStorage
from arbframe.trading.engine import Engine, MarketSnapshot, entry_changes
from arbframe.trading.paper import InsufficientLiquidity, LiquidityLedger, PaperWallet, walk_book
from arbframe.trading.strategy import StrategyConfig

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)

levels_st = st.lists(
    st.tuples(st.integers(1, 500), st.integers(1, 5000)),  # (price offset in ticks, qty in 0.001 units)
    min_size=1, max_size=6,
)


def make_book(exchange: str, mid: D, tick: D, bid_spec, ask_spec, ts) -> OrderBook:
    bids, asks = [], []
    price = mid - tick
    for off, q in bid_spec:
        price -= tick * off
        bids.append(BookLevel(price, D(q) / 1000))
    price = mid + tick
    for off, q in ask_spec:
        price += tick * off
        asks.append(BookLevel(price, D(q) / 1000))
    return OrderBook(exchange, "BTC", tuple(bids), tuple(asks), ts)


def order_value(order, rate: D, mark: D) -> D:
    """KRW value at (rate, mark) of what one order leg changed in its wallet (fees in the quote currency)."""
    notional = order.avg_price * order.filled_qty
    cash = (notional if order.side is Side.SELL else -notional) - order.fee
    coin = order.filled_qty if order.side is Side.BUY else -order.filled_qty
    return cash * (rate if order.exchange == "binance" else 1) + coin * mark


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    entry_premium=st.decimals("0.03", "0.15", places=4),
    exit_premium=st.decimals("-0.05", "0.005", places=4),
    rate_in=st.decimals("1100", "1500", places=2),
    rate_out=st.decimals("1100", "1500", places=2),
    fee_up=st.decimals("0", "0.003", places=5),
    fee_bn=st.decimals("0", "0.003", places=5),
    books=st.tuples(levels_st, levels_st, levels_st, levels_st, levels_st, levels_st, levels_st, levels_st),
    notional=st.integers(10_000, 3_000_000),
)
@example(entry_premium=D("0.1000"), exit_premium=D("-0.0200"), rate_in=D("1350.00"), rate_out=D("1350.00"),
         fee_up=D("0.00050"), fee_bn=D("0.00100"), books=(((1, 5000), (1, 5000), (2, 4000)),) * 8, notional=1000000)
@example(entry_premium=D("0.0800"), exit_premium=D("0.0000"), rate_in=D("1400.00"), rate_out=D("1410.00"),
         fee_up=D("0.00250"), fee_bn=D("0.00075"), books=(((1, 5000), (1, 5000), (2, 4000)),) * 8, notional=2000000)
@example(entry_premium=D("0.1200"), exit_premium=D("-0.0300"), rate_in=D("1200.00"), rate_out=D("1150.00"),
         fee_up=D("0.00000"), fee_bn=D("0.00300"), books=(((1, 5000), (1, 5000), (2, 4000)),) * 8, notional=500000)
@example(entry_premium=D("0.0500"), exit_premium=D("0.0050"), rate_in=D("1450.00"), rate_out=D("1449.99"),
         fee_up=D("0.00300"), fee_bn=D("0.00000"), books=(((1, 5000), (1, 5000), (2, 4000)),) * 8, notional=1500000)
def test_legs_sum_to_realized_pnl_and_wallets_move_only_by_fills(
    entry_premium, exit_premium, rate_in, rate_out, fee_up, fee_bn, books, notional
):
    usd = D("100")
    cfg = StrategyConfig.from_section({
        "symbols": ["BTC"], "order_notional_krw": notional, "entry_threshold": 0.0, "exit_threshold": 0.01,
        "cooldown_seconds": 0, "stop_loss_premium": None, "max_holding_seconds": None, "max_daily_loss_krw": None,
        "max_position_notional_krw": 10_000_000, "directions": ["kimchi"],
    })
    rules = {
        ("upbit", "BTC"): MarketRules("BTC", None, D("0.001"), D("0.001"), D("0")),
        ("binance", "BTC"): MarketRules("BTC", D("0.01"), D("0.001"), D("0.001"), D("0")),
    }
    start = {"upbit": {"KRW": D("100000000"), "BTC": D("50")}, "binance": {"USDT": D("100000"), "BTC": D("50")}}
    wallets = {
        "upbit": PaperWallet("upbit", "KRW", start["upbit"]),
        "binance": PaperWallet("binance", "USDT", start["binance"]),
    }
    storage = MemoryStorage()
    engine = Engine(cfg, storage=storage, fee_domestic=fee_up, fee_foreign=fee_bn, rules=rules,
                    quote_currencies={"upbit": "KRW", "binance": "USDT"}, wallets=wallets, ids=IdGenerator(3))

    def snap(ts, premium, rate, specs):
        up_mid = (usd * rate * (1 + premium)).quantize(D(1))
        return MarketSnapshot(ts, {
            ("upbit", "BTC"): make_book("upbit", up_mid, D(1), specs[0], specs[1], ts),
            ("binance", "BTC"): make_book("binance", usd, D("0.01"), specs[2], specs[3], ts),
        }, FxRate("fx", ts, rate, "static"))

    r1 = engine.process(snap(T0, entry_premium, rate_in, books[:4]))
    r2 = engine.process(snap(T0 + timedelta(seconds=5), exit_premium, rate_out, books[4:]))
    opened = r1.opened
    if not opened:
        return  # books too thin or the premium after fees and VWAP below the threshold
    assert len(opened) == 1
    pos = opened[0]
    entry_orders = [o for o in storage.orders if o.position_id == pos.id][:2]
    rebuilt = entry_changes(pos, {"upbit": "KRW", "binance": "USDT"})  # from the position record
    for o in entry_orders:
        quote = "KRW" if o.exchange == "upbit" else "USDT"
        cash = (1 if o.side is Side.SELL else -1) * o.avg_price * o.filled_qty - o.fee
        assert abs(rebuilt[(o.exchange, quote)] - cash) < D("1e-9")
        assert rebuilt[(o.exchange, "BTC")] == (o.filled_qty if o.side is Side.BUY else -o.filled_qty)
    if r2.closed:
        closed = r2.closed[0]
        legs = [o for o in storage.orders if o.position_id == pos.id]
        assert len(legs) == 4
        up = r2_books = engine.marks["BTC"]
        assert closed.exit_coin_mark_krw == r2_books == up
        total = sum((order_value(o, rate_out, up) for o in legs), D(0))  # ONE rate and mark: the close's
        assert abs(total - closed.realized_pnl_krw) < D("1e-9")
        fees_krw = legs[0].fee + legs[1].fee * rate_in + legs[2].fee + legs[3].fee * rate_out
        assert abs((closed.entry_fees_krw + closed.exit_fees_krw) - fees_krw) < D("1e-9")
    # wallets: each balance moved by exactly the orders (fills and fees) that touched it
    for venue, quote in (("upbit", "KRW"), ("binance", "USDT")):
        coin = cash = D(0)
        for o in storage.orders:
            if o.exchange != venue:
                continue
            notional = o.avg_price * o.filled_qty
            coin += o.filled_qty if o.side is Side.BUY else -o.filled_qty
            cash += (notional if o.side is Side.SELL else -notional) - o.fee
        w = engine.executor.wallets[venue]
        assert w.get("BTC") - start[venue]["BTC"] == coin
        assert abs((w.get(quote) - start[venue][quote]) - cash) < D("1e-12")
        assert w.get(quote) >= 0 and w.get("BTC") >= 0


@settings(max_examples=100, deadline=None, derandomize=True)
@given(spec=levels_st, takes=st.lists(st.integers(1, 4000), min_size=1, max_size=5))
def test_liquidity_is_not_reused_within_a_tick(spec, takes):
    book = make_book("upbit", D(100000), D(1), spec, spec, T0)
    depth = book.depth_qty(Side.BUY)
    ledger = LiquidityLedger()
    notional_sum = D(0)
    for take in takes:
        qty = D(take) / 1000
        offset = ledger.consumed("upbit", "BTC", Side.BUY)
        try:
            fill = walk_book(book, Side.BUY, qty, D("0.0005"), "KRW", offset)
        except InsufficientLiquidity:
            assert offset + qty > depth
            continue
        ledger.take("upbit", "BTC", Side.BUY, qty)
        notional_sum += fill.notional
        assert fill.fee == fill.notional * D("0.0005")
        assert fill.slippage >= 0
    consumed = ledger.consumed("upbit", "BTC", Side.BUY)
    assert consumed <= depth
    if consumed > 0:
        # the consecutive fills cost exactly what one fill of their total would
        assert notional_sum == walk_book(book, Side.BUY, consumed, D(0), "KRW").notional
