"""Building blocks an exchange connector composes (none is a base class it must inherit).

- :mod:`~arbframe.venues.ratelimit` — :class:`RateLimits` declared as data (quotas, per-endpoint costs, header
  feedback) and the :class:`RateLimiter` that enforces them, with ``Retry-After`` blocking and bans.
- :mod:`~arbframe.venues.retry` — :class:`RetryPolicy`: exponential backoff with seeded jitter that honours the
  error taxonomy's ``retry_safe`` / ``transient``.
- :mod:`~arbframe.venues.http` — :class:`VenueHttp`: one REST client doing limiter, signing hook, transport
  (aiohttp when installed, else the standard library), metrics, status -> error kind, and retries.
- :mod:`~arbframe.venues.stream` — :class:`BookStream`: a WebSocket supervisor (connect, subscribe, keepalive,
  an idle watchdog that can never fire before a keepalive, rollover, reconnect with backoff, ``latest()``).
- :mod:`~arbframe.venues.metrics` — :class:`VenueMetrics`: the kernel's exchange metric families bound to one
  venue name.

Plugins import these names from ``arbframe`` itself (``from arbframe import RateLimiter``), never from here.
aiohttp is imported only when a request or a stream first needs it.
"""
