"""A corpus of malformed configs through the real CLI: each is refused with exit status 2 and exactly one line on
stderr, echoes no secret, and is answered within two seconds; no config ends in a traceback.

Every case plants a secret (an API secret, a URL password or raw text in the file) and checks it never appears in
what the command prints. ``config validate`` and ``run --once`` go through :func:`arbframe.cli.main` in-process;
the dangerous inputs (alias bomb, recursive alias, binary file, a huge file) also go through a real subprocess.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from arbframe.cli import main

SECRET = "PLANTED-S3CRET-7f3a"
PLANT = f"upbit: {{api_key: {SECRET}-key, api_secret: {SECRET}}}\n"


def _bomb(levels: int = 12) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return PLANT + "\n".join(lines) + "\n"


def _nested(depth: int) -> str:
    return PLANT + "paper: {seed: " + "[" * depth + "]" * depth + "}\n"


#: name -> file content (str: UTF-8 text, bytes: written as is); every text case carries the planted secret
CASES: dict[str, str | bytes] = {
    # YAML read with limits
    "recursive alias": PLANT + "a: &a [*a]\n",
    "recursive mapping alias": PLANT + "paper: &p {balances: {x: *p}}\n",
    "alias bomb": _bomb(),
    "too many aliases": PLANT + "x: &x 1\nl: [" + ", ".join(["*x"] * 150) + "]\n",
    "undefined alias": PLANT + "paper: *nowhere\n",
    "binary file": b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe" + SECRET.encode() + bytes(range(256)),
    "invalid UTF-8 after text": (PLANT + "mode: paper\n").encode() + b"service: {name: \xff\xfe}\n",
    "NUL byte": PLANT + "mode: pa\x00per\n",
    "control character": PLANT + "mode: pa\x07per\n",
    "duplicate top-level key": PLANT + "mode: paper\nmode: live\n",
    "duplicate nested key": PLANT + "redis: {prefix: a, prefix: b}\n",
    "duplicate secret key": PLANT + f"binance: {{api_secret: {SECRET}, api_secret: {SECRET}2}}\n",
    "nested too deeply": _nested(100_000),
    "nested blocks": PLANT + "paper:\n" + "".join(" " * i + "- \n" for i in range(1, 3000)),
    "unclosed bracket": PLANT + "storage:\n  backend: csv\n  csv: [unclosed\n",
    "tab indentation": PLANT + "storage:\n\tbackend: csv\n",
    "top level is a list": f"- {SECRET}\n- two\n",
    "top level is a scalar": f"{SECRET}\n",
    # numbers
    "entry threshold NaN": PLANT + "arbitrage: {entry_threshold: .nan}\n",
    "entry threshold inf": PLANT + "arbitrage: {entry_threshold: .inf}\n",
    "exit threshold -inf": PLANT + "arbitrage: {exit_threshold: -.inf}\n",
    "overflowing float": PLANT + "arbitrage: {order_notional_krw: 1e400}\n",
    "NaN in a list": PLANT + "simulation: {base_prices: {BTC: .nan}}\n",
    "NaN from the environment": PLANT + "fx: {static_rate: '${ARBFRAME_CORPUS_UNSET:-.nan}'}\n",
    # cross-field rules
    "negative entry threshold": PLANT + "arbitrage: {entry_threshold: -0.01}\n",
    "exit above entry": PLANT + "arbitrage: {entry_threshold: 0.01, exit_threshold: 0.02}\n",
    "same venue twice": PLANT + "arbitrage: {domestic: binance, foreign: binance}\n",
    "redis url http": PLANT + f"redis: {{url: 'http://user:{SECRET}@localhost:6379/0'}}\n",
    "redis url without scheme": PLANT + f"redis: {{url: 'user:{SECRET}@localhost:6379'}}\n",
    "unknown time zone": PLANT + "arbitrage: {timezone: Mars/Olympus_Mons}\n",
    # schema
    "unknown top-level key": PLANT + "storrage: {backend: csv}\n",
    "unknown nested key": PLANT + "metrics_server: {prot: 8000}\n",
    "mode not allowed": PLANT + "mode: turbo\n",
    "mock_mode not a boolean": PLANT + "mock_mode: 'yes please'\n",
    "interval zero": PLANT + "service: {interval_seconds: 0}\n",
    "interval huge": PLANT + "service: {interval_seconds: 1e300}\n",
    "port out of range": PLANT + "metrics_server: {port: 70000}\n",
    "storage not a mapping": PLANT + "storage: [csv]\n",
    "storage backend not installed": PLANT + "storage: {backend: nosuchdb}\n",
    "cache backend not installed": PLANT + "cache: {backend: nosuchcache}\n",
    "fx source not installed": PLANT + "fx: {source: nosuchfx}\n",
    "no symbols": PLANT + "arbitrage: {symbols: []}\n",
    "symbol with spaces": PLANT + "arbitrage: {symbols: ['B T C']}\n",
    "unknown direction": PLANT + "arbitrage: {directions: [sideways]}\n",
    "book depth zero": PLANT + "arbitrage: {book_depth: 0}\n",
    "negative notional": PLANT + "arbitrage: {order_notional_krw: -5}\n",
    "missing environment variable": PLANT + "redis: {url: '${ARBFRAME_CORPUS_NO_SUCH_VAR}'}\n",
    "prefix with a space": PLANT + "redis: {prefix: 'a b'}\n",
    "log level": PLANT + "logging: {level: LOUD}\n",
    "api secret not a string": f"binance: {{api_key: {SECRET}, api_secret: [{SECRET}]}}\n",
    "plugin key out of range": PLANT + "binance: {rate_limit: -1}\n",
    "ttl not an integer": PLANT + "redis: {health_ttl_seconds: 1.5}\n",
    "excursion probability": PLANT + "simulation: {excursion_prob: 2}\n",
    "paper seed text": PLANT + "paper: {seed: abc}\n",
    "arbitrage null venue": PLANT + "arbitrage: {domestic: null}\n",
}


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / (name.replace(" ", "-") + ".yml")
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _one_refusal(err: str, out: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected exactly one line on stderr, got {len(lines)}:\n{err[:2000]}"
    assert lines[0].startswith("arbframe: error: "), lines[0]
    assert "Traceback" not in err + out
    assert SECRET not in err + out, f"secret echoed: {err}"
    return lines[0]


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize("command", [["config", "validate"], ["run", "--once"], ["health"]], ids=" ".join)
@pytest.mark.parametrize("name", sorted(CASES))
def test_each_malformed_config_is_one_line_and_exit_2(
    name: str, command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # a run that got past the config would write here, not into the checkout
    path = _write(tmp_path, name, CASES[name])
    started = time.monotonic()
    status = main([*command, "--config", str(path)])
    elapsed = time.monotonic() - started
    captured = capsys.readouterr()
    line = _one_refusal(captured.err, captured.out)
    assert status == 2, line
    assert elapsed < 2.0, f"{name}: {elapsed:.2f}s"


def test_the_refusals_say_what_is_wrong(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expected = {
        "recursive alias": "recursive alias",
        "alias bomb": "alias bomb",
        "too many aliases": "more than 100 aliases",
        "binary file": "not UTF-8 text",
        "NUL byte": "NUL byte",
        "duplicate nested key": "duplicate key 'prefix'",
        "entry threshold NaN": "arbitrage.entry_threshold: nan is not a finite number",
        "NaN from the environment": "fx.static_rate: nan is not a finite number",
        "negative entry threshold": "arbitrage.entry_threshold",
        "exit above entry": "exit_threshold 0.02 is above arbitrage.entry_threshold 0.01",
        "same venue twice": "are both 'binance'",
        "redis url http": "redis.url: *** is not a Redis URL (scheme 'http://')",
        "unknown time zone": "not a time zone name",
        "nested too deeply": "nested too deeply",
        "interval huge": "service.interval_seconds",
    }
    for name, text in expected.items():
        path = _write(tmp_path, name, CASES[name])
        assert main(["config", "validate", "--config", str(path)]) == 2
        line = _one_refusal(*reversed(capsys.readouterr()))
        assert text in line, (name, line)


@pytest.mark.parametrize("name", ["alias bomb", "recursive alias", "binary file", "nested too deeply"])
def test_dangerous_inputs_through_a_real_process(
    name: str, tmp_path: Path, run_cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    path = _write(tmp_path, name, CASES[name])
    started = time.monotonic()
    result = run_cli("run", "--once", "--config", str(path), timeout=30)
    elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stderr
    _one_refusal(result.stderr, result.stdout)
    assert elapsed < 4.0  # interpreter start-up included


def test_a_huge_file_is_refused_before_it_is_parsed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "huge.yml"
    path.write_text(PLANT + "paper: {balances: {upbit: {KRW: 1}}}\n" + f"# {SECRET} padding\n" * 60_000)
    started = time.monotonic()
    assert main(["config", "validate", "--config", str(path)]) == 2
    line = _one_refusal(*reversed(capsys.readouterr()))
    assert "at most 1,000,000 are read" in line and time.monotonic() - started < 2.0


@pytest.mark.parametrize("target", ["directory", "missing"])
def test_a_path_that_is_no_file(target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "cfg"
    if target == "directory":
        path.mkdir()
    assert main(["run", "--once", "--config", str(path)]) == 2
    _one_refusal(*reversed(capsys.readouterr()))


def test_anchors_and_aliases_within_the_limits_still_work(tmp_path: Path) -> None:
    from arbframe.kernel.config import load_config

    path = tmp_path / "ok.yml"
    path.write_text("paper:\n  balances:\n    upbit: &w {BTC: 1, ETH: 2}\n    binance: *w\n")
    config = load_config([path])
    binance = config["paper"]["balances"]["binance"]
    assert (binance["BTC"], binance["ETH"]) == (1, 2)
