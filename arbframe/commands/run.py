"""``arbframe run``: the service loop (seed: run_paper.py, run_bot_service.py, run_live.py).

Modes: ``paper`` (live or simulated quotes, paper fills), ``backtest`` (replay a recording made with
``arbframe record``: ``--data FILE``), ``live`` (refuses to start without credentials and ``live.confirm: true``).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from arbframe.commands.options import add_common_options, plain_help

if TYPE_CHECKING:
    from arbframe.service.runner import RunOptions


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "run", help="run the trading service (paper | backtest | live)",
        description=plain_help(__doc__),
    )
    add_common_options(parser)
    parser.add_argument("--mode", choices=["paper", "backtest", "live"], default=None,
                        help="paper (default: the config's mode), backtest or live")
    parser.add_argument("--once", action="store_true", help="run one tick and exit")
    parser.add_argument("--interval", type=_positive, metavar="SECONDS",
                        help="seconds between ticks (default: service.interval_seconds)")
    parser.add_argument("--duration", type=_positive, metavar="SECONDS", help="stop after this many seconds")
    parser.add_argument("--max-iterations", type=_positive_int, metavar="N", help="stop after N ticks")
    mock = parser.add_mutually_exclusive_group()
    mock.add_argument("--mock", dest="mock", action="store_true", default=None,
                      help="quote from the simulated market (no network, no credentials)")
    mock.add_argument("--no-mock", dest="mock", action="store_false", help="use the exchanges' real market data")
    parser.add_argument("--data", metavar="FILE", help="backtest: the recording to replay (.jsonl or .jsonl.gz)")
    parser.add_argument("--output", metavar="DIR", help="backtest: output directory (default backtest.output_dir)")
    parser.add_argument("--force", action="store_true", help="backtest: replace earlier output files")
    parser.set_defaults(handler=handle)
    return parser


def handle(args: argparse.Namespace) -> int:
    from arbframe.kernel.config import load_config
    from arbframe.service.runner import RunOptions

    mode = args.mode
    if mode is None:
        mode = str(load_config(args.configs).get("mode", "paper"))
    opts = RunOptions(
        mode=mode, once=args.once, interval=args.interval, duration=args.duration,
        max_iterations=args.max_iterations, mock=args.mock, data=args.data, output=args.output, force=args.force,
    )
    return run(opts, args.configs)


def run(opts: RunOptions, configs: list[str]) -> int:
    """Dispatch on the mode: a backtest replays a recording, paper and live run the service loop."""
    if opts.mode == "backtest":
        from arbframe.kernel.config import load_config
        from arbframe.replay.backtest import backtest_overrides, run_backtest
        from arbframe.service.runner import kernel_for_run

        extra = backtest_overrides(opts, load_config(configs))
        return run_backtest(kernel_for_run(opts, configs, extra), opts)
    from arbframe.service import runner

    return runner.run(opts, configs)
