"""``arbframe kill`` / ``arbframe resume``: the live kill switch, kept in the configured storage.

``kill`` stops new entries on every runner sharing the store within one tick (and after restarts), cancels their
open orders and, with ``--flatten``, closes every open position at its price bound. ``resume`` releases it (and
takes the venues' current balances as the new baseline of the balance check). Both print the state they wrote;
``kill --status`` only prints it. The storage is the one ``storage.backend`` selects, built without the CSV
fallback: a kill that cannot reach the store fails (exit 1) instead of being written where no runner reads it.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from arbframe.commands.options import add_common_options, plain_help
from arbframe.core.errors import ArbframeError


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser("kill", help="trip the live kill switch (no entries, cancel orders; --flatten closes)",
                            description=plain_help(__doc__))
    add_common_options(parser)
    parser.add_argument("--flatten", action="store_true", help="also close every open position at its bound")
    parser.add_argument("--reason", metavar="TEXT", default="", help="why (shown in logs, health and metrics)")
    parser.add_argument("--status", action="store_true", help="only print the stored state")
    parser.set_defaults(handler=run_kill)
    return parser


def add_resume_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser("resume", help="release the live kill switch", description=plain_help(__doc__))
    add_common_options(parser)
    parser.set_defaults(handler=run_resume)
    return parser


def switch(args: argparse.Namespace) -> tuple[Any, Any]:
    """(KillSwitch, storage driver) of the configured store."""
    from arbframe.commands import load_kernel
    from arbframe.execution.control import KillSwitch

    kernel = load_kernel(args)
    storage_cfg = kernel.config.get("storage") or {}
    backend = str(storage_cfg.get("backend", "csv"))
    name = "csv" if backend in ("csv", "hybrid") else backend
    try:
        storage = kernel.build_driver("storage", name, storage_cfg.get(name, {}), "storage.backend")
    except ArbframeError:
        raise
    except Exception as exc:
        raise ArbframeError(f"storage {name!r} unavailable ({type(exc).__name__}: {exc}): the kill switch was not "
                            "written") from None
    return KillSwitch(storage, kernel.context.data_dir), storage


def _write(args: argparse.Namespace, action: str) -> int:
    kill_switch, storage = switch(args)
    try:
        if action == "status":
            state = kill_switch.read()
        elif action == "kill":
            state = kill_switch.trip(args.reason or "operator", flatten=args.flatten)
        else:
            state = kill_switch.resume()
    except Exception as exc:
        raise ArbframeError(f"kill switch not {'read' if action == 'status' else 'written'} in {kill_switch.where}: "
                            f"{type(exc).__name__}: {exc}") from None
    finally:
        storage.close()
    sys.stdout.write(f"{state.describe()} ({kill_switch.where})\n")
    return 0


def run_kill(args: argparse.Namespace) -> int:
    return _write(args, "status" if args.status else "kill")


def run_resume(args: argparse.Namespace) -> int:
    return _write(args, "resume")
