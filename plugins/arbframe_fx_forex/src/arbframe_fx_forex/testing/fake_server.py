"""A fake forex quotation server on 127.0.0.1 speaking both providers' real wire formats.

``GET /v1/forex/recent?codes=FRX.KRWUSD`` answers like Dunamu's quotation (a JSON list of one full quote object)
and ``GET /v6/latest/USD`` like ExchangeRate-API's open endpoint. Each route has a ``mode``:

``fresh``      the quote with ``now`` as its timestamp
``stale``      the quote with a timestamp ``stale_seconds`` in the past
``malformed``  an answer in the wrong shape (an HTML error page for Dunamu, ``result: error`` for er-api)
``down``       HTTP 503

Usage::

    fake = FakeForex()
    await fake.start()
    fake.dunamu_url, fake.er_api_url
    fake.modes["dunamu"] = "down"
    await fake.close()
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

__all__ = ["FakeForex"]


class FakeForex:
    def __init__(self, *, dunamu_rate: Decimal = Decimal("1382.50"), er_api_rate: Decimal = Decimal("1379.845"),
                 stale_seconds: float = 7200.0) -> None:
        self.rates = {"dunamu": dunamu_rate, "er_api": er_api_rate}
        self.modes = {"dunamu": "fresh", "er_api": "fresh"}
        self.stale_seconds = stale_seconds
        self.hits = {"dunamu": 0, "er_api": 0}
        self.now = time.time  # epoch seconds; tests may replace it
        self._runner: Any = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dunamu_url(self) -> str:
        return f"{self.base_url}/v1/forex/recent?codes=FRX.KRWUSD"

    @property
    def er_api_url(self) -> str:
        return f"{self.base_url}/v6/latest/USD"

    def provider_config(self) -> list[dict[str, Any]]:
        """``fx.forex.providers`` pointing at this server (no answer caching, so every fetch is seen)."""
        return [{"name": "dunamu", "url": self.dunamu_url, "cache_seconds": 0},
                {"name": "er_api", "url": self.er_api_url, "cache_seconds": 0}]

    def _quote_time(self, provider: str) -> float:
        return self.now() - (self.stale_seconds if self.modes[provider] == "stale" else 0.0)

    def dunamu_body(self) -> str:
        ts = self._quote_time("dunamu")
        rate = self.rates["dunamu"]
        kst = time.gmtime(ts + 9 * 3600)
        quote = {
            "code": "FRX.KRWUSD", "currencyCode": "USD", "currencyName": "달러", "country": "미국",
            "name": "미국 (KRW/USD)", "date": time.strftime("%Y-%m-%d", kst), "time": time.strftime("%H:%M:%S", kst),
            "recurrenceCount": 412, "basePrice": rate, "openingPrice": rate + 2, "highPrice": rate + 4,
            "lowPrice": rate - 3, "change": "FALL", "changePrice": Decimal("1.5"), "cashBuyingPrice": rate + 24,
            "cashSellingPrice": rate - 24, "ttBuyingPrice": rate - 13, "ttSellingPrice": rate + 13,
            "tcBuyingPrice": None, "fcSellingPrice": None, "exchangeCommission": Decimal("3.6715"),
            "usDollarRate": Decimal("1.0"), "high52wPrice": Decimal("1487.6"), "high52wDate": "2024-12-30",
            "low52wPrice": Decimal("1305.2"), "low52wDate": "2024-07-01", "currencyUnit": 1, "provider": "하나은행",
            "timestamp": int(ts * 1000), "id": 79,
            "modifiedAt": time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime(ts)),
            "createdAt": "2016-10-21T06:13:34.000+0000", "signedChangePrice": Decimal("-1.5"),
            "signedChangeRate": Decimal("-0.0010838"), "changeRate": Decimal("0.0010838"),
        }
        return _dumps([quote])

    def er_api_body(self) -> str:
        if self.modes["er_api"] == "malformed":
            return json.dumps({"result": "error", "error-type": "unsupported-code"})
        ts = int(self._quote_time("er_api"))
        return _dumps({
            "result": "success", "provider": "https://www.exchangerate-api.com",
            "documentation": "https://www.exchangerate-api.com/docs/free",
            "terms_of_use": "https://www.exchangerate-api.com/terms",
            "time_last_update_unix": ts, "time_last_update_utc": time.strftime("%a, %d %b %Y %H:%M:%S +0000",
                                                                               time.gmtime(ts)),
            "time_next_update_unix": ts + 86400, "time_next_update_utc": "", "time_eol_unix": 0,
            "base_code": "USD",
            "rates": {"USD": 1, "EUR": Decimal("0.9214"), "JPY": Decimal("151.42"), "KRW": self.rates["er_api"]},
        })

    async def start(self) -> None:
        from aiohttp import web

        async def dunamu(request: web.Request) -> web.Response:
            self.hits["dunamu"] += 1
            mode = self.modes["dunamu"]
            if mode == "down":
                return web.Response(status=503, text="Service Unavailable")
            if mode == "malformed":
                return web.Response(text="<html><body>maintenance</body></html>", content_type="text/html")
            if request.query.get("codes") != "FRX.KRWUSD":
                return web.Response(text="[]", content_type="application/json")
            return web.Response(text=self.dunamu_body(), content_type="application/json")

        async def er_api(request: web.Request) -> web.Response:
            self.hits["er_api"] += 1
            if self.modes["er_api"] == "down":
                return web.Response(status=503, text="Service Unavailable")
            return web.Response(text=self.er_api_body(), content_type="application/json")

        app = web.Application()
        app.router.add_get("/v1/forex/recent", dunamu)
        app.router.add_get("/v6/latest/USD", er_api)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def _dumps(value: Any) -> str:
    """JSON with Decimals written as plain numbers, as the providers send them (a float's repr is the shortest
    text that round-trips, so the digits of these short decimals come back exactly)."""
    return json.dumps(value, ensure_ascii=False, default=lambda v: float(v) if isinstance(v, Decimal) else str(v))
