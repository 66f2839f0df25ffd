"""Hook specifications: everything a plugin can contribute besides being a driver.

Implement a hook by decorating a function (in a module listed under the ``arbframe.plugins`` entry-point group)
or a method (on a driver class) with :data:`arbframe.hookimpl`. The kernel owns one ``pluggy.PluginManager``
named ``arbframe``; hooks that run while trading (the ``arbframe_on_*`` events) are called plugin by plugin, so an
exception in one is logged with the plugin's name, counted in ``arbframe_plugin_errors_total`` and never stops
the others or the tick.

``docs/PLUGINS.md`` carries a reference generated from these docstrings (``python -m arbframe.kernel.docgen``).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from arbframe.core.models import DailySummary, ErrorRecord, Order, Position, Spread, Trade
    from arbframe.kernel.interfaces import HealthCheck, PluginContext

hookspec = pluggy.HookspecMarker("arbframe")
hookimpl = pluggy.HookimplMarker("arbframe")


@hookspec
def arbframe_config_schema() -> Mapping[str, Mapping[str, Any]] | None:
    """Return JSON Schema fragments for config sections this plugin owns.

    Keys are dotted paths of the section (``"storage.postgres"``, ``"upbit"``); values are Draft 2020-12
    schemas. The kernel composes them into the full schema after the selected drivers are loaded; mark secrets
    with ``"writeOnly": true`` so ``arbframe config show`` masks them. A driver class may instead return its
    schema from ``config_schema()``; the kernel adds it under the driver's section.
    """


@hookspec
def arbframe_register_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add sub-commands to the ``arbframe`` CLI.

    Declare each command's name in the ``arbframe.commands`` entry-point group so ``arbframe --help`` lists it
    without importing the plugin; the kernel imports the plugin and calls this hook only when that command runs.
    Set ``handler=callable(args) -> int`` with ``parser.set_defaults``; the return value is the exit status.
    """


@hookspec(historic=True)
def arbframe_configure(config: Mapping[str, Any], context: PluginContext) -> None:
    """Receive the validated effective config once it is known (historic: late registrants get it too)."""


@hookspec
def arbframe_startup(context: PluginContext) -> None:
    """The service is starting: open what must be open before the first tick."""


@hookspec
def arbframe_shutdown(context: PluginContext) -> None:
    """The service is stopping after its last tick: flush and close. Called even if startup failed half-way."""


@hookspec
def arbframe_health_checks(config: Mapping[str, Any], context: PluginContext) -> list[HealthCheck] | None:
    """Return the health checks of the components this plugin owns.

    Each check is bounded by its ``timeout_seconds``; a check that times out is reported as ERROR. Results must
    never contain secrets (mask passwords and API keys).
    """


@hookspec
def arbframe_register_metrics(registry: CollectorRegistry, context: PluginContext) -> None:
    """Register collectors into the kernel's registry (never prometheus-client's global one).

    Follow Prometheus naming: ``_total`` counters, ``_seconds`` histograms, bounded label values.
    """


@hookspec
def arbframe_on_spread(spread: Spread) -> None:
    """A spread was observed (every tick, every symbol and direction). Keep it cheap."""


@hookspec
def arbframe_on_order_filled(order: Order, trade: Trade) -> None:
    """An order leg filled (paper or live)."""


@hookspec
def arbframe_on_position_opened(position: Position) -> None:
    """A hedged position was opened."""


@hookspec
def arbframe_on_position_closed(position: Position) -> None:
    """A position was closed; ``position.realized_pnl_krw`` is set."""


@hookspec
def arbframe_on_error(error: ErrorRecord) -> None:
    """Something went wrong that the service survived (a venue timed out, a write failed)."""


@hookspec
def arbframe_on_storage_fallback(backend: str, fallback: str, reason: str) -> None:
    """The configured storage ``backend`` could not start and the service records to ``fallback`` instead.

    ``reason`` names the cause with any password masked. Called once, before the first tick.
    """


@hookspec
def arbframe_on_daily_summary(summary: DailySummary) -> None:
    """A trading day (midnight in ``arbitrage.timezone``) ended while the service ran: its realized PnL and trade
    count, with the running totals. Called from the first tick of the new day."""
