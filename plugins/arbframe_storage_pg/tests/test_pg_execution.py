"""What live execution needs from PostgreSQL: order states read back (``load_orders``) and control records (the
kill switch) shared by every runner on the schema, surviving restarts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from arbframe import Order, OrderStatus, OrderType, Side


def order(cid: str, seq: int, status: OrderStatus, ts) -> Order:
    return Order(id=f"{cid}.{seq}", ts=ts, exchange="upbit", symbol="BTC", side=Side.SELL, order_type=OrderType.LIMIT,
                 qty=Decimal("0.01"), price=Decimal("99800000"), status=status, position_id="p1",
                 client_order_id=cid)


def test_order_states_are_read_back(open_storage) -> None:
    storage = open_storage()
    t0 = datetime.now(timezone.utc)
    storage.write_order_state(order("af1-odn0", 1, OrderStatus.SENT, t0 - timedelta(hours=2)))
    storage.write_order_state(order("af1-odn0", 2, OrderStatus.FILLED, t0))
    rows = storage.load_orders()
    assert [(o.id, o.status) for o in rows] == [("af1-odn0.1", OrderStatus.SENT), ("af1-odn0.2", OrderStatus.FILLED)]
    assert [o.id for o in storage.load_orders(t0 - timedelta(hours=1))] == ["af1-odn0.2"]


def test_kill_switch_is_shared_through_the_schema(open_storage) -> None:
    one, two = open_storage(), open_storage()  # two runners on the same schema
    assert two.read_control("kill_switch") is None
    one.write_control("kill_switch", {"killed": True, "reason": "from host a", "flatten": True, "by": "a"})
    assert two.read_control("kill_switch") == {"killed": True, "reason": "from host a", "flatten": True, "by": "a"}
    two.write_control("kill_switch", {"killed": False, "by": "b"})  # replaces the record
    assert one.read_control("kill_switch") == {"killed": False, "by": "b"}
    one.close()
    assert open_storage().read_control("kill_switch") == {"killed": False, "by": "b"}  # a restart reads the row


def test_control_records_fail_loudly_when_the_database_is_away(open_storage, pg) -> None:
    from arbframe_storage_pg.db import PostgresUnavailable

    storage = open_storage()
    storage.write_control("kill_switch", {"killed": True})
    pg.stop()
    try:
        with pytest.raises(PostgresUnavailable):
            storage.write_control("kill_switch", {"killed": False})
        with pytest.raises(PostgresUnavailable):  # the runner's kill switch then keeps its last state
            storage.read_control("kill_switch")
    finally:
        pg.start()
    assert storage.read_control("kill_switch") == {"killed": True}  # reconnects once the database is back


def test_residual_exposure_is_kept_per_book_symbol_in_the_control_table(open_storage) -> None:
    """The residual exposure a live hedge left (arbframe.execution.residual) survives a restart and is read by every
    host on the schema: one control row per (venue pair, symbol), no schema change."""
    from arbframe.execution.control import KillSwitch
    from arbframe.execution.residual import Residual, ResidualStore

    one, two = open_storage(), open_storage()  # the runner, and a command or a runner on another host
    btc = Residual("p1", "open", "BTC", "upbit", Decimal("-0.00675"), Decimal("147999000"), "2026-01-03T04:00:00+00:00")
    ResidualStore(one, "upbit", "binance", ["BTC", "ETH"]).save("BTC", [btc], by="bot-a")
    assert ResidualStore(two, "upbit", "binance", ["BTC", "ETH"]).load() == [btc]
    assert ResidualStore(two, "upbit", "binance", ["ETH"]).load() == []
    row = two.read_control("residual.upbit-binance-BTC")
    assert row["residuals"][0]["coin"] == "-0.00675" and row["by"] == "bot-a"
    # `arbframe resume --flattened` names what was flattened in the kill switch row; the record is emptied
    KillSwitch(two).resume(by="ops", flattened=(btc.key,))
    ResidualStore(two, "upbit", "binance", ["BTC"]).save("BTC", [], note="flattened by hand")
    one.close()
    restarted = open_storage()
    assert KillSwitch(restarted).read().flattened == ("p1:open",)
    assert ResidualStore(restarted, "upbit", "binance", ["BTC"]).load() == []
