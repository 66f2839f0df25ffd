"""``arbframe record``: the service loop writing one snapshot per interval to a recording instead of trading."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from arbframe.core.models import utcnow
from arbframe.replay.recording import encode_snapshot, make_header, open_recording
from arbframe.service.runner import RunOptions, StopSignal, TradingService, _interval, paced, service_name

if TYPE_CHECKING:
    from arbframe.kernel.plugin_host import Kernel

log = logging.getLogger("arbframe.backtest")


async def record_loop(kernel: Kernel, opts: RunOptions, path: Path) -> int:
    """``arbframe record``: save one snapshot per interval until a stop condition."""
    mock = bool(kernel.context.mock if opts.mock is None else opts.mock)
    service = TradingService(kernel, mock=mock, with_engine=False)
    stop = StopSignal()
    stop.install()
    count = 0
    fh: IO[str] | None = None
    try:
        await service.start()
        quotes = {n: e.quote_currency for n, e in service.exchanges.items()}
        fees = {n: e.fee_rate for n, e in service.exchanges.items()}
        header = make_header(service.cfg, quotes, fees, service.rules, mock)
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open_recording(path, "w")
        fh.write(json.dumps(header, separators=(",", ":")) + "\n")
        interval = _interval(opts, kernel.config)
        note = service.note()
        log.info("[RECORD] recording snapshots to %s (interval=%gs)%s", path, interval, note)
        async for _ in paced(opts, interval, stop):
            snap = await service.snapshot()
            fh.write(encode_snapshot(snap) + "\n")
            fh.flush()
            count += 1
            if count % 100 == 0 or count == 1:
                log.info("[RECORD] %d snapshots written%s", count, note)
    finally:
        stop.uninstall()
        if fh is not None:
            fh.close()
        log.info("[RECORD] done: %d snapshots in %s", count, path)
        await service.close()
    return 0


def default_recording_path() -> Path:
    return Path("data/recordings") / (utcnow().astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + ".jsonl.gz")


def record(opts: RunOptions, configs: list[str], output: str | None) -> int:
    from arbframe.kernel.config import load_config
    from arbframe.kernel.plugin_host import Kernel, validate_selected

    overrides: dict[str, Any] = {}
    if opts.mock is not None:
        overrides["mock_mode"] = opts.mock
    config = load_config(configs, overrides=overrides)
    kernel = Kernel(config, mode="paper", mock=bool(config.get("mock_mode", False)),
                    service_name=service_name(config) + "_recorder")
    try:
        validate_selected(kernel)
    except Exception:
        kernel.close()
        raise
    path = Path(output) if output else default_recording_path()
    return asyncio.run(record_loop(kernel, opts, path))
