"""``arbframe metrics``: the Prometheus text ``/metrics`` serves, printed once.

Without ``--url`` it builds what ``arbframe run`` builds -- the kernel registry with the trading collectors and
the selected drivers (storage, cache, exchanges, FX source), which register their own families -- and prints it,
so the output lists exactly the metric families the service exposes (with start-up values: no tick has run;
the exchanges are built in mock mode, so no network or credentials are needed).
With ``--url`` it fetches ``/metrics`` from a running service instead and prints the live numbers.
"""

from __future__ import annotations

import argparse
import logging
import sys

from arbframe.commands.options import add_common_options, plain_help
from arbframe.core.errors import ArbframeError

log = logging.getLogger("arbframe.metrics")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "metrics",
        help="print the current metrics once in Prometheus text format",
        description=plain_help(__doc__),
    )
    add_common_options(parser)
    parser.add_argument(
        "--url", metavar="URL",
        help="fetch from a running service instead (e.g. http://127.0.0.1:8000; /metrics is added if missing)",
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for --url (default 5)")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    text = fetch(args.url, args.timeout) if args.url else local_text(args)
    sys.stdout.write(text.decode("utf-8") if isinstance(text, bytes) else text)
    sys.stdout.flush()
    return 0


def fetch(url: str, timeout: float = 5.0) -> bytes:
    """``GET <url>/metrics`` of a running service; a clear one-line error when it does not answer."""
    import urllib.error
    import urllib.request

    if "://" not in url:
        url = f"http://{url}"
    path = url.partition("://")[2].partition("/")[2]
    if not path:
        url = url.rstrip("/") + "/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.read()
    except urllib.error.HTTPError as exc:
        raise ArbframeError(f"{url} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ArbframeError(f"cannot fetch {url}: {reason} (is `arbframe run` running with "
                            "metrics_server.enabled?)") from None


def local_text(args: argparse.Namespace) -> bytes:
    """Build what the service builds (storage, cache, both exchanges, FX, trading metrics), no tick, and render.

    The exchanges are built in mock mode whatever the config says, so listing the metrics never needs the
    network or credentials; the families are the same (the same plugins register them).
    """
    import asyncio

    from arbframe.commands import load_kernel
    from arbframe.service.metrics_server import render_metrics
    from arbframe.service.runner import TradingService

    if not getattr(args, "verbose", False):
        logging.getLogger("arbframe").setLevel(logging.ERROR)  # the mock-mode build is ours, not news
    kernel = load_kernel(args)
    configured_mock = bool(kernel.context.mock)

    async def build() -> bytes:
        service = TradingService(kernel, mock=True, with_engine=False)
        try:
            await service.start()
            service.metrics.simulated.set(1 if configured_mock else 0)
            return render_metrics(kernel.registry)
        finally:
            await service.close()

    return asyncio.run(build())
