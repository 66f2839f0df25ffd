"""``arbframe plugins``: every installed plugin, its distribution, version, status and load error."""

from __future__ import annotations

import argparse
import json

from arbframe.kernel.entrypoints import ALL_GROUPS
from arbframe.kernel.loader import probe_all


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser("plugins", help="list installed plugins, their versions and load status")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--verbose", "-v", action="store_true")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    rows = probe_all(ALL_GROUPS)
    if args.json:
        print(json.dumps([
            {
                "group": r.info.group, "name": r.info.name, "distribution": r.info.distribution,
                "version": r.info.version, "status": r.status, "error": r.error,
            }
            for r in rows
        ], indent=2))
        return 0
    headers = ("GROUP", "NAME", "DISTRIBUTION", "VERSION", "STATUS")
    table = [(r.info.group, r.info.name, r.info.distribution, r.info.version, r.status) for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in table)) if table else len(h) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    for r, row in zip(rows, table, strict=True):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if r.error:
            print(f"    error: {r.error}")
    return 0
