"""A live venue pair in process, for tests (and the benchmark) of the execution layer.

:func:`live_pair` builds an Upbit-like KRW fake and a Binance-like USDT fake on
:class:`~arbframe.testing.fake_venue.FakeVenue`'s matching engine, their in-process exchanges
(:class:`~arbframe.testing.venue_trading.FakeVenueExchange`) and a
:class:`~arbframe.execution.live.LiveExecutor` writing to a storage; :meth:`LivePair.check` asserts what every
scenario must end with: each venue's balances equal the starting balances plus what the stored orders say they
changed, the net coin exposure is zero or the recorded residual, no client order id reached a venue twice, and
every stored order state has its log line.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar

from arbframe.core.models import IdGenerator, OrderBook, Side
from arbframe.execution.base import LegSpec
from arbframe.execution.config import LiveConfig
from arbframe.execution.control import KillSwitch
from arbframe.execution.live import LiveExecutor, Venue
from arbframe.execution.orders import latest_states, order_changes
from arbframe.execution.residual import Residual, ResidualStore
from arbframe.testing.fake_venue import FakeVenue
from arbframe.testing.venue_trading import FakeVenueExchange

#: the execution layer's stored records, for storage plugins' tests (a kill switch row, residual exposure rows)
__all__ = ["FAST", "FakeBinanceBook", "FakeUpbitBook", "KillSwitch", "LivePair", "Residual", "ResidualStore",
           "live_pair"]


class FakeUpbitBook(FakeVenue):
    """KRW venue: fee 0.05 % in KRW on both sides, a client id accepted once ever (Upbit's ``identifier``)."""

    name = "upbit"
    quote = "KRW"
    default_fees: ClassVar[dict[str, tuple[Decimal, str]]] = {"buy": (Decimal("0.0005"), "quote"),
                                                              "sell": (Decimal("0.0005"), "quote")}
    duplicate_client_id = "any"

    def routes(self, app: Any) -> None:  # in process only
        raise NotImplementedError("FakeUpbitBook has no HTTP routes: use the Upbit plugin's fake server")


class FakeBinanceBook(FakeVenue):
    """USDT venue: fee 0.1 %, a buy's in the coin, a sell's in USDT; duplicate client ids refused only while an
    order with it is open (as Binance)."""

    name = "binance"
    quote = "USDT"
    default_fees: ClassVar[dict[str, tuple[Decimal, str]]] = {"buy": (Decimal("0.001"), "base"),
                                                              "sell": (Decimal("0.001"), "quote")}
    duplicate_client_id = "open"

    def routes(self, app: Any) -> None:  # in process only
        raise NotImplementedError("FakeBinanceBook has no HTTP routes: use the Binance plugin's fake server")


#: timings for tests: every wait in milliseconds
FAST = {"hedge_timeout_seconds": 0.3, "hedge_retry_interval_seconds": 0.005, "lookup_interval_seconds": 0.005,
        "not_found_seconds": 0.03, "rate_limit_backoff_seconds": 0.005}


@dataclass
class LivePair:
    upbit: FakeVenue
    binance: FakeVenue
    up: FakeVenueExchange
    bn: FakeVenueExchange
    executor: LiveExecutor
    storage: Any
    start: dict[tuple[str, str], Decimal] = field(default_factory=dict)

    def restart(self, *, registry: Any = None, **cfg: Any) -> LiveExecutor:
        """A new executor over the same venues and storage, as a restarted process builds it (nothing carried
        over in memory; its metrics in ``registry``); run a :class:`~arbframe.execution.reconcile.Reconciler` on it
        before trading."""
        old = self.executor
        config = LiveConfig(**{**FAST, **cfg}) if cfg else old.cfg
        self.executor = LiveExecutor(old.venues, domestic="upbit", foreign="binance", storage=self.storage,
                                     cfg=config, ids=IdGenerator(12), kill_switch=old.kill_switch,
                                     registry=registry)
        self.executor.residual_store = old.residual_store
        return self.executor

    @property
    def fakes(self) -> dict[str, FakeVenue]:
        return {"upbit": self.upbit, "binance": self.binance}

    async def legs(self, direction: str, qty: Decimal | str, symbol: str = "BTC", *, gross_up: bool = False
                   ) -> tuple[LegSpec, LegSpec]:
        """Both legs of an entry (``kimchi``: sell on Upbit, buy on Binance) at the current books."""
        qty = Decimal(str(qty))
        d_side = Side.SELL if direction == "kimchi" else Side.BUY
        up_book: OrderBook = await self.up.fetch_order_book(symbol, 30)
        bn_book: OrderBook = await self.bn.fetch_order_book(symbol, 30)
        f_qty = qty
        if gross_up and d_side.opposite is Side.BUY:  # Binance takes the buy's fee from the coin
            rate = self.binance.fees["buy"][0]
            f_qty = (qty / (1 - rate) / self.bn.step).to_integral_value(rounding="ROUND_CEILING") * self.bn.step
        return (LegSpec(up_book, d_side, None, "KRW", qty), LegSpec(bn_book, d_side.opposite, None, "USDT", f_qty))

    def balances(self) -> dict[tuple[str, str], Decimal]:
        out = {}
        for name, fake in self.fakes.items():
            for asset in set(fake.balances) | set(fake.locked):
                free, locked = fake.balance(asset)
                out[(name, asset)] = free + locked
        return out

    def stored_changes(self) -> dict[tuple[str, str], Decimal]:
        """What the stored orders (the latest state of each client id) say the venues' balances changed."""
        out: dict[tuple[str, str], Decimal] = {}
        quotes = {"upbit": "KRW", "binance": "USDT"}
        for order in latest_states(list(self.storage.load_orders() or [])).values():
            for key, amount in order_changes(order, quotes[order.exchange]).items():
                out[key] = out.get(key, Decimal(0)) + amount
        return out

    def check(self, caplog: Any = None, *, residual: Decimal = Decimal(0)) -> None:
        """The end state every scenario must reach (see the module docstring)."""
        changes = self.stored_changes()
        now = self.balances()
        for key in set(now) | set(self.start) | set(changes):
            expected = self.start.get(key, Decimal(0)) + changes.get(key, Decimal(0))
            assert now.get(key, Decimal(0)) == expected, f"{key}: venue holds {now.get(key)}, storage says {expected}"
        coin = sum((now.get((v, "BTC"), Decimal(0)) - self.start.get((v, "BTC"), Decimal(0))
                    for v in ("upbit", "binance")), Decimal(0))
        # dust: a buy grossed up to the lot step for a fee taken in the coin leaves up to a step plus that fee
        fees = sum((order.fee for order in latest_states(list(self.storage.load_orders() or [])).values()
                    if order.fee_currency == "BTC"), Decimal(0))
        dust = self.bn.step + fees
        assert abs(coin - residual) <= dust, f"net coin exposure {coin}, recorded residual {residual} (dust {dust})"
        for name, fake in self.fakes.items():
            twice = [cid for cid, n in Counter(fake.placements).items() if n > 1]
            assert not twice, f"{name} received client order ids twice: {twice}"
        both = Counter([*self.upbit.placements, *self.binance.placements])
        assert not [cid for cid, n in both.items() if n > 1], "a client order id reached both venues"
        if caplog is not None:
            lines = [r.getMessage() for r in caplog.records if r.name == "arbframe.execution"]
            for order in self.storage.load_orders() or []:
                want = f"[{order.client_order_id}]: {order.status.value}"
                assert sum(want in line for line in lines) >= 1, f"no log line for {want}"


def live_pair(*, storage: Any = None, registry: Any = None, upbit_balances: dict[str, Any] | None = None,
              binance_balances: dict[str, Any] | None = None, kill_switch: bool = True, data_dir: Any = None,
              **cfg: Any) -> LivePair:
    """A fresh pair (BTC around 100,000,000 KRW and 70,000 USDT) and an executor with :data:`FAST` timings
    (``cfg`` overrides ``LiveConfig`` fields)."""
    from arbframe.builtins.storage import MemoryStorage

    upbit = FakeUpbitBook(mids={"BTC": 100_000_000}, tick="1000", levels=20, seed=3,
                          balances=upbit_balances or {"KRW": 100_000_000, "BTC": 1})
    binance = FakeBinanceBook(mids={"BTC": 70_000}, tick="0.01", levels=20, seed=5,
                              balances=binance_balances or {"USDT": 100_000, "BTC": 1})
    up = FakeVenueExchange(upbit, "upbit", step="0.0001", min_notional="5000")
    bn = FakeVenueExchange(binance, "binance", step="0.00001", min_notional="5")
    storage = storage if storage is not None else MemoryStorage()
    settings = {**FAST, **cfg}
    config = LiveConfig(**settings)
    venues = {"upbit": Venue("upbit", up, "KRW", up), "binance": Venue("binance", bn, "USDT", bn)}
    executor = LiveExecutor(venues, domestic="upbit", foreign="binance", storage=storage, cfg=config,
                            ids=IdGenerator(11), registry=registry,
                            kill_switch=KillSwitch(storage, data_dir) if kill_switch else None)
    executor.residual_store = ResidualStore(storage, "upbit", "binance", ["BTC"], data_dir)
    executor.risk.reconciling = None  # tests that reconcile build a Reconciler themselves
    pair = LivePair(upbit, binance, up, bn, executor, storage)
    pair.start = pair.balances()
    for (name, asset), amount in pair.start.items():
        executor.wallets[name].balances[asset] = amount
    logging.getLogger("arbframe.execution").setLevel(logging.INFO)
    return pair
