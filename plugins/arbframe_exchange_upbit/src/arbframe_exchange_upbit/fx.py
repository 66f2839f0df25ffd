"""The ``exchange`` FX source (entry point ``arbframe.fx: exchange``): USD/KRW implied from Upbit's KRW-USDT
market, taking one USDT as one US dollar.

The rate is the mid of the KRW-USDT order book (``fx.exchange.price: mid``; ``bid``/``ask``/``last`` also
work; the market is ``fx.exchange.market``).
The source reuses the ``upbit`` section's ``base_url``, rate limits, timeout and retries, so it
follows the connector to a fake server or another region. In mock mode the rate comes from the kernel's
simulated market (its KRW-USDT book), marked ``simulated``.

Note the tether premium: KRW-USDT usually trades a little above the bank USD/KRW rate, so premiums computed with
this source are ``usdt_premium`` in the sense of DOMAIN.md; the kernel records the source name with every spread.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar

from arbframe import FxRate, FxSource, PluginContext, ProtocolError, new_id, schema_defaults, utcnow

from .exchange import SCHEMA as UPBIT  # the connector's section: its defaults, declared once
from .parsing import dec, parse_rest_orderbook
from .rest import UpbitRest

__all__ = ["SCHEMA", "UpbitFxSource"]

#: the FX source's own section, ``fx.exchange`` (the kernel's rule: an FX source's section is ``fx.<name>``)
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "market": {"type": "string", "default": "KRW-USDT",
                   "description": "Upbit market the `exchange` FX source reads"},
        "price": {"enum": ["mid", "bid", "ask", "last"], "default": "mid",
                  "description": "which price of that market is the USD/KRW rate"},
    },
    "additionalProperties": False,
}
#: the keys' spelling before the one-rule layout (``fx.exchange_market``), still read when the new ones are absent
LEGACY_KEYS = {"exchange_market": "market", "exchange_price": "price"}


class UpbitFxSource(FxSource):
    name: ClassVar[str] = "exchange"
    api_version: ClassVar[int] = 1

    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        return SCHEMA

    def __init__(self, section: Mapping[str, Any] | None = None, context: PluginContext | None = None) -> None:
        own = dict(section or {})
        legacy = {new: own[old] for old, new in LEGACY_KEYS.items() if old in own and new not in own}
        if legacy and context is not None:
            context.logger(__name__).warning(
                "fx.exchange_market / fx.exchange_price are read for now: write fx.exchange.market / fx.exchange.price")
        cfg = schema_defaults(SCHEMA, {**own, **legacy})
        self.context = context
        self.market = str(cfg["market"])
        self.price = str(cfg["price"])
        upbit = schema_defaults(UPBIT, (context.config or {}).get("upbit") if context is not None else None)
        self.base_url = str(upbit["base_url"])
        self.mock = bool(context.mock) if context is not None else False
        self.rest = UpbitRest(self.base_url, rate_limit=float(upbit["rate_limit"]), group_limits=upbit["group_limits"],
                              timeout=float(upbit["timeout_seconds"]), max_retries=int(upbit["max_retries"]),
                              backoff=float(upbit["retry_backoff_seconds"]),
                              backoff_max=float(upbit["retry_backoff_max_seconds"]),
                              ban_seconds=float(upbit["ban_seconds"]))

    @property
    def source_name(self) -> str:
        return f"upbit:{self.market}"

    async def fetch(self) -> FxRate:
        if self.mock:
            return self._simulated()
        if self.price == "last":
            rows = await self.rest.call("ticker", {"markets": self.market})
            if not rows:
                raise ProtocolError("upbit /v1/ticker: empty answer", endpoint="/v1/ticker")
            rate = dec(rows[0]["trade_price"])
            ts = utcnow()
        else:
            rows = await self.rest.call("orderbook", {"markets": self.market, "count": 1})
            if not rows:
                raise ProtocolError("upbit /v1/orderbook: empty answer", endpoint="/v1/orderbook")
            book = parse_rest_orderbook(rows[0], "upbit", 1)
            if book.best_bid is None or book.best_ask is None:
                raise ProtocolError(f"upbit {self.market}: empty book", endpoint="/v1/orderbook")
            rate = {"bid": book.best_bid, "ask": book.best_ask}.get(self.price, (book.best_bid + book.best_ask) / 2)
            ts = book.ts
        if rate <= 0:
            raise ProtocolError(f"upbit {self.market}: non-positive rate {rate}")
        return FxRate(id=new_id(), ts=ts, rate=Decimal(rate), source=self.source_name)

    def _simulated(self) -> FxRate:
        import arbframe

        market = getattr(self.context, "market", None)
        if market is None:
            market = arbframe.SimulatedMarket()
            if self.context is not None:
                self.context.market = market
        book = market.order_book("upbit", "USDT", 1)
        rate = (book.best_bid + book.best_ask) / 2
        return FxRate(id=new_id(), ts=book.ts, rate=rate, source=self.source_name, simulated=True)

    async def close(self) -> None:
        await self.rest.close()
