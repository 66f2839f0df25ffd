"""Reconciliation: the stored orders and balances against the venues.

**On start** (before the first entry; entries wait until it is done):

1. Every order row since ``live.reconcile_lookback_hours`` is read back (``Storage.load_orders``); its client ids
   are never sent again. Each order whose latest state is not final (``sent``, ``unknown``, ``open``,
   ``partially_filled``) is looked up at its venue by client id: its fills are adopted, an order still open is
   canceled (a stray), one the venue does not know was never placed.
2. Hedges whose outcome never reached the books (their client ids are not in the symbol's ``hedges_settled``
   control record: the process stopped between sending and recording) are settled: fully filled on both legs ->
   adopted as they are; one leg ahead of the other -> the excess is unwound on its venue. Each becomes a
   :class:`~arbframe.execution.base.HedgeReport` the engine records on its first tick (an entry becomes a position,
   a close closes or shrinks its position). Only the book's own symbols are settled (``symbols``): runners with
   separate books share a store, and each settles its own hedges. The record is kept per symbol
   (``hedges_settled.<domestic>-<foreign>-<SYMBOL>``, the symbol's book lock name), so two runners never write
   the same record; the one shared record of earlier versions (``hedges_settled``) is still read.
3. Balances are read from both venues; they are the baseline of the periodic check.

Before step 1 the residual exposure recorded before the restart is read back (one line per hedge that left one,
:mod:`arbframe.execution.residual`); above ``live.max_residual_krw`` it keeps entries blocked after the
reconciliation until an operator flattens it by hand and runs ``arbframe resume --flattened``. A store that cannot
say what is recorded keeps entries blocked (the exposure is unknown).

**Every ``live.reconcile_interval_minutes``**: each venue's balances (free + locked) are compared with what the
books say they should be (the baseline plus every hedge's balance changes since); a relative difference over
``live.max_balance_drift`` on any asset pauses entries until a later check finds them in line again (or
``arbframe resume`` takes the current balances as the new baseline).

One log line per item (``[RECON] ...``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import timedelta
from decimal import Decimal
from typing import Any

from arbframe.core.errors import UnknownOrder
from arbframe.core.models import ZERO, Direction, Order, OrderBook, Side
from arbframe.execution.base import HedgeReport
from arbframe.execution.live import HedgePlan, Leg, LiveExecutor
from arbframe.execution.orders import FINAL, ManagedOrder, S, latest_states, parse_client_order_id, status_of

log = logging.getLogger("arbframe.execution")

SETTLED = "hedges_settled"
#: client ids kept in each ``hedges_settled`` control record (older ones are past the lookback anyway)
MAX_SETTLED = 2000


def settled_record(domestic: str, foreign: str, symbol: str) -> str:
    """The control record of the hedges on ``symbol`` that reached the books (one writer: the runner holding the
    symbol's book lock)."""
    from arbframe.kernel.book import safe_name

    return safe_name(f"{SETTLED}.{domestic}-{foreign}-{symbol.upper()}")


class Reconciler:
    """``symbols``: the book's (its hedges are the ones settled here); None settles every symbol's."""

    def __init__(self, executor: LiveExecutor, symbols: Iterable[str] | None = None) -> None:
        self.ex = executor
        executor.reconciler = self
        self.symbols = None if symbols is None else frozenset(s.upper() for s in symbols)
        self.baseline_ts: Any = None
        #: symbol -> the client ids of its hedges in the books, as stored (read before its first write)
        self.settled: dict[str, list[str]] = {}
        self._legacy: list[str] | None = None  # the shared record of earlier versions (read, never written)
        #: unrecorded hedges waiting for an order's outcome: (position id, purpose) -> its orders
        self.pending: dict[tuple[str, str], list[ManagedOrder]] = {}

    # --------------------------------------------------------------------------------------------- settled
    def _read(self, name: str) -> list[str]:
        try:
            value = self.ex.storage.read_control(name)
        except NotImplementedError:
            value = None
        return [str(i) for i in (value or {}).get("ids", [])]

    def _ids_of(self, symbol: str) -> list[str]:
        symbol = symbol.upper()
        ids = self.settled.get(symbol)
        if ids is None:
            ids = self.settled[symbol] = self._read(settled_record(self.ex.domestic, self.ex.foreign, symbol))
        return ids

    def load_settled(self, symbols: Iterable[str] = ()) -> set[str]:
        """The client ids of the hedges on ``symbols`` (and in the shared record of earlier versions) that reached
        the books; raises when the store does not answer."""
        if self._legacy is None:
            self._legacy = self._read(SETTLED)
        out = set(self._legacy)
        for symbol in symbols:
            out.update(self._ids_of(symbol))
        return out

    def mark_settled(self, report: HedgeReport) -> None:
        """Remember that ``report``'s orders are in the books (written before the engine records them)."""
        ids = [o.client_order_id for o in report.orders if o.client_order_id]
        if not ids:
            return
        try:
            symbol = report.symbol.upper()
            kept = self.settled[symbol] = [*self._ids_of(symbol), *ids][-MAX_SETTLED:]
            self.ex.storage.write_control(settled_record(self.ex.domestic, self.ex.foreign, symbol), {"ids": kept})
        except NotImplementedError:
            pass
        except Exception as exc:
            log.error("[RECON] could not store that hedge %s is settled (%s: %s): a restart would settle it again",
                      report.position_id, type(exc).__name__, exc)

    # ---------------------------------------------------------------------------------------------- start
    async def on_start(self) -> list[HedgeReport]:
        """Steps 1-3 of the module docstring; returns the reports of the hedges it settled."""
        ex = self.ex
        ex.risk.reconciling = "reconciliation with the venues is running"
        if not await self.restore_residuals():
            return []
        since = ex.now() - timedelta(hours=ex.cfg.reconcile_lookback_hours)
        try:
            rows = await asyncio.to_thread(ex.storage.load_orders, since)
        except Exception as exc:
            rows = None
            log.error("[RECON] stored orders could not be read (%s: %s): entries stay blocked", type(exc).__name__,
                      exc)
            ex.risk.reconciling = f"stored orders could not be read ({type(exc).__name__}); restart when the storage " \
                                  f"is back"
            return []
        reports: list[HedgeReport] = []
        if rows is None:
            log.warning("[RECON] %s keeps no orders: nothing to settle from earlier runs", ex.storage.describe())
        else:
            reports = await self._settle_orders(rows)
            if ex.risk.reconciling != "reconciliation with the venues is running":
                return reports  # blocked with its reason
        await self.refresh_balances(baseline=True)
        ex.risk.reconciling = None
        ex.risk.publish()
        if ex.risk.residual_over():
            log.warning("[RECON] start-up reconciliation done: %d hedge(s) settled; entries blocked: %s", len(reports),
                        ex.risk.residual_reason())
        else:
            residual = f"; residual exposure {ex.risk.residual_text()}" if ex.risk.residuals else ""
            log.info("[RECON] start-up reconciliation done: %d hedge(s) settled%s; entries allowed", len(reports),
                     residual)
        return reports

    async def restore_residuals(self) -> bool:
        """The residual exposure recorded before the restart, into the risk guard (one line each); False (entries
        blocked) when the store does not answer."""
        ex = self.ex
        store = ex.residual_store
        if store is None:
            return True
        try:
            found = await asyncio.to_thread(store.load)
        except Exception as exc:
            log.error("[RECON] residual exposure could not be read from %s (%s: %s): entries stay blocked",
                      store.where, type(exc).__name__, exc)
            ex.risk.reconciling = f"residual exposure could not be read ({type(exc).__name__}); restart when the " \
                                  "storage is back"
            return False
        ex.risk.restore_residuals(found)
        for r in found:
            log.warning("[RECON] residual exposure %s: recorded before the restart; flatten it by hand, then "
                        "arbframe resume --flattened", r.describe())
        try:
            elsewhere = [r for r in await asyncio.to_thread(store.load, every_symbol=True) if r not in found]
        except Exception:  # the book's own were read: the others only inform
            elsewhere = []
        for r in elsewhere:
            log.warning("[RECON] residual exposure %s: on a symbol this runner does not trade (not counted here; a "
                        "runner trading it restores it); flatten it by hand, then arbframe resume --flattened",
                        r.describe())
        if found:
            log.warning("[RECON] residual exposure restored: %s KRW (%s); live.max_residual_krw=%s",
                        f"{ex.risk.residual_krw.quantize(Decimal(1)):,}", ex.risk.residual_text(),
                        ex.cfg.max_residual_krw)
        if ex.kill_switch is not None:  # flattened by hand while no runner was running
            await ex.apply_flattened(ex.kill_switch.state)
        return True

    async def _settle_orders(self, rows: list[Order]) -> list[HedgeReport]:
        ex = self.ex
        latest = latest_states(rows)
        for row in rows:
            if row.client_order_id:
                ex.used_ids.add(row.client_order_id)
        for cid, row in latest.items():
            parsed = parse_client_order_id(cid)
            if parsed is not None and row.position_id:
                key = (row.position_id, parsed.purpose, parsed.leg)
                ex.attempts[key] = max(ex.attempts.get(key, -1), parsed.attempt)
        mine = self.symbols
        try:
            settled = self.load_settled(sorted({r.symbol.upper() for r in latest.values()
                                                if mine is None or r.symbol.upper() in mine}))
        except Exception as exc:  # unknown which hedges the books have: settling any could count one twice
            log.error("[RECON] the record of settled hedges could not be read (%s: %s): entries stay blocked",
                      type(exc).__name__, exc)
            ex.risk.reconciling = f"the record of settled hedges could not be read ({type(exc).__name__}); " \
                                  "restart when the storage is back"
            return []
        groups: dict[tuple[str, str], list[ManagedOrder]] = {}
        for cid, row in sorted(latest.items(), key=lambda item: item[1].ts):
            venue = ex.venues.get(row.exchange)
            parsed = parse_client_order_id(cid)
            if venue is None or parsed is None or not row.position_id:
                continue
            if mine is not None and row.symbol.upper() not in mine:
                continue  # another book's hedge: the runner trading its symbol settles it
            order = ManagedOrder.adopt(row, venue.quote_currency)
            if order.state not in FINAL:
                await self._resolve(order)
            if cid not in settled:
                groups.setdefault((row.position_id, parsed.purpose), []).append(order)
        self.pending = groups
        return await self.settle_pending(retry=False)

    async def settle_pending(self, *, retry: bool = True) -> list[HedgeReport]:
        """Settle the unrecorded hedges whose orders are all known; those with an order still unknown wait (their
        orders are looked up again first)."""
        ex = self.ex
        reports = []
        for key, orders in list(self.pending.items()):
            position_id, purpose = key
            for order in orders if retry else ():
                if not order.final and order.client_order_id in ex.live_orders:
                    await self._resolve(order)
            if any(not o.final for o in orders):
                log.warning("[RECON] hedge %s (%s): an order's outcome is still unknown; settled once it is known",
                            position_id, purpose)
                continue
            del self.pending[key]
            if not any(o.filled_qty for o in orders):
                log.info("[RECON] hedge %s (%s): nothing filled; nothing to settle", position_id, purpose)
                continue
            reports.append(await self._settle_hedge(position_id, purpose, orders))
        ex.count_unresolved()
        ex.risk.publish()
        return reports

    async def _resolve(self, order: ManagedOrder) -> None:
        """Look one stored non-final order up at its venue and adopt what it says (one log line)."""
        ex = self.ex
        venue = ex.venues[order.exchange]
        stored = order.state.value
        try:
            answer = await venue.trading.fetch_order(order.symbol, order.client_order_id)
        except UnknownOrder:
            await ex._move(order, S.REJECTED, note="reconciliation: the venue does not know it: never placed")
            log.info("[RECON] %s: stored %s -> not at the venue: never placed", order.describe(), stored)
            return
        except Exception as exc:
            log.error("[RECON] %s: stored %s; lookup failed (%s: %s): entries stay blocked until it is known",
                      order.describe(), stored, type(exc).__name__, exc)
            ex.live_orders[order.client_order_id] = order
            ex.count_unresolved()
            return
        order.sent_at = ex.clock()
        await ex._move(order, status_of(answer), answer, note="reconciliation: adopted the venue's state")
        if not order.final:
            await ex._cancel(order, "reconciliation: a stray order still open")
        log.info("[RECON] %s: stored %s -> venue %s, filled %s: adopted", order.describe(), stored,
                 order.state.value, order.filled_qty)

    async def _settle_hedge(self, position_id: str, purpose: str, orders: list[ManagedOrder]) -> HedgeReport:
        """A hedge the books never recorded: adopt it when both legs match, else unwind the excess."""
        ex = self.ex
        symbol = orders[0].symbol
        legs: dict[str, Leg] = {}
        for order in orders:
            venue = ex.venues[order.exchange]
            leg = legs.get(order.leg)
            if leg is None:
                side = order.side.opposite if order.kind == "unwind" else order.side
                empty = OrderBook(venue.name, symbol, (), (), ex.now())
                leg = legs[order.leg] = Leg(venue, order.leg, side, ZERO, empty)
            if order.kind == "first":
                leg.qty = order.qty
                leg.vwap = order.price or ZERO
            leg.orders.append(order)
        for role, name in (("domestic", ex.domestic), ("foreign", ex.foreign)):
            if role not in legs:  # the process stopped before this leg was even written: nothing was sent
                other = next(iter(legs.values()))
                venue = ex.venues[name]
                legs[role] = Leg(venue, role, other.side.opposite, other.qty, OrderBook(name, symbol, (), (), ex.now()))
        d, f = legs["domestic"], legs["foreign"]
        for leg in (d, f):
            if not leg.qty:
                leg.qty = max((o.qty for o in leg.orders), default=ZERO) or (f.qty if leg is d else d.qty)
            leg.book = await leg.venue.book(symbol) or leg.book
        direction = Direction.KIMCHI if d.side is Side.SELL else Direction.REVERSE
        if purpose == "close":
            direction = Direction.REVERSE if direction is Direction.KIMCHI else Direction.KIMCHI
        plan = HedgePlan(position_id, purpose, symbol, direction, d.qty, (d, f), ex.now())
        lead, lag = (d, f) if d.frac >= f.frac else (f, d)
        log.warning("[RECON] hedge %s (%s %s) was not recorded: %s filled %s of %s, %s filled %s of %s%s",
                    position_id, purpose, symbol, d.venue.name, d.filled - d.unwound, d.qty, f.venue.name,
                    f.filled - f.unwound, f.qty,
                    f"; unwinding the excess on {lead.venue.name}" if ex._significant(plan, lead, lag,
                                                                                   lead.frac - lag.frac) else "")
        if ex._significant(plan, lead, lag, lead.frac - lag.frac):
            if not lead.vwap:
                lead.vwap = lead.avg_price() or ZERO
            await ex._unwind(plan, lead, lag)
        report = HedgeReport(purpose, position_id, symbol, direction, plan.ts, plan.qty,
                             close_reason="reconciled" if purpose == "close" else "")
        return ex._finish(plan, report)

    # ------------------------------------------------------------------------------------------- balances
    async def refresh_balances(self, *, baseline: bool = False) -> dict[tuple[str, str], Decimal]:
        """Read both venues' balances; the baseline (start, ``arbframe resume``) or a drift check."""
        ex = self.ex
        actual: dict[tuple[str, str], Decimal] = {}
        for name, venue in ex.venues.items():
            try:
                details = await venue.trading.fetch_balance_details()
            except Exception as exc:
                log.warning("[RECON] %s balances unavailable (%s: %s)", name, type(exc).__name__, exc)
                continue
            for asset, balance in details.items():
                actual[(name, asset.upper())] = balance.total
        if baseline:
            for (name, asset), total in actual.items():
                ex.wallets[name].balances[asset] = total
            self.baseline_ts = ex.now()
            ex.risk.drift = None
            for name in ex.venues:
                held = ", ".join(f"{a}={v}" for (n, a), v in sorted(actual.items()) if n == name and v)
                log.info("[RECON] %s balances: %s", name, held or "none")
            return actual
        self.check_drift(actual)
        return actual

    def check_drift(self, actual: dict[tuple[str, str], Decimal], assets: Iterable[str] | None = None) -> str | None:
        """Compare ``actual`` (venue, asset) -> total with the books; pause entries on drift (one line each)."""
        ex = self.ex
        limit = ex.cfg.max_balance_drift
        drifting = []
        for name, wallet in ex.wallets.items():
            for asset, expected in sorted(wallet.balances.items()):
                if assets is not None and asset not in assets:
                    continue
                have = actual.get((name, asset), ZERO)
                scale = abs(expected) if expected else Decimal(1)
                drift = abs(have - expected) / scale
                if ex.metrics is not None:
                    ex.metrics.balance_drift.labels(venue=name, asset=asset).set(float(drift))
                if drift > limit:
                    drifting.append(f"{name} {asset} holds {have}, the books say {expected}")
                    log.error("[RECON] %s %s: holds %s, the books say %s (drift %.4f%% > %s)", name, asset, have,
                              expected, float(drift) * 100, limit)
        if drifting:
            ex.risk.drift = "; ".join(drifting)
            log.error("[RECON] balance check: %d asset(s) drifted: entries paused", len(drifting))
        else:
            if ex.risk.drift is not None:
                log.warning("[RECON] balance check: balances match the books again: entries allowed")
            else:
                log.info("[RECON] balance check: every balance matches the books")
            ex.risk.drift = None
        ex.risk.publish()
        return ex.risk.drift

    async def run_periodic(self, stop: asyncio.Event) -> None:
        """Until ``stop``: unrecorded hedges waiting for an order's outcome are retried every few seconds (their
        reports go to the engine like any hedge's); every ``live.reconcile_interval_seconds`` a balance check
        (postponed while a hedge is in flight, whose changes are not in the books yet)."""
        ex = self.ex
        interval = ex.cfg.reconcile_interval_seconds
        retry = max(1.0, ex.cfg.lookup_interval_seconds * 10) if self.pending else interval
        next_check = ex.clock() + interval
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=min(retry, max(0.0, next_check - ex.clock())))
                return
            except asyncio.TimeoutError:
                pass
            if self.pending:
                ex.adopt(await self.settle_pending())
            if ex.clock() < next_check:
                continue
            next_check = ex.clock() + interval
            if ex.in_flight or self.pending:
                log.info("[RECON] balance check postponed: %d hedge(s) in flight, %d unsettled", ex.in_flight,
                         len(self.pending))
                continue
            await self.refresh_balances()

