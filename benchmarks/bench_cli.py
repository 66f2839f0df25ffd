"""Start-up cost of the CLI: ``arbframe --help`` and ``arbframe plugins`` against a bare interpreter start.

Target (issue: kernel foundation): ``arbframe --help`` at most 5x ``python -c pass`` measured in the same run.
Also lists which plugin/heavy modules ``--help`` imports (must be none).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

RUNS = 15


def wall(args: list[str], env: dict[str, str]) -> float:
    samples = []
    for _ in range(RUNS):
        started = time.perf_counter()
        subprocess.run(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    env = {**os.environ, "XDG_CACHE_HOME": tempfile.mkdtemp(prefix="arbframe-bench-")}
    py = sys.executable
    base = wall([py, "-c", "pass"], env)
    rows = [
        ("python -c pass (baseline)", base),
        ("arbframe --help", wall([py, "-m", "arbframe", "--help"], env)),
        ("arbframe --version", wall([py, "-m", "arbframe", "--version"], env)),
        ("arbframe plugins", wall([py, "-m", "arbframe", "plugins"], env)),
    ]
    print(f"{'command':32} {'median ms':>10} {'x baseline':>11}")
    for name, seconds in rows:
        print(f"{name:32} {seconds * 1000:10.1f} {seconds / base:11.2f}")
    trace = subprocess.run([py, "-X", "importtime", "-m", "arbframe", "--help"], env=env,
                           capture_output=True, text=True).stderr
    heavy = sorted({line.split("|")[-1].strip() for line in trace.splitlines()
                    if line.split("|")[-1].strip().split(".")[0] in
                    ("aiohttp", "psycopg2", "redis", "prometheus_client", "jsonschema", "yaml", "stevedore")
                    or line.split("|")[-1].strip().startswith("arbframe_")})
    print(f"heavy or plugin modules imported by --help: {', '.join(heavy) or 'none'}")
    ratio = rows[1][1] / base
    print(f"target --help <= 5.0x baseline: {'met' if ratio <= 5.0 else 'NOT met'} ({ratio:.2f}x)")


if __name__ == "__main__":
    main()
