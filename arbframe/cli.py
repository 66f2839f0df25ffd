"""The ``arbframe`` command line.

Sub-commands are modules imported only when they run, so ``arbframe --help`` stays quick: kernel commands are
listed in :data:`KERNEL_COMMANDS`; plugin commands are entry points in the ``arbframe.commands`` group, listed
from metadata and imported (with their plugin) only when invoked.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import re
import sys
from collections.abc import Sequence
from typing import Any

from arbframe import __version__
from arbframe.errors import ArbframeError

#: name -> (module with ``add_parser(subparsers)``, one-line help)
KERNEL_COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("arbframe.commands.run", "run the trading service (paper | backtest | live)"),
    "record": ("arbframe.commands.record", "record order books and FX to a JSON-lines file for backtests"),
    "plugins": ("arbframe.commands.plugins", "list installed plugins, their versions and load status"),
    "config": ("arbframe.commands.config", "validate, show (secrets masked) or print the schema of the config"),
    "metrics": ("arbframe.commands.metrics", "print the current metrics once in Prometheus text format"),
    "health": ("arbframe.commands.health", "check every component; exit 1 when any is ERROR (--json for machines)"),
}

_URL_PASSWORD = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)([^@\s]+)(@)")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)(\S+)", re.IGNORECASE)


def mask_secrets(text: str) -> str:
    """``text`` with passwords cut out of URLs/DSNs (``scheme://user:***@host``, ``password=***``)."""
    return _KV_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***\3", text))


class SecretFilter(logging.Filter):
    """Last line of defence: cut passwords out of URLs and DSNs in every log message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = mask_secrets(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class TextFormatter(logging.Formatter):
    """The human format; tracebacks are masked like messages (an exception text can quote a DSN)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def formatException(self, ei: Any) -> str:
        return mask_secrets(super().formatException(ei))


class JsonFormatter(logging.Formatter):
    """``logging.format: json``: one JSON object per line (``ts`` UTC ISO, ``level``, ``logger``, ``message``, and
    ``exc`` with the traceback), for log shippers. Messages arrive masked by :class:`SecretFilter`."""

    def format(self, record: logging.LogRecord) -> str:
        from datetime import datetime, timezone

        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = mask_secrets(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def setup_logging(verbose: bool = False, level: str | None = None, *, quiet: bool = False,
                  fmt: str = "text") -> None:
    """Root logging to stderr: ``--verbose`` (DEBUG) and ``--quiet`` (WARNING) win over the config's
    ``logging.level``; ``fmt`` is ``text`` or ``json``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(SecretFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    if verbose:
        root.setLevel(logging.DEBUG)
    elif quiet:
        root.setLevel(logging.WARNING)
    else:
        root.setLevel(getattr(logging, str(level or "INFO").upper(), logging.INFO))


def _config_logging(args: argparse.Namespace) -> dict[str, Any]:
    """The ``logging`` section of the config the command will load (files and environment overrides). A config
    that does not load is reported by the command itself, so here it just means the defaults."""
    if not hasattr(args, "configs"):
        return {}
    from arbframe.config import merged_config

    try:
        section = merged_config(args.configs)[0].get("logging")
    except ArbframeError:
        return {}
    return section if isinstance(section, dict) else {}


_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")


def plain_help(doc: str | None) -> str | None:
    """A command module's docstring without its first paragraph, as plain text for ``--help``: no reST
    literals (````x````), roles (``:class:`x```) or literal-block markers."""
    if not doc or "\n\n" not in doc:
        return None
    text = doc.split("\n\n", 1)[1]
    text = _ROLE.sub(lambda m: m.group(1).rsplit(".", 1)[-1], text).replace("``", "")
    return re.sub(r"::$", ":", text, flags=re.MULTILINE).strip()


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """``--config`` (repeatable: later files overlay earlier ones), ``--verbose`` and ``--quiet``."""
    parser.add_argument(
        "--config", "-c", dest="configs", action="append", default=[], metavar="FILE",
        help="YAML config overlaid on the embedded defaults (repeat to overlay several, in order)",
    )
    noise = parser.add_mutually_exclusive_group()
    noise.add_argument("--verbose", "-v", action="store_true", help="debug logging (overrides logging.level)")
    noise.add_argument("--quiet", "-q", action="store_true",
                       help="warnings and errors only (overrides logging.level)")


def _selected_command(argv: Sequence[str]) -> str | None:
    for token in argv:
        if not token.startswith("-"):
            return token
        if token in ("-h", "--help", "--version"):
            return None
    return None


def build_parser(selected: str | None) -> argparse.ArgumentParser:
    from arbframe.entrypoints import COMMAND_GROUP, installed

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
    from arbframe.plugins import COMMAND_GROUP, load_entry_point, new_plugin_manager

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
        logging_cfg = _config_logging(args)
        setup_logging(getattr(args, "verbose", False), logging_cfg.get("level"), quiet=getattr(args, "quiet", False),
                      fmt=str(logging_cfg.get("format") or "text"))
        return int(args.handler(args) or 0)
    except ArbframeError as exc:
        print(f"arbframe: error: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
