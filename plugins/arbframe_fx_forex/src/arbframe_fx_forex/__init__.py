"""arbframe-fx-forex: a real USD/KRW forex quote for arbframe (entry point ``arbframe.fx: forex``).

Providers, tried in order: Dunamu's public forex quotation (the bank rate Upbit shows) and ExchangeRate-API's
open endpoint as the fallback. aiohttp is imported only when the first quote is fetched."""

from __future__ import annotations

__version__ = "0.1.0"
ARBFRAME_API_VERSION = 1

from .providers import PROVIDERS, ForexUnavailable, Quote, parse_dunamu, parse_er_api  # noqa: E402
from .source import ForexFxSource  # noqa: E402

__all__ = [
    "ARBFRAME_API_VERSION",
    "PROVIDERS",
    "ForexFxSource",
    "ForexUnavailable",
    "Quote",
    "__version__",
    "parse_dunamu",
    "parse_er_api",
]
