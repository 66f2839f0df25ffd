"""The ``exchange`` FX source (entry point ``arbframe.fx: exchange``): USD/KRW implied from Upbit's KRW-USDT
market, taking one USDT as one US dollar.

The rate is the mid of the KRW-USDT order book (``fx.exchange_price: mid``; ``bid``/``ask``/``last`` also
work). The source reuses the ``upbit`` section's ``base_url``, ``timeout_seconds`` and ``rate_limit``, so it
follows the connector to a fake server or another region. In mock mode the rate comes from the kernel's
simulated market (its KRW-USDT book), marked ``simulated``.

Note the tether premium: KRW-USDT usually trades a little above the bank USD/KRW rate, so premiums computed with
this source are ``usdt_premium`` in the sense of DOMAIN.md; the kernel records the source name with every spread.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar

from arbframe import FxRate, FxSource, PluginContext, new_id, utcnow

from .errors import UpbitProtocolError
from .parsing import dec, parse_rest_orderbook
from .ratelimit import RateLimiter
from .rest import UpbitRest

__all__ = ["UpbitFxSource"]


class UpbitFxSource(FxSource):
    name: ClassVar[str] = "exchange"
    api_version: ClassVar[int] = 1

    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {
                "exchange_market": {"type": "string", "default": "KRW-USDT",
                                    "description": "Upbit market the `exchange` FX source reads"},
                "exchange_price": {"enum": ["mid", "bid", "ask", "last"], "default": "mid",
                                   "description": "which price of that market is the USD/KRW rate"},
            },
        }

    def __init__(self, section: Mapping[str, Any] | None = None, context: PluginContext | None = None) -> None:
        section = dict(section or {})
        self.context = context
        self.market = str(section.get("exchange_market") or "KRW-USDT")
        self.price = str(section.get("exchange_price") or "mid")
        upbit = dict(((context.config or {}).get("upbit") if context is not None else None) or {})
        self.base_url = str(upbit.get("base_url") or "https://api.upbit.com")
        self.mock = bool(context.mock) if context is not None else False
        self.rest = UpbitRest(base_url=self.base_url, timeout=float(upbit.get("timeout_seconds") or 5.0),
                              max_retries=int(upbit.get("max_retries", 3)),
                              limiter=RateLimiter(float(upbit.get("rate_limit") or 10)))

    @property
    def source_name(self) -> str:
        return f"upbit:{self.market}"

    async def fetch(self) -> FxRate:
        if self.mock:
            return self._simulated()
        if self.price == "last":
            rows = await self.rest.request("ticker", {"markets": self.market})
            if not rows:
                raise UpbitProtocolError("ticker: empty answer", endpoint="/v1/ticker")
            rate = dec(rows[0]["trade_price"])
            ts = utcnow()
        else:
            rows = await self.rest.request("orderbook", {"markets": self.market, "count": 1})
            if not rows:
                raise UpbitProtocolError("orderbook: empty answer", endpoint="/v1/orderbook")
            book = parse_rest_orderbook(rows[0], "upbit", 1)
            if book.best_bid is None or book.best_ask is None:
                raise UpbitProtocolError(f"{self.market}: empty book", endpoint="/v1/orderbook")
            rate = {"bid": book.best_bid, "ask": book.best_ask}.get(self.price, (book.best_bid + book.best_ask) / 2)
            ts = book.ts
        if rate <= 0:
            raise UpbitProtocolError(f"{self.market}: non-positive rate {rate}")
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
