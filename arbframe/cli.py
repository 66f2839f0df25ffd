"""The ``arbframe`` command line.

Sub-commands are modules imported only when they run, so ``arbframe --help`` stays quick: kernel commands are
listed in :data:`KERNEL_COMMANDS`; plugin commands are entry points in the ``arbframe.commands`` group, listed
from metadata and imported (with their plugin) only when invoked.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from arbframe.commands.options import config_logging, setup_logging
from arbframe.core.errors import ArbframeError
from arbframe.core.version import __version__

#: name -> (module with ``add_parser(subparsers)``, one-line help)
KERNEL_COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("arbframe.commands.run", "run the trading service (paper | backtest | live)"),
    "record": ("arbframe.commands.record", "record order books and FX to a JSON-lines file for backtests"),
    "plugins": ("arbframe.commands.plugins", "list installed plugins, their versions and load status"),
    "config": ("arbframe.commands.config", "validate, show (secrets masked) or print the schema of the config"),
    "metrics": ("arbframe.commands.metrics", "print the current metrics once in Prometheus text format"),
    "health": ("arbframe.commands.health", "check every component; exit 1 when any is ERROR (--json for machines)"),
    "status": ("arbframe.commands.status", "open positions with unrealized PnL, balances, limits, last tick age"),
    "profit": ("arbframe.commands.profit", "realized PnL, trades, win rate, fees, FX translation; per symbol and day"),
    "history": ("arbframe.commands.history", "closed positions, newest first"),
    "kill": ("arbframe.commands.kill", "trip the live kill switch (no entries, cancel orders; --flatten closes)"),
    "resume": ("arbframe.commands.resume", "release the live kill switch"),
}

def _selected_command(argv: Sequence[str]) -> str | None:
    for token in argv:
        if not token.startswith("-"):
            return token
        if token in ("-h", "--help", "--version"):
            return None
    return None


def build_parser(selected: str | None) -> argparse.ArgumentParser:
    from arbframe.kernel.entrypoints import COMMAND_GROUP, installed

    parser = argparse.ArgumentParser(
        prog="arbframe",
        description="Cross-exchange crypto arbitrage framework (kimchi premium: Upbit KRW vs Binance USDT).",
    )
    parser.add_argument("--version", action="version", version=f"arbframe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in KERNEL_COMMANDS.items():
        if name == selected:
            importlib.import_module(module).add_parser(sub)
        else:
            sub.add_parser(name, help=help_text, add_help=False)
    for info in installed(COMMAND_GROUP):
        if info.name in KERNEL_COMMANDS:
            continue
        if info.name == selected:
            _add_plugin_command(sub, info.name)
        else:
            sub.add_parser(info.name, help=f"(from plugin {info.distribution})", add_help=False)
    return parser


def _add_plugin_command(sub: argparse._SubParsersAction, name: str) -> None:
    from arbframe.kernel.entrypoints import COMMAND_GROUP
    from arbframe.kernel.loader import load_entry_point, new_plugin_manager

    module = load_entry_point(COMMAND_GROUP, name)
    pm = new_plugin_manager()
    pm.register(module, name=f"command:{name}")
    pm.hook.arbframe_register_commands(subparsers=sub)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(_selected_command(argv))
        args = parser.parse_args(argv)
        if not getattr(args, "command", None) or not hasattr(args, "handler"):
            parser.print_help()
            return 0 if not argv else 2
        logging_cfg = config_logging(args)
        setup_logging(getattr(args, "verbose", False), logging_cfg.get("level"), quiet=getattr(args, "quiet", False),
                      fmt=str(logging_cfg.get("format") or "text"))
        return int(args.handler(args) or 0)
    except ArbframeError as exc:
        # one line whatever the message holds (a YAML error's context, a plugin's multi-line text)
        text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
        print(f"arbframe: error: {text}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
