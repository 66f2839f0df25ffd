"""``arbframe record``: save market snapshots (order books of both venues + the FX rate) as JSON lines.

The file (gzip when it ends in ``.gz``) replays with ``arbframe run --mode backtest --data FILE``.
"""

from __future__ import annotations

import argparse

from arbframe.commands.options import add_common_options, plain_help
from arbframe.commands.run import _positive, _positive_int


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "record", help="record order books and FX to a JSON-lines file for backtests",
        description=plain_help(__doc__),
    )
    add_common_options(parser)
    parser.add_argument("--output", "-o", metavar="FILE",
                        help="recording file (default data/recordings/<UTC time>.jsonl.gz)")
    parser.add_argument("--interval", type=_positive, metavar="SECONDS",
                        help="seconds between snapshots (default: service.interval_seconds)")
    parser.add_argument("--duration", type=_positive, metavar="SECONDS", help="stop after this many seconds")
    parser.add_argument("--max-iterations", "--snapshots", dest="max_iterations", type=_positive_int, metavar="N",
                        help="stop after N snapshots")
    parser.add_argument("--once", action="store_true", help="record one snapshot and exit")
    mock = parser.add_mutually_exclusive_group()
    mock.add_argument("--mock", dest="mock", action="store_true", default=None,
                      help="record the simulated market")
    mock.add_argument("--no-mock", dest="mock", action="store_false", help="record the exchanges' market data")
    parser.set_defaults(handler=handle)
    return parser


def handle(args: argparse.Namespace) -> int:
    from arbframe.service.recorder import record
    from arbframe.service.runner import RunOptions

    opts = RunOptions(mode="paper", once=args.once, interval=args.interval, duration=args.duration,
                      max_iterations=args.max_iterations, mock=args.mock)
    return record(opts, args.configs, args.output)
