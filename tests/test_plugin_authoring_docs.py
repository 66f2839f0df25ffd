"""docs/PLUGINS.md: its generated reference matches the code, and it covers what plugin authors need."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from arbframe.kernel import docgen, hookspecs

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "PLUGINS.md"


def test_the_generated_reference_is_up_to_date() -> None:
    result = subprocess.run([sys.executable, "-m", "arbframe.kernel.docgen", "--check"], capture_output=True, text=True,
                            cwd=ROOT)
    assert result.returncode == 0, f"{result.stderr}\nrun `python -m arbframe.kernel.docgen` and commit docs/PLUGINS.md"


def test_check_notices_a_stale_doc_and_regeneration_fixes_only_the_generated_part(tmp_path: Path) -> None:
    doc = tmp_path / "PLUGINS.md"
    text = DOC.read_text(encoding="utf-8")
    stale = text.replace("A hedged position was opened.", "A position opened (old wording).", 1)
    assert stale != text
    doc.write_text(stale, encoding="utf-8")
    assert docgen.main(["--check", "--doc", str(doc)]) == 1
    assert docgen.main(["--doc", str(doc)]) == 0
    assert doc.read_text(encoding="utf-8") == text
    assert docgen.main(["--check", "--doc", str(doc)]) == 0


def test_a_changed_hook_docstring_makes_the_doc_stale(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(hookspecs.arbframe_on_error, "__doc__", "Something went wrong (new wording).")
    doc = tmp_path / "PLUGINS.md"
    doc.write_text(DOC.read_text(encoding="utf-8"), encoding="utf-8")
    assert docgen.main(["--check", "--doc", str(doc)]) == 1
    docgen.main(["--doc", str(doc)])
    assert "Something went wrong (new wording)." in doc.read_text(encoding="utf-8")


def test_missing_markers_are_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "PLUGINS.md"
    doc.write_text("# no markers here\n", encoding="utf-8")
    assert docgen.main(["--check", "--doc", str(doc)]) == 2
    assert "missing markers" in capsys.readouterr().err


def test_every_hook_and_interface_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    names = [name for name, _fn, _opts in docgen.hook_specs()]
    assert len(names) >= 12
    for name, fn, _opts in docgen.hook_specs():
        assert f"#### `{name}`" in text
        assert fn.__doc__.strip().splitlines()[0] in text
    for cls in ("Driver", "Storage(Driver)", "Cache(Driver)", "FxSource(Driver)", "MarketData(Driver)", "Trading",
                "Exchange(MarketData, Trading)"):
        assert f"#### `{cls}`" in text
    assert "| `fetch_order_book` | async method | `(symbol: str, depth: int = 15) -> OrderBook` | **yes** |" in text


@pytest.mark.parametrize("topic", [
    # every kind of plugin and its entry-point group
    "arbframe.exchange", "arbframe.storage", "arbframe.cache", "arbframe.fx", "arbframe.plugins", "arbframe.commands",
    "arbframe_register_commands", "arbframe.load_config",
    # interfaces, config, health, metrics, packaging, API version
    "DriverClass(section, context)", "config_schema()", '"writeOnly": true', "additionalProperties",
    "HealthCheck", "HealthResult", "timeout_seconds", "ExchangeMetrics.get(registry)", "StorageMetrics",
    "CacheMetrics", "arbframe_plugin_errors_total", "[project.entry-points.", "api_version = 1",
    "ARBFRAME_API_VERSION = 1", "incompatible",
    # testing
    "ExchangeContract", "StorageContract", "CacheContract", "FxSourceContract", "PluginHarness", "redis_server",
    "postgres_server", "CI=true", "--import-mode=importlib", "service_harness", "PluginHarness.from_config",
    "run_in_thread", "fx_health", "load_storage_writer",
    # the stevedore trap
    "XDG_CACHE_HOME", "python-entrypoints",
])
def test_the_guide_covers(topic: str) -> None:
    assert topic in DOC.read_text(encoding="utf-8")


def test_relative_links_resolve() -> None:
    text = DOC.read_text(encoding="utf-8")
    links = re.findall(r"\]\((\.\./[^)#]+)\)", text)
    assert links
    for link in links:
        assert (DOC.parent / link).resolve().exists(), link


def test_anchors_resolve() -> None:
    text = DOC.read_text(encoding="utf-8")
    headings = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
                for h in re.findall(r"^#+ (.+)$", text, re.M)}
    for anchor in re.findall(r"\]\(#([^)]+)\)", text):
        assert anchor in headings, anchor
