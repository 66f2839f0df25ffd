"""What live execution needs from PostgreSQL: order states read back (``load_orders``), order states the kernel's
writer journaled before a kill -9 reaching the database once after it, and control records (the kill switch)
shared by every runner on the schema, surviving restarts."""

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
    from arbframe.testing.execution_kit import KillSwitch, Residual, ResidualStore

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


CHILD = """
import json, os, signal, sys
from datetime import datetime, timezone
from decimal import Decimal
from arbframe import Order, OrderStatus, OrderType, Side
from arbframe.testing.plugin_harness import PluginHarness

config, data_dir = json.loads(sys.argv[1]), sys.argv[2]
writer = PluginHarness.from_config(config, env={{}}, data_dir=data_dir).load_storage_writer()
ts = datetime.now(timezone.utc)
writer.write_order_states([
    Order(id=f"{{cid}}.1", ts=ts, exchange=venue, symbol="BTC", side=side, order_type=OrderType.LIMIT,
          qty=Decimal("0.01"), price=Decimal("99800000"), status=OrderStatus.SENT, position_id="p1",
          client_order_id=cid)
    for cid, venue, side in (("af2-odn0", "upbit", Side.SELL), ("af2-ofn0", "binance", Side.BUY))])
print("stored", flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # between the write and the send: PostgreSQL has not got the states
"""


@pytest.mark.postgres
def test_order_states_journaled_before_a_kill_9_reach_postgres_once(tmp_path, pg, schema) -> None:
    """The kernel's writer over this driver (as ``arbframe run`` builds it): ``write_order_states`` returns once the
    states are in its order journal; a process killed right after leaves them there, and the next start hands
    them to PostgreSQL before any read, once."""
    import json
    import signal
    import subprocess
    import sys

    from arbframe.testing.plugin_harness import PluginHarness

    config = {"arbitrage": {"symbols": ["BTC"]},
              "storage": {"backend": "postgres", "postgres": {"dsn": pg.dsn, "schema": schema,
                                                              "connect_timeout_seconds": 2}}}
    child = subprocess.run([sys.executable, "-c", CHILD.format(), json.dumps(config), str(tmp_path / "data")],
                           capture_output=True, text=True, timeout=60)
    assert child.returncode == -signal.SIGKILL and child.stdout.strip() == "stored", child.stderr
    for _start in range(2):
        harness = PluginHarness.from_config(config, env={}, data_dir=tmp_path / "data")
        try:
            rows = harness.load_storage_writer().load_orders()
            assert sorted((o.id, o.status) for o in rows) == [("af2-odn0.1", OrderStatus.SENT),
                                                               ("af2-ofn0.1", OrderStatus.SENT)]
        finally:
            harness.close()
    assert sorted(r[0] for r in pg.execute(f'SELECT id FROM "{schema}".orders')) == ["af2-odn0.1", "af2-ofn0.1"]
