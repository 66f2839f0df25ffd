"""Recordings made from the seeded simulated market, in the format ``arbframe record`` writes.

Tests, benchmarks and tuning use them: same seed, same file.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from arbframe.replay.recording import encode_snapshot, make_header, open_recording
from arbframe.trading.engine import MarketSnapshot
from arbframe.trading.strategy import StrategyConfig

log = logging.getLogger("arbframe.backtest")


def simulate_recording(
    path: str | Path,
    *,
    snapshots: int,
    symbols: Sequence[str] = ("BTC", "ETH"),
    seed: int = 42,
    depth: int = 15,
    start: datetime | None = None,
    fees: Mapping[str, str] | None = None,
    tether: bool = True,
    book_lag_seconds: float = 0.0,
    **market_kwargs: Any,
) -> Path:
    """Write a recording of the simulated market without the network or a clock (tests, benchmarks).

    ``book_lag_seconds`` > 0 stamps each book with its own time, up to that much before the snapshot (seeded), as
    books fetched from real venues are."""
    import random
    from dataclasses import replace
    from datetime import timedelta

    from arbframe.market.simulation import SimulatedMarket

    lag = random.Random(seed)
    last_ts: dict[tuple[str, str], datetime] = {}

    market = SimulatedMarket(symbols, seed=seed, start=start or datetime(2026, 1, 1, tzinfo=timezone.utc),
                             depth=depth, **market_kwargs)
    venues = list(market.venues)
    domestic = next(v for v in venues if market.venues[v] == "KRW")
    foreign = next(v for v in venues if market.venues[v] != "KRW")
    fee_map = {k: Decimal(v) for k, v in (fees or {domestic: "0.0005", foreign: "0.001"}).items()}
    cfg = StrategyConfig(domestic=domestic, foreign=foreign, symbols=tuple(market.symbols))
    rules = {(v, s): market.rules(v, s) for v in (domestic, foreign) for s in market.symbols}
    header = make_header(cfg, dict(market.venues), fee_map, rules, True)
    p = Path(path)
    with open_recording(p, "w") as fh:
        fh.write(json.dumps(header, separators=(",", ":")) + "\n")
        for _ in range(snapshots):
            market.step()
            books = {(v, s): market.order_book(v, s, depth) for s in market.symbols for v in (domestic, foreign)}
            if tether:
                books[(domestic, "USDT")] = market.order_book(domestic, "USDT", depth)
            if book_lag_seconds > 0:  # a book's own time never goes backwards (its last update)
                stamped = {}
                for k, b in books.items():
                    when = b.ts - timedelta(seconds=round(lag.uniform(0, book_lag_seconds), 3))
                    when = last_ts[k] = max(when, last_ts.get(k, when))
                    stamped[k] = replace(b, ts=when)
                books = stamped
            fh.write(encode_snapshot(MarketSnapshot(market.now, books, market.fx_rate(), True)) + "\n")
    return p
