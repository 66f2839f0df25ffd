"""A local fake of Bithumb's public order-book endpoint on :class:`arbframe.testing.fake_venue.FakeVenue`.

::

    with FakeBithumb().in_thread() as fake:          # 127.0.0.1, a free port (or: async with FakeBithumb())
        fake.set_mid("BTC", 135_000_000)
        fake.inject("unavailable", 2)                # shared fault kinds: rate_limited, banned, drop, ...
        fake.inject("venue_error", code="5600")      # Bithumb's own {"status": "5600"} in an HTTP 200

Standalone: ``python -m arbframe_exchange_bithumb.testing.fake_server`` prints ``BASE_URL=...`` and serves.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

from arbframe.testing.fake_venue import FakeVenue, Fault

__all__ = ["DEFAULT_MIDS", "FakeBithumb"]

DEFAULT_MIDS = {"BTC": "135000000", "ETH": "4800000", "XRP": "3100", "USDT": "1395"}


class FakeBithumb(FakeVenue):
    name = "bithumb"

    def __init__(self, **kw: Any) -> None:
        super().__init__(mids=kw.pop("mids", DEFAULT_MIDS), levels=kw.pop("levels", 30), **kw)

    def price_step(self, symbol: str, price: Decimal) -> Decimal:
        from arbframe_exchange_bithumb.exchange import DEFAULT_PRICE_UNITS

        return next(Decimal(u) for lo, u in DEFAULT_PRICE_UNITS if price >= Decimal(lo))

    def routes(self, app: Any) -> None:
        from aiohttp import web

        async def orderbook(request: Any) -> Any:
            symbol, _, quote = request.match_info["market"].partition("_")
            try:
                count = int(request.query.get("count", "30"))
            except ValueError:
                count = 0
            if quote != "KRW" or symbol not in self.mids or count < 1:
                return web.json_response({"status": "5500", "message": "Invalid Parameter"})
            bids, asks = self.book(symbol, count)
            data = {"timestamp": str(int(time.time() * 1000)), "payment_currency": "KRW", "order_currency": symbol,
                    "bids": [{"price": f"{p:f}", "quantity": f"{q:f}"} for p, q in bids],
                    "asks": [{"price": f"{p:f}", "quantity": f"{q:f}"} for p, q in asks]}
            return web.json_response({"status": "0000", "data": data})

        app.router.add_get("/public/orderbook/{market}", orderbook)

    async def venue_fault(self, fault: Fault, request: Any) -> Any:
        from aiohttp import web

        code = str(fault.details.get("code", "5900"))
        return web.json_response({"status": code, "message": "Injected fault"})


def main() -> None:  # pragma: no cover - manual use
    async def serve() -> None:
        async with FakeBithumb() as fake:
            print(f"BASE_URL={fake.url}", flush=True)
            await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":  # pragma: no cover
    main()
