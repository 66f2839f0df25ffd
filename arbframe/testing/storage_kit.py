"""Contract tests every :class:`arbframe.Storage` driver must pass.

Use it from a plugin's tests with a few lines::

    import pytest
    from arbframe.testing.storage_kit import StorageContract

    class TestMyStorageContract(StorageContract):
        @pytest.fixture
        def make_storage(self, tmp_path):
            # a factory: every call opens a NEW instance on the SAME backing store (a restart)
            return lambda: MyStorage({"path": str(tmp_path)}, None)

        def read_back(self, storage, table):
            # every record of `table` as kernel records (arbframe.TABLES[table]), any order
            return my_reader(storage, table)

The kit writes records of every table, checks exact decimals and aware timestamps after a restart, that
``load_positions`` returns only positions still open (latest state of each id, never duplicated), that
``load_closed_positions`` (optional: None means no history) returns each closed position's latest state, that
``load_last_fx_rate`` / ``load_last_spreads`` (optional: None means no history) return the newest records, that
order states given to ``write_order_states`` are read back by ``load_orders`` after a restart without ``close``
(optional: None means no orders kept), that ``close`` flushes and may be called twice, that writing the same
record id twice is harmless where the backend is idempotent (``idempotent_ids = True``), and that ``describe()``
never shows the secret your ``make_storage`` planted in the config (``planted_secret``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, ClassVar

import pytest

from arbframe.core.models import (
    Direction,
    ErrorRecord,
    FxRate,
    Order,
    OrderStatus,
    OrderType,
    Position,
    PositionStatus,
    Side,
    Spread,
    Trade,
    new_id,
)
from arbframe.kernel.interfaces import Storage

__all__ = ["StorageContract", "sample_records"]

T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)


def sample_position(pid: str | None = None, *, ts: datetime = T0) -> Position:
    return Position(
        id=pid or new_id(), symbol="BTC", direction=Direction.KIMCHI, status=PositionStatus.OPEN, opened_at=ts,
        qty=Decimal("0.01234567"), domestic_exchange="upbit", foreign_exchange="binance",
        entry_domestic_price=Decimal("135123456.789"), entry_foreign_price=Decimal("97001.12345678"),
        entry_fx_rate=Decimal("1350.25"), entry_premium=Decimal("0.031234567890123456789"),
        entry_fees_krw=Decimal("1234.5678"),
    )


def closed(position: Position, *, ts: datetime | None = None) -> Position:
    from dataclasses import replace

    return replace(
        position, status=PositionStatus.CLOSED, closed_at=ts or position.opened_at + timedelta(minutes=5),
        exit_domestic_price=Decimal("134000000"), exit_foreign_price=Decimal("97100.5"),
        exit_fx_rate=Decimal("1351"), exit_premium=Decimal("0.004"), exit_fees_krw=Decimal("1200.25"),
        realized_pnl_krw=Decimal("31234.000000001"), close_reason="exit_threshold",
    )


def sample_records() -> dict[str, list[Any]]:
    """One or two records of every table, with awkward values (long decimals, commas, quotes, newlines)."""
    pos = sample_position()
    order = Order(
        id=new_id(), ts=T0, exchange="upbit", symbol="BTC", side=Side.SELL, order_type=OrderType.MARKET,
        qty=Decimal("0.01234567"), price=None, status=OrderStatus.FILLED, filled_qty=Decimal("0.01234567"),
        avg_price=Decimal("135123456.789"), fee=Decimal("834.1234"), fee_currency="KRW", position_id=pos.id,
        client_order_id="c-1", exchange_order_id=None, simulated=True,
    )
    return {
        "spreads": [
            Spread(
                id=new_id(), ts=T0, symbol="BTC", direction=Direction.KIMCHI, domestic_exchange="upbit",
                foreign_exchange="binance", qty=Decimal("0.01"), domestic_price=Decimal("135000000"),
                foreign_price=Decimal("97000.01"), fx_rate=Decimal("1350.5"), fx_source="static",
                fx_age_seconds=Decimal("1.5"), premium=Decimal("0.0305123456789"),
                net_premium=Decimal("0.0275123456789"), tether_premium=None, usdt_premium=Decimal("-0.001"),
                simulated=True,
            )
        ],
        "positions": [pos],
        "orders": [order],
        "trades": [
            Trade(
                id=new_id(), ts=T0, order_id=order.id, exchange="upbit", symbol="BTC", side=Side.SELL,
                price=Decimal("135123456.789"), qty=Decimal("0.01234567"), fee=Decimal("834.1234"),
                fee_currency="KRW", position_id=pos.id, simulated=True,
            )
        ],
        "fx_rates": [FxRate(id=new_id(), ts=T0, rate=Decimal("1350.123456"), source="static")],
        "errors": [
            ErrorRecord(
                id=new_id(), ts=T0, component="upbit", message='timeout, "quoted", and a comma',
                kind="timeout", detail="line one\nline two",
            )
        ],
    }


def _log(storage: Storage, table: str, record: Any) -> None:
    writers: dict[str, Callable[[Any], None]] = {
        "spreads": storage.log_spread,
        "positions": storage.log_position_open,
        "orders": storage.log_order,
        "trades": storage.log_trade,
        "fx_rates": storage.log_fx_rate,
        "errors": storage.log_error,
    }
    writers[table](record)


class StorageContract:
    """Subclass in a plugin's tests; provide ``make_storage`` (fixture) and ``read_back``."""

    #: True when writing a record id twice stores it once (PostgreSQL); False for append-only logs (CSV)
    idempotent_ids: ClassVar[bool] = False
    #: A secret your ``make_storage`` puts into the driver's config (a DSN password, a token): the kit checks
    #: that ``describe()``, ``str()`` and ``repr()`` never show it. None (a driver without secrets): skipped.
    planted_secret: ClassVar[str | None] = None

    @pytest.fixture
    def make_storage(self) -> Callable[[], Storage]:
        raise NotImplementedError("override the make_storage fixture in your test class")

    def read_back(self, storage: Storage, table: str) -> list[Any]:
        pytest.skip("read_back not provided by this storage's tests")

    # ------------------------------------------------------------------------------------------- checks
    def test_every_table_round_trips_exactly_after_restart(self, make_storage: Callable[[], Storage]) -> None:
        records = sample_records()
        storage = make_storage()
        for table, items in records.items():
            for item in items:
                _log(storage, table, item)
        storage.close()
        reopened = make_storage()
        try:
            for table, items in records.items():
                found = {r.id: r for r in self.read_back(reopened, table)}
                for item in items:
                    assert found.get(item.id) == item, f"{table}: {item.id} did not round-trip exactly"
                    for value in vars_of(found[item.id]):
                        if isinstance(value, datetime):
                            assert value.tzinfo is not None and value.utcoffset() == timedelta(0)
        finally:
            reopened.close()

    def test_load_positions_returns_only_open_latest_state(self, make_storage: Callable[[], Storage]) -> None:
        storage = make_storage()
        a, b = sample_position(), sample_position()
        storage.log_position_open(a)
        storage.log_position_open(b)
        storage.log_position_close(closed(a))
        open_now = storage.load_positions()
        assert [p.id for p in open_now] == [b.id]
        assert open_now[0] == b
        storage.close()

    def test_positions_survive_restart_and_close_once(self, make_storage: Callable[[], Storage]) -> None:
        storage = make_storage()
        position = sample_position()
        storage.log_position_open(position)
        storage.close()
        second = make_storage()
        assert second.load_positions() == [position]
        second.log_position_close(closed(position))
        second.close()
        third = make_storage()
        assert third.load_positions() == []
        third.close()

    def test_load_closed_positions_after_a_restart(self, make_storage: Callable[[], Storage]) -> None:
        """The optional history: the latest state of each closed position, exact, once; skipped when the backend
        keeps none (``load_closed_positions`` returns None)."""
        storage = make_storage()
        if storage.load_closed_positions() is None:
            storage.close()
            pytest.skip(f"{type(storage).__name__} keeps no closed positions (load_closed_positions is None)")
        a, b, c = sample_position(), sample_position(), sample_position()
        for p in (a, b, c):
            storage.log_position_open(p)
        storage.log_position_close(closed(a))
        storage.log_position_close(closed(c, ts=T0 + timedelta(minutes=1)))
        storage.close()
        second = make_storage()
        history = second.load_closed_positions()
        assert history is not None
        assert sorted(history, key=lambda p: p.id) == sorted([closed(a), closed(c, ts=T0 + timedelta(minutes=1))],
                                                            key=lambda p: p.id)
        assert [p.id for p in second.load_positions()] == [b.id]
        second.close()

    def test_last_fx_rate_and_spreads_after_a_restart(self, make_storage: Callable[[], Storage]) -> None:
        """The optional reads of ``arbframe status`` / ``profit``: the newest FX rate (by time, not by write
        order) and the newest spread of each (symbol, direction) of the symbols asked; skipped when the backend
        keeps none (both return None)."""
        from dataclasses import replace

        storage = make_storage()
        if storage.load_last_fx_rate() is None and storage.load_last_spreads(["BTC"]) is None:
            storage.close()
            pytest.skip(f"{type(storage).__name__} keeps no FX rates or spreads to read back")
        assert storage.load_last_spreads(["BTC"]) == []
        base_fx = sample_records()["fx_rates"][0]
        rates = [replace(base_fx, id=new_id(), ts=T0 + timedelta(minutes=m), rate=Decimal(1350) + m)
                 for m in (0, 2, 1)]  # the newest is not the last written
        base = sample_records()["spreads"][0]
        kimchi_old = replace(base, id=new_id(), ts=T0)
        kimchi_new = replace(base, id=new_id(), ts=T0 + timedelta(minutes=1), domestic_price=Decimal("135000001"))
        reverse = replace(base, id=new_id(), ts=T0, direction=Direction.REVERSE)
        other = replace(base, id=new_id(), ts=T0 + timedelta(minutes=5), symbol="ETH")
        for fx in rates:
            storage.log_fx_rate(fx)
        for spread in (kimchi_new, kimchi_old, reverse, other):
            storage.log_spread(spread)
        storage.close()
        second = make_storage()
        try:
            assert second.load_last_fx_rate() == rates[1]
            found = second.load_last_spreads(["BTC"])
            assert found is not None
            assert sorted(found, key=lambda s: s.direction.value) == [kimchi_new, reverse]
            assert second.load_last_spreads(["BTC", "ETH"]) is not None
            assert {s.id for s in second.load_last_spreads(["BTC", "ETH"]) or []} == {kimchi_new.id, reverse.id,
                                                                                    other.id}
            assert second.load_last_spreads(["XRP"]) == []
        finally:
            second.close()

    def test_reopening_the_same_position_never_duplicates_it(self, make_storage: Callable[[], Storage]) -> None:
        storage = make_storage()
        position = sample_position()
        storage.log_position_open(position)
        storage.log_position_open(position)
        assert storage.load_positions() == [position]
        storage.close()

    def test_same_record_twice(self, make_storage: Callable[[], Storage]) -> None:
        storage = make_storage()
        spread = sample_records()["spreads"][0]
        storage.log_spread(spread)
        storage.log_spread(spread)
        storage.flush()
        rows = [r for r in self.read_back(storage, "spreads") if r.id == spread.id]
        assert len(rows) == (1 if self.idempotent_ids else 2)
        storage.close()

    def test_flush_then_close_twice_is_harmless(self, make_storage: Callable[[], Storage]) -> None:
        storage = make_storage()
        fx = sample_records()["fx_rates"][0]
        storage.log_fx_rate(fx)
        storage.flush()
        storage.flush()
        storage.close()
        storage.close()
        reopened = make_storage()
        assert fx in self.read_back(reopened, "fx_rates")
        reopened.close()

    def test_order_states_are_durable_when_written(self, make_storage: Callable[[], Storage]) -> None:
        """``write_order_states`` (live execution stores both legs' ``sent`` with it before sending): when it
        returns, a new instance (a restart; the first one is never closed) reads the states back with
        ``load_orders``. Skipped for a storage that keeps no orders to read back (``load_orders`` None)."""
        from dataclasses import replace

        storage = make_storage()
        base = sample_records()["orders"][0]
        states = [replace(base, id=f"{cid}.1", order_type=OrderType.LIMIT, price=Decimal("135000000"),
                          status=OrderStatus.SENT, filled_qty=Decimal(0), avg_price=None, fee=Decimal(0),
                          fee_currency="", client_order_id=cid) for cid in ("af-c1-odn0", "af-c1-ofn0")]
        storage.write_order_states(states)
        second = make_storage()
        try:
            loaded = second.load_orders()
            if loaded is None:
                pytest.skip("this storage keeps no orders to read back (load_orders returns None)")
            assert [o for o in loaded if o.id in {s.id for s in states}] == states
        finally:
            second.close()
            storage.close()

    def test_describe_has_no_secrets(self, make_storage: Callable[[], Storage]) -> None:
        storage = make_storage()
        text = storage.describe()
        assert isinstance(text, str) and text
        secret = self.planted_secret
        if not secret:
            storage.close()
            pytest.skip("no planted_secret: set it to a secret make_storage puts into the config")
        for shown in (text, str(storage), repr(storage)):
            assert secret not in shown, f"the planted secret is shown: {shown!r}"
        storage.close()


def vars_of(record: Any) -> list[Any]:
    from arbframe.core.records import columns

    return [getattr(record, name) for name in columns(type(record))]
