"""The two forex quotation formats this plugin reads, each parsed from its real wire format.

``dunamu``: Dunamu's public forex quotation, ``GET /v1/forex/recent?codes=FRX.KRWUSD`` on
``quotation-api-cdn.dunamu.com``. The answer is a JSON list with one object per code; the fields used are
``code`` (``FRX.KRWUSD``), ``basePrice`` (KRW per ``currencyUnit`` US dollars: the bank's base rate),
``currencyUnit`` (1 for USD) and ``timestamp`` (epoch milliseconds of the provider's notice). The quotes are a
Korean bank's rate notices, so outside their publishing hours (nights, weekends, holidays) the timestamp stops.

``er_api``: ExchangeRate-API's open endpoint, ``GET /v6/latest/USD`` on ``open.er-api.com`` (no key). The answer
is one JSON object: ``result`` (``success`` or ``error`` with ``error-type``), ``base_code`` (``USD``),
``time_last_update_unix`` (epoch seconds) and ``rates`` (currency -> units per 1 USD). It is refreshed about once
a day, so it is a fallback, not a primary: its quote's age says so in every spread record.

Numbers are parsed straight into :class:`~decimal.Decimal` (never through float), so the rate is exactly what the
provider sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["PROVIDERS", "ForexProtocolError", "ForexUnavailable", "ProviderSpec", "Quote", "decode",
           "parse_dunamu", "parse_er_api"]


class ForexUnavailable(Exception):
    """No provider answered with a usable USD/KRW quote (the message names each provider's failure)."""


class ForexProtocolError(ValueError):
    """A provider answered, but not in its documented format (or with a nonsensical rate)."""


@dataclass(frozen=True, slots=True)
class Quote:
    """One provider's USD/KRW quote: ``rate`` KRW per US dollar as of the provider's own ``ts``."""

    provider: str
    rate: Decimal
    ts: datetime

    def age_seconds(self, now: datetime) -> float:
        return max(0.0, (now - self.ts).total_seconds())


def decode(text: str) -> Any:
    """JSON with every fractional number as an exact Decimal."""
    try:
        return json.loads(text, parse_float=Decimal)
    except ValueError as exc:
        raise ForexProtocolError(f"not JSON: {text[:60]!r}") from exc


def _positive(value: Any, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, str)):
        raise ForexProtocolError(f"{what}: expected a number, got {value!r}")
    try:
        number = Decimal(value)
    except (InvalidOperation, ValueError) as exc:
        raise ForexProtocolError(f"{what}: expected a number, got {value!r}") from exc
    if not number.is_finite() or number <= 0:
        raise ForexProtocolError(f"{what}: expected a positive number, got {value!r}")
    return number


def _epoch(value: Any, what: str, *, scale: int) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ForexProtocolError(f"{what}: expected epoch {'milli' if scale == 1000 else ''}seconds, got {value!r}")
    return datetime.fromtimestamp(value / scale, tz=timezone.utc)


def parse_dunamu(payload: Any, code: str = "FRX.KRWUSD") -> tuple[Decimal, datetime]:
    """``(rate, ts)`` from a ``/v1/forex/recent`` answer."""
    if not isinstance(payload, list) or not payload:
        raise ForexProtocolError(f"expected a non-empty JSON list, got {type(payload).__name__}")
    item = next((row for row in payload if isinstance(row, dict) and row.get("code") == code), None)
    if item is None:
        raise ForexProtocolError(f"no {code} in the answer")
    unit = _positive(item.get("currencyUnit", 1), "currencyUnit")
    rate = _positive(item.get("basePrice"), "basePrice") / unit
    return rate, _epoch(item.get("timestamp"), "timestamp", scale=1000)


def parse_er_api(payload: Any, base: str = "USD", quote: str = "KRW") -> tuple[Decimal, datetime]:
    """``(rate, ts)`` from a ``/v6/latest/USD`` answer."""
    if not isinstance(payload, dict):
        raise ForexProtocolError(f"expected a JSON object, got {type(payload).__name__}")
    if payload.get("result") != "success":
        raise ForexProtocolError(f"result={payload.get('result')!r} error-type={payload.get('error-type')!r}")
    if payload.get("base_code") != base:
        raise ForexProtocolError(f"base_code={payload.get('base_code')!r}, expected {base}")
    rates = payload.get("rates")
    if not isinstance(rates, dict):
        raise ForexProtocolError("no rates object")
    rate = _positive(rates.get(quote), f"rates.{quote}")
    return rate, _epoch(payload.get("time_last_update_unix"), "time_last_update_unix", scale=1)


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """A provider format: its default URL, how long a fetched answer is reused, and its parser."""

    name: str
    url: str
    cache_seconds: float
    parse: Callable[[Any], tuple[Decimal, datetime]]


PROVIDERS: dict[str, ProviderSpec] = {
    "dunamu": ProviderSpec("dunamu", "https://quotation-api-cdn.dunamu.com/v1/forex/recent?codes=FRX.KRWUSD",
                           10.0, parse_dunamu),
    # the open endpoint updates daily and asks clients not to poll it often
    "er_api": ProviderSpec("er_api", "https://open.er-api.com/v6/latest/USD", 3600.0, parse_er_api),
}
