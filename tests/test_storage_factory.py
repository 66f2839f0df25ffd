"""get_storage: CSV by default; a backend that cannot start falls back to CSV with one WARNING (seed D1)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

FAILING = """
class DownStorage:
    def __init__(self, section, context):
        raise ConnectionError("could not connect to postgresql://arbitrage:sekret@127.0.0.1:1/arbitrage")
"""


def test_csv_is_the_default(tmp_path) -> None:
    from arbframe.kernel.config import load_config
    from arbframe.kernel.plugin_host import Kernel

    config = load_config([], overrides={"storage": {"csv": {"data_dir": str(tmp_path / "d")}}})
    storage = Kernel(config, register_plugins=False).load_storage()
    assert storage.describe() == f"CsvStorage({tmp_path / 'd'})"
    storage.close()


def test_unavailable_backend_falls_back_to_csv_with_one_masked_warning(fake_dist, tmp_path) -> None:
    site = fake_dist("arbframe-storage-down", {"arbframe.storage": {"down": "down_mod:DownStorage"}},
                     {"down_mod": FAILING})
    code = (
        "import logging, arbframe.kernel.config as c, arbframe.kernel.plugin_host as p\n"
        "import arbframe.commands.options as cli\n"
        "cli.setup_logging()\n"
        "k = p.Kernel(c.load_config([], overrides={'storage': {'backend': 'down'}}))\n"
        "print(k.load_storage().describe())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(site), "XDG_CACHE_HOME": str(tmp_path / "x")})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "CsvStorage(data)"
    warnings = [line for line in result.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1, result.stderr
    assert "storage backend 'down' unavailable (ConnectionError" in warnings[0]
    assert "falling back to CSV storage at data" in warnings[0]
    assert "sekret" not in result.stderr


def test_secret_filter_masks_urls_in_any_log_line(caplog) -> None:
    from arbframe.core.secrets import SecretFilter

    record = logging.LogRecord("x", logging.INFO, __file__, 1, "dsn %s and %s", (
        "postgresql://u:pw123@h/db", "host=h password=pw456"), None)
    SecretFilter().filter(record)
    assert "pw123" not in record.getMessage() and "pw456" not in record.getMessage()
