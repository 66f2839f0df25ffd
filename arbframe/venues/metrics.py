"""The kernel's exchange metric families bound to one venue, so a connector reports with one-line calls.

A :class:`VenueMetrics` without a registry does nothing (a driver built by hand in a test); :meth:`bind` attaches
it to the kernel's registry (call it from the ``arbframe_register_metrics`` hook). Error kinds are always the
bounded taxonomy labels (:data:`arbframe.EXCHANGE_ERROR_KINDS`).
"""

from __future__ import annotations

from typing import Any

from arbframe.kernel.instruments import ExchangeMetrics

__all__ = ["VenueMetrics"]


class VenueMetrics:
    def __init__(self, exchange: str, registry: Any = None, *, groups: tuple[str, ...] = ()) -> None:
        """``groups``: the venue's rate-limit groups, whose wait counters start at 0 with the error kinds."""
        self.exchange = exchange
        self.groups = groups
        self.families: ExchangeMetrics | None = None
        self._children: dict[tuple[str, ...], Any] = {}
        self._requests: dict[tuple[str, str], tuple[Any, Any]] = {}  # (endpoint, status) -> (counter, histogram)
        if registry is not None:
            self.bind(registry)

    def bind(self, registry: Any) -> VenueMetrics:
        """Report into ``registry`` (the kernel's); binding twice to the same registry is harmless."""
        families = ExchangeMetrics.get(registry)
        if families is not self.families:
            self.families, self._children, self._requests = families, {}, {}
            families.precreate(self.exchange, groups=self.groups)  # at 0, so alerts see the first event
        return self

    def _child(self, family: str, *labels: str) -> Any:
        key = (family, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = getattr(self.families, family).labels(self.exchange, *labels)
        return child

    def request(self, endpoint: str, status: str, seconds: float) -> None:
        """One REST round trip: ``status`` is the HTTP status, ``timeout`` or ``error``."""
        if self.families is not None:
            pair = self._requests.get((endpoint, status))
            if pair is None:
                pair = self._requests[(endpoint, status)] = (self._child("requests", endpoint, status),
                                                              self._child("request_seconds", endpoint))
            pair[0].inc()
            pair[1].observe(seconds)

    def error(self, error: BaseException | str) -> str:
        """Count one failure under its bounded kind; returns the label."""
        if self.families is None:
            return ""
        return self.families.count_error(self.exchange, error)

    def wait(self, group: str, seconds: float) -> None:
        """A rate-limit wait (``group`` is the quota, or ``retry_after``)."""
        if self.families is not None:
            self._child("rate_limit_waits", group).inc()
            self._child("rate_limit_wait_seconds", group).inc(seconds)

    def reconnect(self) -> None:
        if self.families is not None:
            self._child("ws_reconnects").inc()

    def message_age(self, seconds: float) -> None:
        if self.families is not None:
            self._child("ws_message_age_seconds").set(max(0.0, seconds))

    def clock_offset(self, seconds: float) -> None:
        if self.families is not None:
            self._child("clock_offset_seconds").set(seconds)

    def rest_fallback(self, active: bool, seconds: float = 0.0) -> None:
        """The stream's REST fallback started (``active``) or ended after ``seconds`` of polling."""
        if self.families is not None:
            self._child("ws_rest_fallback").set(1 if active else 0)
            if seconds > 0:
                self._child("ws_rest_fallback_seconds").inc(seconds)

    def rest_fallback_books(self, count: int) -> None:
        """``count`` books the REST fallback delivered."""
        if self.families is not None and count:
            self._child("ws_rest_fallback_books").inc(count)
