"""Storage for live execution through the kernel's writer: an order state is on disk when write_order_state
returns (and what was logged before it), order rows read back, control records pass through."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from arbframe.builtins.storage import NullStorage
from arbframe.core.models import Order, OrderStatus, OrderType, Side, utcnow
from arbframe.kernel.storage_writer import StorageWriter


def order(seq: int, status: OrderStatus, ts=None) -> Order:
    return Order(id=f"af00-odn0.{seq}", ts=ts or utcnow(), exchange="upbit", symbol="BTC", side=Side.SELL,
                 order_type=OrderType.LIMIT, qty=Decimal("0.01"), price=Decimal(1), status=status,
                 position_id="p1", client_order_id="af00-odn0")


def test_order_state_is_durable_when_the_call_returns(tmp_path) -> None:
    from arbframe_storage_csv.storage import CsvStorage

    writer = StorageWriter(CsvStorage({"data_dir": str(tmp_path / "csv")}), spool_dir=tmp_path / "spool")
    try:
        writer.log_order(order(1, OrderStatus.SENT))
        writer.write_order_state(order(2, OrderStatus.FILLED))
        text = (tmp_path / "csv" / "orders.csv").read_text()  # on disk, not in a queue
        assert "af00-odn0.1" in text and "af00-odn0.2" in text
        assert [o.status for o in writer.load_orders()] == [OrderStatus.SENT, OrderStatus.FILLED]
        assert writer.load_orders(utcnow() + timedelta(hours=1)) == []
        writer.write_control("kill_switch", {"killed": True})
        assert writer.read_control("kill_switch") == {"killed": True}
        assert (tmp_path / "csv" / "control" / "kill_switch.json").exists()
    finally:
        writer.close()


def test_a_storage_without_orders_or_controls_says_so(tmp_path) -> None:
    writer = StorageWriter(NullStorage(), spool_dir=tmp_path / "spool")
    try:
        assert writer.load_orders() is None
        with pytest.raises(NotImplementedError):
            writer.read_control("kill_switch")
    finally:
        writer.close()
