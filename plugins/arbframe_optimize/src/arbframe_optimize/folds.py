"""Walk-forward folds over the recordings' time span: train on one window, score on the next.

The span from the first to the last snapshot is cut into ``folds + 1`` windows of equal length ``W0 .. Wk``.
Fold ``i`` (1..k) searches on ``W(i-1)`` (or, anchored, on ``W0 .. W(i-1)``) and its best parameters are scored
on ``Wi``, which no trial of that fold ever replays. Every fold is a study of its own, so what the sampler learnt
in one fold cannot reach another fold's scoring window either. ``folds: 0`` is one study over the whole span and
no out-of-sample score. Windows are half-open ``[start, end)``; the last one ends just after the last snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from arbframe import ConfigError

_TICK = timedelta(microseconds=1)


@dataclass(frozen=True)
class Fold:
    index: int  # 1-based
    count: int  # folds in the study (0: no walk-forward)
    train: tuple[datetime, datetime]
    test: tuple[datetime, datetime] | None

    @property
    def label(self) -> str:
        return "whole span" if self.count == 0 else f"fold {self.index}/{self.count}"

    def study_name(self, base: str) -> str:
        return base if self.count == 0 else f"{base}.fold{self.index}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "fold": self.index, "folds": self.count,
            "train": [t.isoformat() for t in self.train],
            "test": None if self.test is None else [t.isoformat() for t in self.test],
        }


def walk_forward(first: datetime, last: datetime, folds: int, *, anchored: bool = False) -> list[Fold]:
    """The folds over snapshots stamped ``first`` .. ``last`` (inclusive)."""
    end = last + _TICK
    if folds == 0:
        return [Fold(1, 0, (first, end), None)]
    if folds < 0:
        raise ConfigError(f"config error: optimize.folds: {folds} is out of range; expected 0 or more")
    width = (end - first) / (folds + 1)
    if width < _TICK:
        raise ConfigError(f"config error: optimize.folds: the recordings span {end - first}; too short for "
                          f"{folds} folds")
    bounds = [first + width * i for i in range(folds + 1)] + [end]
    return [
        Fold(i, folds, (bounds[0] if anchored else bounds[i - 1], bounds[i]), (bounds[i], bounds[i + 1]))
        for i in range(1, folds + 1)
    ]
