"""The hooks of arbframe-notify (entry point ``notify`` in ``arbframe.plugins``).

``arbframe_configure`` reads the ``notify`` section; when ``notify.enabled`` is true it registers a
:class:`NotifyPlugin` with the kernel's plugin manager, which turns the kernel's events into messages:

| hook | message |
|---|---|
| ``arbframe_on_position_opened`` / ``_closed`` | the position, its premium and (closed) realized PnL |
| ``arbframe_on_error`` | the component and the error (every error the service survived) |
| ``arbframe_on_storage_fallback`` | the storage backend that could not start and where records go instead |
| ``arbframe_on_daily_summary`` | the finished day's realized PnL, trades and running totals |

The worker thread starts with the service (``arbframe_startup``) and sends what is left on ``arbframe_shutdown``,
so ``arbframe health`` or ``config show`` never start a thread or send anything. apprise is imported only then.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from arbframe import (
    DailySummary,
    ErrorRecord,
    HealthCheck,
    HealthResult,
    HealthStatus,
    PluginContext,
    PluginMetrics,
    Position,
    hookimpl,
)
from arbframe_notify.notifier import KINDS, Notifier, NotifyEvent

ARBFRAME_API_VERSION = 1

COMPONENT = "notify"
PLUGIN_NAME = "notify:sender"

_NUM = {"type": "number", "exclusiveMinimum": 0}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "notifications through apprise (arbframe-notify)",
    "properties": {
        "enabled": {"type": "boolean"},
        "urls": {
            "type": "array",
            "description": "apprise URLs: tgram://, slack://, discord://, mailto://, json:// ... (secrets: masked)",
            "items": {"type": "string", "minLength": 1, "writeOnly": True, "x-arbframe-secret-url": True},
        },
        "events": {"type": "array", "uniqueItems": True, "items": {"enum": list(KINDS)}},
        "min_interval_seconds": {**_NUM, "description": "at most one message per this many seconds"},
        "batch_seconds": {**_NUM, "description": "gather events this long after the first into one message"},
        "max_queue": {"type": "integer", "minimum": 1, "description": "events waiting; more are dropped, counted"},
        "max_lines": {"type": "integer", "minimum": 1, "description": "events listed in one message"},
        "title_prefix": {"type": "string"},
        "shutdown_timeout_seconds": {**_NUM, "description": "bound on sending the last message at shutdown"},
    },
    "additionalProperties": False,
}
DEFAULTS: dict[str, Any] = {
    "enabled": False, "urls": [], "events": list(KINDS), "min_interval_seconds": 60.0, "batch_seconds": 2.0,
    "max_queue": 1000, "max_lines": 20, "title_prefix": "arbframe", "shutdown_timeout_seconds": 5.0,
}


def _krw(value: Decimal | None) -> str:
    return f"{(value or Decimal(0)).quantize(Decimal(1)):,}"


def _pct(value: Decimal | None) -> str:
    return f"{float(value or 0) * 100:+.3f}%"


class NotifyPlugin:
    """Registered with the kernel when ``notify.enabled``: events in, :class:`Notifier` out."""

    def __init__(self, section: Mapping[str, Any], context: PluginContext) -> None:
        cfg = {**DEFAULTS, **dict(section)}
        self.events = set(cfg["events"])
        self.shutdown_timeout = float(cfg["shutdown_timeout_seconds"])
        self.simulated = bool(context.mock)
        self.notifier = Notifier(
            [str(u) for u in cfg["urls"]],
            min_interval_seconds=float(cfg["min_interval_seconds"]),
            batch_seconds=float(cfg["batch_seconds"]),
            max_queue=int(cfg["max_queue"]),
            max_lines=int(cfg["max_lines"]),
            title_prefix=str(cfg["title_prefix"]) + (" [simulated]" if self.simulated else ""),
            registry=context.registry,
        )

    def _submit(self, event: NotifyEvent) -> None:
        if event.kind in self.events:
            self.notifier.submit(event)

    # ------------------------------------------------------------------------------------------- lifecycle
    @hookimpl
    def arbframe_startup(self, context: PluginContext) -> None:
        self.notifier.start()

    @hookimpl
    def arbframe_shutdown(self, context: PluginContext) -> None:
        self.notifier.close(self.shutdown_timeout)

    # ---------------------------------------------------------------------------------------------- events
    @hookimpl
    def arbframe_on_position_opened(self, position: Position) -> None:
        p = position
        self._submit(NotifyEvent(
            "position_opened", f"OPEN {p.direction.value} {p.symbol}",
            f"qty {p.qty} at premium {_pct(p.entry_premium)} (fx {p.entry_fx_rate}), id {p.id}",
        ))

    @hookimpl
    def arbframe_on_position_closed(self, position: Position) -> None:
        p = position
        pnl = p.realized_pnl_krw or Decimal(0)
        self._submit(NotifyEvent(
            "position_closed", f"CLOSE {p.direction.value} {p.symbol} pnl {_krw(pnl)} KRW",
            f"reason {p.close_reason}, exit premium {_pct(p.exit_premium)}, qty {p.qty}, id {p.id}",
            "success" if pnl > 0 else "warning",
        ))

    @hookimpl
    def arbframe_on_error(self, error: ErrorRecord) -> None:
        self._submit(NotifyEvent("error", f"error in {error.component}", error.message, "failure"))

    @hookimpl
    def arbframe_on_storage_fallback(self, backend: str, fallback: str, reason: str) -> None:
        self._submit(NotifyEvent(
            "storage_fallback", f"storage {backend} unavailable: recording to {fallback}", reason, "failure",
        ))

    @hookimpl
    def arbframe_on_daily_summary(self, summary: DailySummary) -> None:
        self._submit(NotifyEvent(
            "daily_summary", f"day {summary.day.isoformat()}: {_krw(summary.realized_pnl_krw)} KRW",
            summary.text(), "success" if summary.realized_pnl_krw >= 0 else "warning",
        ))

    # ---------------------------------------------------------------------------------------------- health
    def health(self) -> HealthResult:
        n = self.notifier
        details = {"urls": n.shown_urls, "sent": n.sent, "failed": n.failed, "dropped": n.dropped,
                   "queued": n.queued}
        if n.invalid_urls:
            details["invalid_urls"] = n.invalid_urls
        if n.last_error:
            details["last_error"] = n.last_error
        channels = ", ".join(n.shown_urls) or "no URL"
        if not n.urls or n.invalid_urls or n.failed:
            problem = ("no notify.urls configured" if not n.urls else
                       f"{len(n.invalid_urls)} URL(s) not understood" if n.invalid_urls else
                       f"{n.failed} message(s) not delivered: {n.last_error}")
            return HealthResult(COMPONENT, HealthStatus.WARN, f"{channels}: {problem}", details)
        return HealthResult(COMPONENT, HealthStatus.OK, f"{channels}: {n.sent} messages sent", details)


# ---------------------------------------------------------------------------------------- module hooks
@hookimpl
def arbframe_config_schema() -> Mapping[str, Mapping[str, Any]]:
    return {"notify": SCHEMA}


@hookimpl
def arbframe_configure(config: Mapping[str, Any], context: PluginContext) -> None:
    section = config.get("notify") or {}
    if not section.get("enabled") or context.pm.get_plugin(PLUGIN_NAME) is not None:
        return
    plugin = NotifyPlugin(section, context)
    context.pm.register(plugin, name=PLUGIN_NAME)
    hooks = tuple(sorted(c.name for c in context.pm.get_hookcallers(plugin) or ()))
    PluginMetrics.get(context.registry).precreate(PLUGIN_NAME, hooks)


@hookimpl
def arbframe_health_checks(config: Mapping[str, Any], context: PluginContext) -> list[HealthCheck] | None:
    """A NOTIFY row only when notifications are on: the seed's report layout stays as it is otherwise."""
    plugin = context.pm.get_plugin(PLUGIN_NAME)
    if plugin is None:
        return None
    return [HealthCheck(COMPONENT, plugin.health, timeout_seconds=1.0)]
