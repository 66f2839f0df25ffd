"""The ``forex`` FX source: USD/KRW from forex quotation providers tried in order, each answer cached.

Config (section ``fx.forex``; every key optional)::

    fx:
      source: forex
      forex:
        timeout_seconds: 3          # bound on one HTTP request
        stale_after_seconds: 900    # a quote older than this (by the provider's own timestamp): try the next one
        providers:                  # tried in this order
          - {name: dunamu, url: ..., cache_seconds: 10}
          - {name: er_api, url: ..., cache_seconds: 3600}

The returned :class:`~arbframe.FxRate` carries the provider's own timestamp as ``ts`` and ``forex:<provider>`` as
``source``, so the kernel's age check (``fx.max_age_seconds``), the health report and every spread record see how
old the quote really is and where it came from. When every provider's quote is stale, the freshest is returned
as it is (the kernel blocks entries on it); when none answers, ``fetch()`` raises :class:`ForexUnavailable`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, ClassVar

from arbframe import FxRate, FxSource, PluginContext, new_id, utcnow

from .providers import PROVIDERS, ForexProtocolError, ForexUnavailable, ProviderSpec, Quote, decode

__all__ = ["ForexFxSource"]

log = logging.getLogger("arbframe.fx.forex")


class _Provider:
    """One configured provider: its URL and the last good answer, reused for ``cache_seconds``."""

    def __init__(self, spec: ProviderSpec, url: str, cache_seconds: float, monotonic: Callable[[], float]) -> None:
        self.spec = spec
        self.url = url
        self.cache_seconds = cache_seconds
        self._monotonic = monotonic
        self._lock = asyncio.Lock()
        self.last: Quote | None = None
        self._last_at = float("-inf")
        self.requests = 0

    @property
    def name(self) -> str:
        return self.spec.name

    async def quote(self, get: Callable[[str], Any]) -> Quote:
        async with self._lock:  # concurrent fetches share one request
            if self.last is not None and self._monotonic() - self._last_at < self.cache_seconds:
                return self.last
            self.requests += 1
            rate, ts = self.spec.parse(decode(await get(self.url)))
            self.last = Quote(self.name, rate, ts)
            self._last_at = self._monotonic()
            return self.last


class ForexFxSource(FxSource):
    name: ClassVar[str] = "forex"
    api_version: ClassVar[int] = 1

    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        provider = {
            "type": "object",
            "properties": {
                "name": {"enum": sorted(PROVIDERS), "description": "the provider's wire format"},
                "url": {"type": "string", "minLength": 1, "description": "full URL of the quote"},
                "cache_seconds": {"type": "number", "minimum": 0,
                                  "description": "reuse the provider's last answer this long"},
            },
            "required": ["name"],
            "additionalProperties": False,
        }
        return {  # the section ``fx.forex`` (the kernel's rule: an FX source's section is ``fx.<name>``)
            "type": "object",
            "properties": {
                "timeout_seconds": {"type": "number", "exclusiveMinimum": 0},
                "stale_after_seconds": {"type": "number", "exclusiveMinimum": 0,
                                        "description": "an older quote makes the source try the next"},
                "providers": {"type": "array", "items": provider, "minItems": 1},
            },
            "additionalProperties": False,
        }

    def __init__(
        self,
        section: Mapping[str, Any] | None = None,
        context: PluginContext | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        forex = dict(section or {})  # its own keys (``fx.forex``), beside the kernel's shared ``fx`` keys
        self.context = context
        self.timeout_seconds = float(forex.get("timeout_seconds", 3.0))
        self.stale_after_seconds = float(forex.get("stale_after_seconds", 900.0))
        self._clock = clock
        entries = forex.get("providers") or [{"name": name} for name in PROVIDERS]
        self.providers: list[_Provider] = []
        for entry in entries:
            spec = PROVIDERS[str(entry["name"])]
            self.providers.append(_Provider(spec, str(entry.get("url") or spec.url),
                                            float(entry.get("cache_seconds", spec.cache_seconds)), monotonic))
        self.last_errors: dict[str, str] = {}
        self._session: Any = None

    async def _get(self, url: str) -> str:
        import aiohttp

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_seconds),
                                                  headers={"Accept": "application/json"})
        async with self._session.get(url) as response:
            text = await response.text()
            if response.status != 200:
                raise ForexProtocolError(f"HTTP {response.status}: {text[:60]!r}")
            return text

    async def fetch(self) -> FxRate:
        stale: list[Quote] = []
        for provider in self.providers:
            try:
                quote = await provider.quote(self._get)
            except Exception as exc:
                self.last_errors[provider.name] = f"{type(exc).__name__}: {exc}"
                log.debug("forex provider %s failed: %r", provider.name, exc)
                continue
            self.last_errors.pop(provider.name, None)
            if quote.age_seconds(self._clock()) <= self.stale_after_seconds:
                return self._rate(quote)
            stale.append(quote)
        if stale:
            return self._rate(max(stale, key=lambda q: q.ts))
        detail = "; ".join(f"{name}: {error}" for name, error in self.last_errors.items())
        raise ForexUnavailable(f"no forex provider answered ({detail})")

    @staticmethod
    def _rate(quote: Quote) -> FxRate:
        return FxRate(id=new_id(), ts=quote.ts, rate=quote.rate, source=f"forex:{quote.provider}")

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
