"""The ``exchange`` FX source's section is ``fx.exchange`` (the kernel's one rule); the older spelling
``fx.exchange_market`` / ``fx.exchange_price`` is still read, with a warning."""

from __future__ import annotations

import logging

import pytest
from arbframe_exchange_upbit.fx import UpbitFxSource

from arbframe import ConfigError
from arbframe.testing.plugin_harness import PluginHarness


def _source(fx: dict) -> UpbitFxSource:
    harness = PluginHarness.from_config({"fx": {"source": "exchange", **fx}}, mock=False, env={})
    source = harness.kernel.load_fx_source()
    assert isinstance(source, UpbitFxSource)
    return source


def test_own_section() -> None:
    source = _source({"exchange": {"market": "KRW-USDC", "price": "bid"}})
    assert (source.market, source.price) == ("KRW-USDC", "bid")
    assert (_source({}).market, _source({}).price) == ("KRW-USDT", "mid")  # schema defaults


def test_a_bad_value_names_its_key_path() -> None:
    with pytest.raises(ConfigError) as info:
        PluginHarness.from_config({"fx": {"source": "exchange", "exchange": {"price": "close"}}}, mock=False, env={})
    assert "fx.exchange.price" in str(info.value)


def test_the_older_spelling_is_still_read(caplog) -> None:
    caplog.set_level(logging.WARNING)
    source = _source({"exchange_market": "KRW-USDC", "exchange_price": "ask"})
    assert (source.market, source.price) == ("KRW-USDC", "ask")
    assert any("fx.exchange.market" in r.getMessage() for r in caplog.records)
    # the new spelling wins over the old
    assert _source({"exchange_price": "ask", "exchange": {"price": "bid"}}).price == "bid"
