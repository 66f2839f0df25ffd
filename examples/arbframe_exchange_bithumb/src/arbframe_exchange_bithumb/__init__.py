"""Example third-party arbframe exchange plugin: Bithumb's KRW markets.

The driver is :class:`arbframe_exchange_bithumb.exchange.BithumbExchange` (entry point ``arbframe.exchange:
bithumb``). It is written against arbframe's public API only: names imported from ``arbframe`` itself, and
``arbframe.testing`` in its tests.
"""

#: The arbframe plugin API this distribution is written for; a kernel with another API version refuses to load
#: it with a clear message instead of failing later.
ARBFRAME_API_VERSION = 1

__version__ = "0.1.0"
