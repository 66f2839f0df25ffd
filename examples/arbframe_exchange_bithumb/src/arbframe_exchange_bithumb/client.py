"""Bithumb's public REST API: the order book, read with the standard library.

``GET {base_url}/public/orderbook/{SYMBOL}_KRW?count=N`` answers::

    {"status": "0000",
     "data": {"timestamp": "1732500000123", "payment_currency": "KRW", "order_currency": "BTC",
              "bids": [{"price": "135000000", "quantity": "0.5"}, ...],     # best (highest) first
              "asks": [{"price": "135010000", "quantity": "0.3"}, ...]}}    # best (lowest) first

Any other ``status`` is an API error (``{"status": "5500", "message": "Invalid Parameter"}``). Prices and
quantities are strings and are parsed to :class:`~decimal.Decimal` exactly.

The blocking ``urllib`` call runs in a worker thread (``asyncio.to_thread``), bounded by ``timeout_seconds``, so
the plugin needs nothing beyond the kernel. A production connector would keep one ``aiohttp`` session.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from arbframe import BookLevel, OrderBook, utcnow

__all__ = ["BithumbApiError", "BithumbError", "BithumbNetworkError", "PublicClient", "parse_orderbook"]

QUOTE = "KRW"
USER_AGENT = "arbframe-exchange-bithumb/0.1"


class BithumbError(Exception):
    """Anything that went wrong talking to Bithumb. ``kind`` is the bounded metrics label."""

    kind = "api"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class BithumbApiError(BithumbError):
    """Bithumb answered with a ``status`` other than ``0000``."""


class BithumbNetworkError(BithumbError):
    """No usable HTTP answer: connection refused, timeout, HTTP 5xx."""

    kind = "http"


class BithumbParseError(BithumbError):
    kind = "parse"


def _dec(value: Any, what: str) -> Decimal:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise BithumbParseError(f"bithumb: {what} is not a number: {value!r}") from None
    if not number.is_finite():
        raise BithumbParseError(f"bithumb: {what} is not finite: {value!r}")
    return number


def _levels(raw: Any, side: str, depth: int) -> tuple[BookLevel, ...]:
    if not isinstance(raw, list):
        raise BithumbParseError(f"bithumb: order book {side} is not a list")
    merged: dict[Decimal, Decimal] = {}
    for entry in raw:
        if not isinstance(entry, Mapping):
            raise BithumbParseError(f"bithumb: order book {side} entry is not an object: {entry!r}")
        price = _dec(entry.get("price"), f"{side} price")
        qty = _dec(entry.get("quantity"), f"{side} quantity")
        if price > 0 and qty > 0:
            merged[price] = merged.get(price, Decimal(0)) + qty
    prices = sorted(merged, reverse=(side == "bids"))[:depth]
    return tuple(BookLevel(p, merged[p]) for p in prices)


def parse_orderbook(payload: Mapping[str, Any], symbol: str, depth: int, *, exchange: str = "bithumb") -> OrderBook:
    """An :class:`arbframe.OrderBook` from the ``/public/orderbook`` answer (levels sorted and merged)."""
    data = payload.get("data")
    if not isinstance(data, Mapping):
        raise BithumbParseError("bithumb: order book answer has no 'data' object")
    stamp = data.get("timestamp")
    try:
        ts = datetime.fromtimestamp(int(stamp) / 1000, tz=timezone.utc) if stamp is not None else utcnow()
    except (TypeError, ValueError):
        raise BithumbParseError(f"bithumb: bad order book timestamp {stamp!r}") from None
    return OrderBook(
        exchange=exchange,
        symbol=symbol,
        bids=_levels(data.get("bids"), "bids", depth),
        asks=_levels(data.get("asks"), "asks", depth),
        ts=ts,
    )


#: (endpoint, status label, seconds) -> None; status is the HTTP status or ``error``
RequestObserver = Callable[[str, str, float], None]


class PublicClient:
    """GET requests against Bithumb's public API, bounded by ``timeout`` seconds each."""

    def __init__(self, base_url: str, *, timeout: float = 5.0, observer: RequestObserver | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.observer = observer

    async def get(self, endpoint: str, path: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return await asyncio.to_thread(self._get, endpoint, path, dict(params or {}))

    def _get(self, endpoint: str, path: str, params: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": USER_AGENT})
        started = time.perf_counter()
        status = "error"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status = str(response.status)
                body = response.read()
        except urllib.error.HTTPError as exc:
            status = str(exc.code)
            body = exc.read() or b""
            if exc.code >= 500 or exc.code == 429:
                raise BithumbNetworkError(f"bithumb: HTTP {exc.code} from {endpoint}") from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise BithumbNetworkError(f"bithumb: {endpoint} unreachable: {reason}") from None
        finally:
            if self.observer is not None:
                self.observer(endpoint, status, time.perf_counter() - started)
        try:
            payload = json.loads(body)
        except ValueError:
            raise BithumbParseError(f"bithumb: {endpoint} answered with something that is not JSON") from None
        if not isinstance(payload, dict):
            raise BithumbParseError(f"bithumb: {endpoint} answered with a JSON {type(payload).__name__}")
        code = str(payload.get("status", ""))
        if code != "0000":
            message = payload.get("message") or "unknown error"
            raise BithumbApiError(f"bithumb: {endpoint} failed: {code} {message}", code=code)
        return payload

    async def orderbook(self, symbol: str, depth: int, *, exchange: str = "bithumb") -> OrderBook:
        payload = await self.get("orderbook", f"/public/orderbook/{symbol}_{QUOTE}", {"count": max(1, depth)})
        return parse_orderbook(payload, symbol, depth, exchange=exchange)
