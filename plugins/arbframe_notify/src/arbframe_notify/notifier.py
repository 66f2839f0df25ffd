"""The sending side: a bounded queue, one worker thread, batches, a rate limit, and secrets kept out of every text.

The trading loop only calls :meth:`Notifier.submit`, which never blocks: an event goes into a bounded queue, or
is counted as dropped when the queue is full. One daemon thread takes events off the queue, waits
``batch_seconds`` for more (and at least ``min_interval_seconds`` since the last message), and sends everything
it holds as **one** message through apprise. A storm of a thousand errors is one message that counts them.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from arbframe import mask_secret_url

log = logging.getLogger("arbframe.notify")

#: apprise's notification types, mildest first
SEVERITIES = ("info", "success", "warning", "failure")
KINDS = ("position_opened", "position_closed", "error", "storage_fallback", "daily_summary")

Sender = Callable[[str, str, str], bool]


@dataclass(frozen=True)
class NotifyEvent:
    """One thing worth telling a person. ``severity`` is an apprise notification type."""

    kind: str
    title: str
    body: str = ""
    severity: str = "info"


def url_secrets(url: str) -> list[str]:
    """Every part of a notification URL that may be a secret: user, password, host (a bot token for ``tgram://``),
    path segments and query values. Parts shorter than 4 characters are left alone (ports, ``/``)."""
    _, sep, rest = url.partition("://")
    if not sep:
        return [url] if url else []
    parts = [p for p in re.split(r"[/:@?&=#,+]", rest) if len(p) >= 4]
    return sorted(set(parts), key=len, reverse=True)  # longest first: a token containing another is cut whole


class Redactor(logging.Filter):
    """Replaces the secrets of the configured URLs in log records (apprise logs request URLs at debug level)."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self.secrets = list(secrets)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            clean = self.scrub(message)
            if clean != message:
                record.msg, record.args = clean, None
        return True


class _Metrics:
    """``arbframe_notify_*`` in the kernel's registry (docs/METRICS.md), counters at 0 from the start."""

    def __init__(self, registry: Any, depth: Callable[[], int]) -> None:
        from prometheus_client import Counter, Gauge

        self.messages = Counter("arbframe_notify_messages", "Notification messages by outcome", ["status"],
                                registry=registry)
        self.events = Counter("arbframe_notify_events", "Events queued for notification", ["kind"], registry=registry)
        self.dropped = Counter("arbframe_notify_events_dropped", "Events dropped because the queue was full",
                               registry=registry)
        self.queue_depth = Gauge("arbframe_notify_queue_depth", "Events waiting to be sent", registry=registry)
        self.queue_depth.set_function(depth)
        for status in ("sent", "failed"):
            self.messages.labels(status)
        for kind in KINDS:
            self.events.labels(kind)


_WAKE = object()
#: loggers that see notification URLs: apprise's own, and urllib3's request lines under apprise's HTTP plugins
SCRUBBED_LOGGERS = ("apprise", "urllib3.connectionpool", "arbframe.notify")


class Notifier:
    """Batching, rate-limited sender on its own thread (see the module docstring)."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        min_interval_seconds: float = 60.0,
        batch_seconds: float = 2.0,
        max_queue: int = 1000,
        max_lines: int = 20,
        title_prefix: str = "arbframe",
        registry: Any = None,
        send: Sender | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.urls = list(urls)
        self.shown_urls = [mask_secret_url(u) for u in self.urls]
        self.redactor = Redactor([s for u in self.urls for s in url_secrets(u)])
        self.min_interval = float(min_interval_seconds)
        self.batch_seconds = float(batch_seconds)
        self.max_lines = int(max_lines)
        self.title_prefix = title_prefix
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=int(max_queue))
        self._send = send or self._send_apprise
        self._apprise: Any = None
        self._clock = clock
        self._last_sent = float("-inf")
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._dropped_unreported = 0
        self._lock = threading.Lock()
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self.last_error = ""
        self.metrics = _Metrics(registry, self._queue.qsize) if registry is not None else None
        self.invalid_urls: list[str] = []

    # ------------------------------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Validate the URLs with apprise and start the worker thread."""
        if self._thread is not None:
            return
        for name in SCRUBBED_LOGGERS:
            logging.getLogger(name).addFilter(self.redactor)
        if self._send == self._send_apprise:
            self._apprise = self._build_apprise()
        self._thread = threading.Thread(target=self._run, name="arbframe-notify", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 5.0) -> bool:
        """Send what is queued as one last message (no rate limit) and stop; at most ``timeout`` seconds.
        Returns False when the worker was still sending at the deadline (it is a daemon thread: exit goes on)."""
        self._stopping.set()
        try:
            self._queue.put_nowait(_WAKE)
        except queue.Full:
            pass  # the worker is awake anyway: it has a full queue to send
        done = True
        if self._thread is not None:
            self._thread.join(timeout)
            done = not self._thread.is_alive()
            if not done:
                log.warning("notify: the last message was still being sent after %.0fs; not waiting", timeout)
        for name in SCRUBBED_LOGGERS:
            logging.getLogger(name).removeFilter(self.redactor)
        return done

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    # ---------------------------------------------------------------------------------------------- submit
    def submit(self, event: NotifyEvent) -> bool:
        """Queue ``event`` for the next message; never blocks. False (and counted) when the queue is full."""
        if self._stopping.is_set():
            return False
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            with self._lock:
                self.dropped += 1
                self._dropped_unreported += 1
            if self.metrics is not None:
                self.metrics.dropped.inc()
            return False
        if self.metrics is not None:
            self.metrics.events.labels(event.kind).inc()
        return True

    # ---------------------------------------------------------------------------------------------- worker
    def _take(self, timeout: float | None) -> Any:
        try:
            return self._queue.get(timeout=timeout) if timeout is None or timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            return None

    def _run(self) -> None:
        pending: list[NotifyEvent] = []
        while True:
            if not pending:
                if self._stopping.is_set() and self._queue.empty():
                    return
                item = self._take(None)
                if isinstance(item, NotifyEvent):
                    pending.append(item)
                continue
            first_at = self._clock()
            deadline = max(first_at + self.batch_seconds, self._last_sent + self.min_interval)
            while not self._stopping.is_set():
                remaining = deadline - self._clock()
                if remaining <= 0:
                    break
                item = self._take(remaining)
                if isinstance(item, NotifyEvent):
                    pending.append(item)
            while (item := self._take(0)) is not None:  # everything that is there now goes into this message
                if isinstance(item, NotifyEvent):
                    pending.append(item)
            self._deliver(pending)
            pending = []

    def compose(self, events: Sequence[NotifyEvent], dropped: int = 0) -> tuple[str, str, str]:
        """``(title, body, apprise type)`` of one message carrying ``events``."""
        severity = max((e.severity for e in events), key=lambda s: SEVERITIES.index(s) if s in SEVERITIES else 0)
        if len(events) == 1 and not dropped:
            event = events[0]
            return f"{self.title_prefix}: {event.title}", event.body or event.title, severity
        kinds = Tally(e.kind for e in events)
        title = f"{self.title_prefix}: {len(events)} events (" + ", ".join(
            f"{n} {kind.replace('_', ' ')}" for kind, n in kinds.most_common()) + ")"
        lines = [f"- {e.title}" + (f": {e.body}" if e.body else "") for e in events[: self.max_lines]]
        if len(events) > self.max_lines:
            lines.append(f"... and {len(events) - self.max_lines} more")
        if dropped:
            lines.append(f"({dropped} more events were dropped: the notification queue was full)")
        return title, "\n".join(lines), severity

    def _deliver(self, events: Sequence[NotifyEvent]) -> None:
        with self._lock:
            dropped, self._dropped_unreported = self._dropped_unreported, 0
        title, body, severity = self.compose(events, dropped)
        try:
            ok = bool(self._send(title, body, severity))
            error = "" if ok else "apprise reported a failed delivery (see the apprise log lines)"
        except Exception as exc:  # a notifier must never take the service down
            ok, error = False, f"{type(exc).__name__}: {exc}"
        self._last_sent = self._clock()
        if ok:
            self.sent += 1
        else:
            self.failed += 1
            self.last_error = self.redactor.scrub(error)
            log.warning("notify: a message of %d events was not delivered: %s", len(events), self.last_error)
        if self.metrics is not None:
            self.metrics.messages.labels("sent" if ok else "failed").inc()

    # --------------------------------------------------------------------------------------------- apprise
    def _build_apprise(self) -> Any:
        import apprise

        ap = apprise.Apprise()
        for url, shown in zip(self.urls, self.shown_urls, strict=True):
            if not ap.add(url):
                self.invalid_urls.append(shown)
                log.error("notify: %s is not a notification URL apprise understands; skipped", shown)
        return ap

    def _send_apprise(self, title: str, body: str, severity: str) -> bool:
        if self._apprise is None or len(self._apprise) == 0:
            raise RuntimeError("no usable notification URL")
        return bool(self._apprise.notify(title=title, body=body, notify_type=severity))
