"""Options and logging set-up every sub-command shares (light: ``arbframe --help`` imports this)."""

from __future__ import annotations

import argparse
import logging
import sys

from arbframe.core.secrets import SecretFilter


def setup_logging(verbose: bool = False, level: str | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    handler.addFilter(SecretFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else getattr(logging, level or "INFO", logging.INFO))


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """``--config`` (repeatable: later files overlay earlier ones) and ``--verbose``."""
    parser.add_argument(
        "--config", "-c", dest="configs", action="append", default=[], metavar="FILE",
        help="YAML config overlaid on the embedded defaults (repeat to overlay several, in order)",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
