"""``arbframe kill`` / ``arbframe resume``: the live kill switch, kept in the configured storage.

``kill`` stops new entries on every runner sharing the store within one tick (and after restarts), cancels their
open orders and, with ``--flatten``, closes every open position at its price bound. ``resume`` releases it (and
takes the venues' current balances as the new baseline of the balance check). Both print the state they wrote and
the residual exposure recorded for the configured book (coin a hedge could neither complete nor unwind);
``kill --status`` only prints them. ``resume --flattened`` says that residual was flattened by hand: the residuals
it prints are cleared (in the store at once, in a running runner within one tick) and the switch is released;
``kill --flattened`` clears them the same way and keeps the switch tripped (an already tripped switch keeps its
reason unless ``--reason`` gives a new one). The storage is the one
``storage.backend`` selects, built without the CSV fallback: a kill that cannot reach the store fails (exit 1)
instead of being written where no runner reads it.
"""

from __future__ import annotations

import argparse
import sys
from decimal import Decimal
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
    parser.add_argument("--flattened", action="store_true",
                        help="the recorded residual exposure was flattened by hand on the venues: clear it and "
                             "stay killed")
    parser.set_defaults(handler=run_kill)
    return parser


def add_resume_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser("resume", help="release the live kill switch", description=plain_help(__doc__))
    add_common_options(parser)
    parser.add_argument("--flattened", action="store_true",
                        help="the recorded residual exposure was flattened by hand on the venues: clear it")
    parser.set_defaults(handler=run_resume)
    return parser


def switch(args: argparse.Namespace) -> tuple[Any, Any]:
    """(KillSwitch, storage driver) of the configured store."""
    kill_switch, storage, _residuals, _config = _open(args)
    return kill_switch, storage


def _open(args: argparse.Namespace) -> tuple[Any, Any, Any, Any]:
    """(KillSwitch, storage driver, ResidualStore of the configured book, config) of the configured store."""
    from arbframe.commands import load_kernel
    from arbframe.execution.control import KillSwitch
    from arbframe.execution.residual import ResidualStore
    from arbframe.kernel.book import book_from_config

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
    book = book_from_config(kernel.config)
    data_dir = kernel.context.data_dir
    return (KillSwitch(storage, data_dir), storage,
            ResidualStore(storage, book.domestic, book.foreign, book.symbols, data_dir), kernel.config)


def _write(args: argparse.Namespace, action: str) -> int:
    from arbframe.execution.config import LiveConfig
    from arbframe.execution.control import who
    from arbframe.execution.residual import exposure, total_krw

    kill_switch, storage, store, config = _open(args)
    flattened = action != "status" and bool(getattr(args, "flattened", False))
    lines = []
    try:
        try:
            residuals = store.load(every_symbol=True)
        except Exception as exc:
            if flattened:
                raise ArbframeError(f"residual exposure not read from {store.where}: {type(exc).__name__}: {exc}; "
                                    "nothing was written") from None
            residuals = None
            lines.append(f"residual exposure could not be read from {store.where} ({type(exc).__name__}: {exc})")
        try:
            if action == "status":
                state = kill_switch.read()
            else:
                keys = tuple(r.key for r in residuals or ()) if flattened else ()
                if action == "kill":
                    reason, flatten = args.reason or "operator", args.flatten
                    if flattened and not args.reason:
                        was = kill_switch.read()
                        if was.killed:  # clearing a residual keeps why it was killed
                            reason, flatten = was.reason, args.flatten or was.flatten
                    state = kill_switch.trip(reason, flatten=flatten, flattened=keys)
                else:
                    state = kill_switch.resume(flattened=keys)
        except Exception as exc:
            raise ArbframeError(f"kill switch not {'read' if action == 'status' else 'written'} in "
                                f"{kill_switch.where}: {type(exc).__name__}: {exc}") from None
        if residuals and flattened:
            by = who()
            for symbol in sorted({r.symbol for r in residuals}):
                try:
                    store.save(symbol, (), by=by, note=f"flattened by hand: arbframe {action} --flattened by {by}")
                except Exception as exc:  # the runner clears it from the kill switch record and stores that
                    lines.append(f"residual record of {symbol} not cleared in {store.where} ({type(exc).__name__}: "
                                 f"{exc}): the runner clears it at its next tick or start")
    finally:
        storage.close()
    out = [f"{state.describe()} ({kill_switch.where})"]
    if residuals:
        limit = LiveConfig.from_config(config).max_residual_krw
        total = total_krw(residuals)
        blocked = total_krw(r for r in residuals if r.symbol in store.symbols) > limit  # as the runner counts
        head = "residual exposure cleared (flattened by hand)" if flattened else "residual exposure"
        out.append(f"{head}: {total.quantize(Decimal(1)):,} KRW (live.max_residual_krw={limit}"
                   f"{': entries blocked' if blocked and not flattened else ''})")
        out.extend(f"  {e.describe()}" + ("" if e.symbol in store.symbols else " (not a symbol of this book)")
                   for e in exposure(residuals).values())
        out.extend(f"    {r.describe()}" for r in residuals)
        if not flattened:
            out.append("  once it is flattened by hand on the venue: arbframe resume --flattened (or, to stay "
                       "killed, arbframe kill --flattened)")
    elif residuals is not None:
        out.append("residual exposure: none recorded" + (" (nothing to clear)" if flattened else ""))
    sys.stdout.write("\n".join(out + lines) + "\n")
    return 0


def run_kill(args: argparse.Namespace) -> int:
    return _write(args, "status" if args.status else "kill")


def run_resume(args: argparse.Namespace) -> int:
    return _write(args, "resume")
