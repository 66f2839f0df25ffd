"""``arbframe health [--config FILE ...] [--verbose] [--json]``: the seed's ``run_health_check.py``.

Prints the health report (seed layout) or, with ``--json``, the same report as one JSON object. Exit status 0,
or 1 when any component is ERROR; 2 for a config error. Bounded: with every server down it answers within
about two seconds.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from arbframe.commands.options import add_common_options

#: wall-clock budget of building the drivers and running every check (the process start comes on top)
BUDGET_SECONDS = 2.0


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "health",
        help="check every component (Redis, PostgreSQL, CSV, exchanges, FX, heartbeat); exit 1 on any ERROR",
        description="Health report of every configured component. Exit status 0, or 1 when any check is ERROR.",
    )
    add_common_options(parser)
    parser.add_argument("--json", action="store_true", help="print the report as JSON (for machines)")
    parser.add_argument(
        "--timeout", type=float, default=BUDGET_SECONDS, metavar="SECONDS",
        help=f"overall bound on the checks (default {BUDGET_SECONDS:g})",
    )
    probe = parser.add_mutually_exclusive_group()
    probe.add_argument("--live", action="store_true",
                       help="liveness only (what /health answers): exit 0 when the service's loop completed a tick "
                            "within max(3 x interval, 10 s), read from its heartbeat file; else 1")
    probe.add_argument("--ready", action="store_true",
                       help="readiness only (what /ready answers): storage writable or spooling, venues reachable, "
                            "not killed; exit 0 or 1")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from arbframe.kernel.config import load_config
    from arbframe.kernel.plugin_host import Kernel, validate_selected
    from arbframe.service.health import report_for_kernel

    started = time.monotonic()
    if not args.verbose:
        # the report is the output: drivers' start-up chatter and the cache's outage warnings (the REDIS row
        # already says it) stay out of the way unless --verbose
        logging.getLogger().setLevel(logging.WARNING)
        logging.getLogger("arbframe.cache").setLevel(logging.ERROR)
    config = load_config(args.configs)
    if getattr(args, "live", False) or getattr(args, "ready", False):
        return _probe(config, ready=bool(args.ready), as_json=bool(args.json))
    service = (config.get("service") or {}).get("name") or "bot_service"
    kernel = Kernel(config, service_name=str(service))
    validate_selected(kernel)
    budget = max(1.0, float(args.timeout) - (time.monotonic() - started))
    report = report_for_kernel(kernel, budget_seconds=budget, build_timeout=min(1.0, max(0.5, budget / 2)))
    if args.json:
        print(report.to_json())
    else:
        print(report.format(verbose=args.verbose))
    sys.stdout.flush()
    return report.exit_code


def _probe(config: dict, *, ready: bool, as_json: bool) -> int:
    """``--live`` / ``--ready``: one line (or JSON) from the heartbeat file; the same rule as /health and /ready."""
    import json

    from arbframe.kernel.interfaces import HealthStatus
    from arbframe.service.health import format_line
    from arbframe.service.liveness import heartbeat_path, liveness_from_file, readiness_from_file

    path = heartbeat_path(config)
    result = readiness_from_file(path) if ready else liveness_from_file(path)
    if as_json:
        print(json.dumps({"component": result.component, "status": result.status.value, "message": result.message},
                         ensure_ascii=False))
    else:
        print(format_line(result))
    return 0 if result.status is HealthStatus.OK else 1
