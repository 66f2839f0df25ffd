"""Stop and restart keep the paper wallets exactly: closed trades' cash and fees (in every asset) and the open
positions' entry legs come back from storage (the CSV plugin) through the runner's start-up."""

from __future__ import annotations

import asyncio
import os
from decimal import Decimal
from importlib import metadata

import pytest

from arbframe.kernel.config import load_config
from arbframe.kernel.plugin_host import Kernel
from arbframe.service.runner import TradingService


def _kernel(tmp_path) -> Kernel:
    names = {ep.name for ep in metadata.entry_points(group="arbframe.exchange")}
    if not {"upbit", "binance"} <= names:
        if os.environ.get("CI") == "true":
            pytest.fail("exchange plugins not installed (run `make install`)")
        pytest.skip("exchange plugins not installed (run `make install`)")
    overrides = {
        "storage": {"backend": "csv", "csv": {"data_dir": str(tmp_path / "data")}},
        "mock_mode": True,
        "arbitrage": {"cooldown_seconds": 0, "max_daily_loss_krw": None},
    }
    config = load_config([], overrides=overrides)
    # a tick opens, the next closes (and so on): after 5 ticks closed and open positions both exist. Thresholds
    # no config may hold (validation refuses entry < 0 and exit > entry), set after validation on purpose.
    config["arbitrage"].update(entry_threshold=-0.5, exit_threshold=0.5)
    return Kernel(config, mode="paper", mock=True)


async def _session(tmp_path, ticks: int) -> tuple[dict[str, dict[str, Decimal]], int, int, Decimal]:
    service = TradingService(_kernel(tmp_path), mock=True)
    await service.start()
    engine = service.engine
    assert engine is not None
    try:
        started = {v: dict(w.balances) for v, w in engine.executor.wallets.items()}
        for _ in range(ticks):
            engine.process(await service.snapshot())
        service.storage.flush()
        return started, engine.stats.trades, len(engine.positions), engine.stats.total_pnl_krw
    finally:
        ending = {v: dict(w.balances) for v, w in engine.executor.wallets.items()}
        await service.close()
        _session.ending = ending  # type: ignore[attr-defined]


def test_stop_and_restart_keep_the_wallets_to_the_last_digit(tmp_path):
    configured, trades, open_count, pnl = asyncio.run(_session(tmp_path, ticks=5))
    before_stop = _session.ending  # type: ignore[attr-defined]
    assert trades >= 2 and open_count >= 1  # closed trades and open positions at the stop
    assert before_stop != configured
    assert before_stop["binance"]["BTC"] != configured["binance"]["BTC"]  # coin fees and residue moved it
    restarted, trades_after, open_after, pnl_after = asyncio.run(_session(tmp_path, ticks=0))
    assert restarted == before_stop  # every asset of every venue, exactly
    assert (trades_after, open_after, pnl_after) == (trades, open_count, pnl)
