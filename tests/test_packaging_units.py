"""Small operator-facing guarantees: the time-zone fallback never raises, --help texts are plain, docgen does
not default into an installed package's parent directory."""

from __future__ import annotations

import logging
import zoneinfo
from datetime import timedelta, timezone

import pytest

from arbframe.cli import main
from arbframe.commands.options import plain_help
from arbframe.kernel import docgen
from arbframe.trading.statistics import load_timezone


def test_timezone_fallback_without_a_tz_database(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    def missing(name: str) -> None:
        raise zoneinfo.ZoneInfoNotFoundError(name)

    monkeypatch.setattr(zoneinfo, "ZoneInfo", missing)
    assert load_timezone("Asia/Seoul").utcoffset(None) == timedelta(hours=9)
    assert load_timezone("UTC") is timezone.utc
    with caplog.at_level(logging.WARNING, logger="arbframe.metrics"):
        assert load_timezone("America/New_York") is timezone.utc
    assert "America/New_York" in caplog.text and "UTC days" in caplog.text


def test_plain_help_drops_rest_markup() -> None:
    doc = "Title.\n\nUse ``arbframe run`` with :class:`~arbframe.FxRate` and::\n\n    x\n"
    assert plain_help(doc) == "Use arbframe run with FxRate and:\n\n    x"


@pytest.mark.parametrize("command", ["run", "record", "metrics", "health", "config show"])
def test_help_texts_have_no_rest_markup(command: str, capsys) -> None:
    with pytest.raises(SystemExit):
        main([*command.split(), "--help"])
    out = capsys.readouterr().out
    assert "``" not in out and ":class:" not in out and "--quiet" in out


def test_docgen_default_is_the_checkout_only() -> None:
    assert docgen.DEFAULT_DOC is not None and docgen.DEFAULT_DOC.name == "PLUGINS.md"  # tests run from a checkout
    assert (docgen.DEFAULT_DOC.parent.parent / "pyproject.toml").is_file()
