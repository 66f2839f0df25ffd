"""Where an exchange connector's calls go: the same routing rules for every exchange plugin.

=====================  ==========================================  ==========================================
situation              market data                                 balances and orders
=====================  ==========================================  ==========================================
``context.mock``       the kernel's ``SimulatedExchange``          that simulated exchange's account
mode != live, no keys  the venue (REST / WebSocket)                a ``SimulatedAccount`` over the venue's books
mode == live + keys    the venue                                   the venue (signed requests)
=====================  ==========================================  ==========================================

A connector builds one :class:`VenueRouting` and asks it, so that rule, the log line that says which applies,
and the simulated components are written once, in the kernel.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from arbframe.core.mappings import section as config_section
from arbframe.core.secrets import mask_secret

if TYPE_CHECKING:
    from arbframe.core.models import MarketRules, OrderBook
    from arbframe.kernel.interfaces import Exchange, PluginContext
    from arbframe.market.simulation import SimulatedAccount, SimulatedExchange


def configured_symbols(section: Mapping[str, Any], context: PluginContext | None) -> list[str]:
    """The venue section's ``symbols``, else the ``arbitrage.symbols`` the engine trades (upper case)."""
    symbols = list(section.get("symbols") or [])
    if not symbols and context is not None:
        symbols = list(((context.config or {}).get("arbitrage") or {}).get("symbols") or [])
    return [str(s).upper() for s in symbols]


def paper_balances(name: str, context: PluginContext | None, section: Mapping[str, Any]) -> dict[str, Any] | None:
    """The simulated account's starting wallet: ``simulated_balances``, else ``paper.balances.<name>``."""
    if section.get("simulated_balances") is not None:
        return dict(section["simulated_balances"])
    if context is None:
        return None
    balances = ((context.config or {}).get("paper") or {}).get("balances") or {}
    return dict(balances[name]) if balances.get(name) else None


class VenueRouting:
    """Routing of one venue's calls, and its simulated components, built lazily."""

    def __init__(
        self,
        name: str,
        *,
        context: PluginContext | None,
        quote_currency: str,
        fee_rate: Decimal,
        balances: Mapping[str, Any],
        api_key: str | None,
        api_secret: str | None,
        base_url: str,
        symbols: list[str],
        last_book: Callable[[str], OrderBook | None],
        rules: Callable[[str], MarketRules],
        log: logging.Logger,
    ) -> None:
        self.name = name
        self.context = context
        self.quote_currency = quote_currency
        self.fee_rate = fee_rate
        self.balances = dict(balances)
        self.has_credentials = bool(api_key and api_secret)
        self._api_key = api_key
        self.base_url = base_url
        self.symbols = symbols
        self._last_book = last_book
        self._rules = rules
        self.log = log
        self.mode = context.mode if context is not None else "paper"
        self.mock = bool(context.mock) if context is not None else False
        #: True only when balances and orders really go to the venue
        self.live_private = self.mode == "live" and self.has_credentials and not self.mock
        self._sim_exchange: SimulatedExchange | None = None
        self._sim_account: SimulatedAccount | None = None

    def announce(self) -> None:
        """Say once, loudly where it matters, where data and orders come from."""
        name, venue = self.name, self.name.capitalize()
        if self.mock:
            self.log.info("%s: mock mode - market data from the simulated market (SimulatedExchange), balances "
                          "and orders from its simulated account", name)
        elif not self.has_credentials:
            self.log.warning("%s: no API credentials - market data from %s (%s), balances and orders from a "
                             "simulated account (SimulatedAccount)", name, venue, self.base_url)
        elif not self.live_private:
            self.log.info("%s: mode=%s - market data from %s, balances and orders from a simulated account "
                          "(orders reach %s only in live mode)", name, self.mode, venue, venue)
        else:
            self.log.warning("%s: LIVE - private calls signed with key %s go to %s",
                             name, mask_secret(self._api_key), self.base_url)

    def describe(self, class_name: str) -> str:
        if self.mock:
            return f"{class_name}(mock: SimulatedExchange)"
        private = self.name if self.live_private else "SimulatedAccount"
        return f"{class_name}(market data: {self.base_url}, private: {private})"

    def simulated_exchange(self) -> SimulatedExchange:
        """The kernel's simulated venue (mock mode), on the context's simulated market (made if missing)."""
        if self._sim_exchange is None:
            from arbframe.market.simulation import SimulatedExchange, SimulatedMarket

            market = getattr(self.context, "market", None)
            if market is None:
                market = SimulatedMarket(self.symbols or ["BTC", "ETH"])
                if self.context is not None:
                    self.context.market = market
            self._sim_exchange = SimulatedExchange(
                self.name, market, quote_currency=self.quote_currency, fee_rate=self.fee_rate,
                balances=self.balances,
            )
        return self._sim_exchange

    def simulated_account(self) -> SimulatedAccount:
        """A paper wallet filled against the books this connector last fetched from the venue."""
        if self._sim_account is None:
            from arbframe.market.simulation import SimulatedAccount

            def book_source(symbol: str) -> OrderBook:
                book = self._last_book(symbol)
                if book is None:
                    raise ValueError(f"{self.name}: no order book for {symbol} fetched yet")
                return book

            self._sim_account = SimulatedAccount(
                self.name, self.quote_currency, self.balances, self.fee_rate, book_source, rules=self._rules,
            )
        return self._sim_account

    def private_backend(self) -> SimulatedExchange | SimulatedAccount | None:
        """The simulated backend for balances and orders, or None when they go to the venue."""
        if self.mock:
            return self.simulated_exchange()
        if not self.live_private:
            return self.simulated_account()
        return None


def simulated_venue(name: str, context: PluginContext, *, role: str) -> Exchange:
    """Mock mode without the venue's plugin: the kernel's simulated market serves ``name`` on its own; ``role``
    (``domestic``: KRW, ``foreign``: USDT) gives the quote currency when the market does not know the venue.

    Quotes, rules and the paper account come from the context's simulated market (made from the config when
    missing); the fee is the venue section's ``fee_rate`` (0.1 % when absent); balances as :func:`paper_balances`.
    """
    from arbframe.market.simulation import SimulatedVenue, market_from_config

    config = context.config or {}
    section = config_section(config, name)
    if context.market is None:
        context.market = market_from_config(config)
    market = context.market
    quote = market.venues.get(name) or ("KRW" if role == "domestic" else "USDT")
    return SimulatedVenue(
        name, market, quote_currency=quote, fee_rate=Decimal(str(section.get("fee_rate", "0.001"))),
        balances=paper_balances(name, context, section),
    )
