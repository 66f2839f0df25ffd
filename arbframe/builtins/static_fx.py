"""The ``static`` FX source: a fixed USD/KRW rate from config (seed: fx_mode=static, 1350.0)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from arbframe.core.models import FxRate, new_id, utcnow
from arbframe.kernel.interfaces import FxSource, PluginContext


class StaticFxSource(FxSource):
    name = "static"

    def __init__(
        self,
        section: Mapping[str, Any],
        context: PluginContext | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
        ids: Callable[[], str] = new_id,
    ) -> None:
        # ``fx.static_rate``: a kernel key (builtins.trading.FX_SCHEMA) the kernel hands every FX source beside its own
        self.rate = Decimal(str(section.get("static_rate", "1350.0")))
        self._clock = clock
        self._ids = ids

    async def fetch(self) -> FxRate:
        return FxRate(id=self._ids(), ts=self._clock(), rate=self.rate, source="static")
