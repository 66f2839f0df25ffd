"""Options and logging set-up every sub-command shares (light: ``arbframe --help`` imports this)."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from typing import Any

from arbframe.core.errors import ArbframeError
from arbframe.core.secrets import SecretFilter, scrub


class TextFormatter(logging.Formatter):
    """The human format; tracebacks are masked like messages (an exception text can quote a DSN)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def formatException(self, ei: Any) -> str:
        return scrub(super().formatException(ei))


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
            entry["exc"] = scrub(self.formatException(record.exc_info))
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


def config_logging(args: argparse.Namespace) -> dict[str, Any]:
    """The ``logging`` section of the config the command will load (files and environment overrides). A config
    that does not load is reported by the command itself, so here it just means the defaults."""
    if not hasattr(args, "configs"):
        return {}
    from arbframe.kernel.config import merged_config

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
