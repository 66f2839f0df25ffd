"""Storage drivers of the kernel's own: ``NullStorage`` drops everything (benchmarks, dry runs) and
``MemoryStorage`` keeps every record in lists (tests, the storage contract kit's reference)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from arbframe.core.models import ErrorRecord, FxRate, Order, Position, Spread
from arbframe.core.records import newest_fx_rate, newest_spreads
from arbframe.kernel.interfaces import Storage


class NullStorage(Storage):
    """Drops everything (benchmarks, dry runs)."""

    name = "null"
    order_states_local = True  # in memory: nothing to wait for

    def log_spread(self, spread: Spread) -> None:
        pass

    def log_position_open(self, position: Position) -> None:
        pass

    def log_position_close(self, position: Position) -> None:
        pass

    def log_order(self, order: Any) -> None:
        pass

    def log_trade(self, trade: Any) -> None:
        pass

    def log_fx_rate(self, fx: FxRate) -> None:
        pass

    def log_error(self, error: ErrorRecord) -> None:
        pass

    def load_positions(self) -> list[Position]:
        return []

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class MemoryStorage(NullStorage):
    """Keeps every record in lists (tests); ``load_positions`` / ``load_closed_positions`` return the latest state
    of each position id, ``load_last_fx_rate`` / ``load_last_spreads`` the newest records; ``load_orders`` every
    order row; control records (the kill switch) in a dict."""

    name = "memory"

    def __init__(self) -> None:
        self.spreads: list[Spread] = []
        self.positions: list[Position] = []
        self.orders: list[Any] = []
        self.trades: list[Any] = []
        self.fx_rates: list[FxRate] = []
        self.errors: list[ErrorRecord] = []
        self.controls: dict[str, dict[str, Any]] = {}
        self.flushes = 0

    def log_spread(self, spread: Spread) -> None:
        self.spreads.append(spread)

    def log_position_open(self, position: Position) -> None:
        self.positions.append(position)

    def log_position_close(self, position: Position) -> None:
        self.positions.append(position)

    def log_order(self, order: Any) -> None:
        self.orders.append(order)

    def log_trade(self, trade: Any) -> None:
        self.trades.append(trade)

    def log_fx_rate(self, fx: FxRate) -> None:
        self.fx_rates.append(fx)

    def log_error(self, error: ErrorRecord) -> None:
        self.errors.append(error)

    def load_positions(self) -> list[Position]:
        return [p for p in self._latest() if p.is_open]

    def load_orders(self, since: datetime | None = None) -> list[Order]:
        return [o for o in self.orders if isinstance(o, Order) and (since is None or o.ts >= since)]

    def read_control(self, name: str) -> dict[str, Any] | None:
        value = self.controls.get(name)
        return dict(value) if value is not None else None

    def write_control(self, name: str, value: Mapping[str, Any]) -> None:
        self.controls[name] = dict(value)

    def load_closed_positions(self) -> list[Position]:
        return [p for p in self._latest() if not p.is_open]

    def load_last_fx_rate(self) -> FxRate | None:
        return newest_fx_rate(self.fx_rates)

    def load_last_spreads(self, symbols: Sequence[str]) -> list[Spread]:
        return newest_spreads(self.spreads, symbols)

    def _latest(self) -> list[Position]:
        latest: dict[str, Position] = {}
        for p in self.positions:
            latest[p.id] = p
        return list(latest.values())

    def flush(self) -> None:
        self.flushes += 1
