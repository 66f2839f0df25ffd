"""Kernel exceptions. Each carries a message meant for the person running the command."""

from __future__ import annotations

from pathlib import Path


class ArbframeError(Exception):
    """Base of every error the CLI turns into a one-line message and an exit status."""

    exit_status = 1


class ConfigError(ArbframeError):
    """Bad configuration: the message names the key path, the value (secrets masked) and what was expected."""

    exit_status = 2


#: drivers whose distribution is not named ``arbframe-<kind>-<name>``
KNOWN_DISTRIBUTIONS: dict[tuple[str, str], str] = {
    ("storage", "postgres"): "arbframe-storage-pg",
    ("fx", "exchange"): "arbframe-exchange-upbit",
}


def checkout_plugin_folder(distribution: str) -> str | None:
    """``plugins/<folder>`` holding ``distribution`` when arbframe runs from a source checkout (relative to the
    working directory when it is below it), else None: the plugins of a checkout are not on any package index."""
    root = Path(__file__).resolve().parents[2]
    folder = root / "plugins" / distribution.replace("-", "_")
    if not (folder / "pyproject.toml").is_file():
        return None
    try:
        return str(folder.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(folder)


class DriverNotInstalled(ConfigError):
    """The config selects a driver no installed distribution provides."""

    def __init__(self, group: str, name: str, installed: list[str], key_path: str = "") -> None:
        kind = group.split(".", 1)[-1]
        where = f"{key_path}: " if key_path else ""
        names = ", ".join(sorted(installed)) or "none"
        dist = KNOWN_DISTRIBUTIONS.get((kind, name), f"arbframe-{kind}-{name}")
        folder = checkout_plugin_folder(dist)
        if folder is not None:
            hint = f"install the plugin from this source checkout (pip install {folder})"
        else:
            hint = f"install the distribution {dist} (pip install {dist})"
        super().__init__(f"{where}no {kind} driver named {name!r} is installed (installed: {names}); {hint}")
        self.group, self.name, self.installed = group, name, installed


class DriverLoadError(ArbframeError):
    """A selected driver is installed but cannot be imported or built."""

    exit_status = 2


# ------------------------------------------------------------------------------------------ exchange errors
def _snake(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and not name[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


class ExchangeError(ArbframeError):
    """A venue call failed. Every exchange driver raises a subclass of this for every venue failure, so the
    execution layer reacts to *kinds* of failure the same way for every venue.

    Two class attributes say what a caller may do next:

    ``retry_safe``
        True when sending the very same request again can neither duplicate an effect at the venue nor make
        matters worse (the venue refused it before acting): any request, an order included, may be resent after
        ``retry_after``. False otherwise.
    ``transient``
        True when the condition may pass by itself, so a request *without side effects* (a read, a cancel by id)
        may be resent after a backoff even though ``retry_safe`` is False. An order placement never is: look it
        up by its client order id instead.

    ``kind`` is the bounded metric label (``arbframe_exchange_errors_total{kind}``): the class name in snake case,
    one of :data:`EXCHANGE_ERROR_KINDS`. A venue's own subclasses inherit the kind of the taxonomy class they
    derive from, so the label set stays bounded.
    """

    retry_safe: bool = False
    transient: bool = False
    kind: str = "exchange_error"

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__module__ == __name__:  # only the taxonomy names kinds; venue subclasses inherit theirs
            cls.kind = _snake(cls.__name__)

    def __init__(self, message: str = "", *, exchange: str = "", endpoint: str = "", status: int | None = None,
                 code: str | int | None = None, retry_after: float | None = None,
                 client_order_id: str | None = None) -> None:
        super().__init__(message)
        self.exchange = exchange
        self.endpoint = endpoint
        self.status = status
        self.code = code
        self.retry_after = retry_after
        self.client_order_id = client_order_id

    def __str__(self) -> str:  # KeyError would quote the message (UnknownOrder is also a KeyError)
        return str(self.args[0]) if self.args else ""


class InvalidRequest(ExchangeError, ValueError):
    """The venue refused the request as malformed (unknown market, bad parameter). Nothing happened at the venue;
    resending the same request fails the same way. ``retry_safe = False``, ``transient = False``."""


class OrderRejected(ExchangeError, ValueError):
    """The venue (or the driver, before sending) refused an order: below the minimum, off the price grid,
    duplicate client order id, market closed. No order exists. Resending the same order is refused again, so
    ``retry_safe = False``, ``transient = False``; fix the order instead. Also a ``ValueError``."""


class InsufficientFunds(OrderRejected):
    """A wallet does not hold what an order needs (coin to sell, or quote currency to pay). No order exists.
    ``retry_safe = False``, ``transient = False``. The paper wallet and the simulated venues raise it too."""


class UnknownOrder(ExchangeError, KeyError):
    """The venue does not know the order id (never placed, or forgotten after it closed). ``retry_safe = False``,
    ``transient = False``. Also a ``KeyError``."""


class OrderStatusUnknown(ExchangeError):
    """An order was sent, and whether the venue placed it is not known (the answer was lost and a lookup by
    ``client_order_id`` did not settle it). It was NOT re-sent: ``retry_safe = False``, ``transient = False``.
    Reconcile with ``fetch_order(symbol, client_order_id)`` before sending anything new."""


class RateLimited(ExchangeError):
    """The venue refused the request for exceeding a rate limit (HTTP 429) before acting on it.
    ``retry_after`` is the wait in seconds it asked for (None: not said; back off). ``retry_safe = True``,
    ``transient = True``: any request may be resent once the wait has passed."""

    retry_safe = True
    transient = True


class Banned(ExchangeError):
    """The venue blocked this IP or key (HTTP 418) for ``retry_after`` seconds. Every call before then raises at
    once without being sent; sending more only extends the ban. ``retry_safe = False``, ``transient = False``."""


class AuthenticationError(ExchangeError):
    """Bad or expired key, bad signature, missing permission, IP not allowed. Retrying cannot help:
    ``retry_safe = False``, ``transient = False``."""


class TransportError(ExchangeError):
    """No usable answer: connection refused or dropped, TLS failure. The request may or may not have reached the
    venue, so ``retry_safe = False``; ``transient = True``: reads and cancels may be resent after a backoff."""

    transient = True


class RequestTimeout(TransportError):
    """No answer within the time bound. As :class:`TransportError`: ``retry_safe = False``,
    ``transient = True``."""


class VenueUnavailable(ExchangeError):
    """The venue answered but cannot serve (HTTP 5xx, maintenance, overload). It may have acted before failing,
    so ``retry_safe = False``; ``transient = True``: reads and cancels may be resent after a backoff."""

    transient = True


class ProtocolError(ExchangeError):
    """The answer was not the documented shape (not JSON, missing fields, a number that is not one).
    ``retry_safe = False`` (the venue may have acted); ``transient = True`` for reads."""

    transient = True


#: every ``kind`` label value an exchange error can carry, in a fixed order (bounded metric label set)
EXCHANGE_ERROR_KINDS: tuple[str, ...] = tuple(
    cls.kind for cls in (ExchangeError, InvalidRequest, OrderRejected, InsufficientFunds, UnknownOrder,
                         OrderStatusUnknown, RateLimited, Banned, AuthenticationError, TransportError,
                         RequestTimeout, VenueUnavailable, ProtocolError)
)


def error_kind(exc: BaseException) -> str:
    """The bounded ``kind`` label of any exception: its taxonomy kind, else ``exchange_error``."""
    kind = getattr(exc, "kind", None) if isinstance(exc, ExchangeError) else None
    return kind if kind in EXCHANGE_ERROR_KINDS else "exchange_error"
