"""The backtest chart: premium and equity over time (matplotlib, optional: the ``plot`` extra)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass


log = logging.getLogger("arbframe.backtest")

def write_chart(points: list[tuple[Any, ...]], path: Path) -> bool:
    """Premium and equity over time as a PNG; False (and a log line) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("[BACKTEST] no chart: matplotlib is not installed (pip install 'arbframe[plot]')")
        return False
    xs = [p[0] for p in points]
    fig, (ax1, ax2) = plt.subplots(2, 1, sharex=True, figsize=(10, 6))
    ax1.plot(xs, [None if p[1] is None else p[1] * 100 for p in points], linewidth=0.8)
    ax1.set_ylabel("kimchi premium (%)")
    ax2.plot(xs, [p[2] for p in points], linewidth=0.8, color="tab:green")
    ax2.set_ylabel("equity (KRW)")
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return True
