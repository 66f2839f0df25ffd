"""VenueRouting: one rule for where every exchange plugin sends market data, balances and orders."""

from __future__ import annotations

import logging
from decimal import Decimal
from pathlib import Path

import pytest

from arbframe import MarketRules, PluginContext, SimulatedAccount, SimulatedExchange, VenueRouting, paper_balances


def routing(tmp_path: Path, *, mode: str, mock: bool, keys: bool) -> VenueRouting:
    from prometheus_client import CollectorRegistry

    ctx = PluginContext(config={"paper": {"balances": {"acme": {"KRW": 1000}}}}, pm=None, registry=CollectorRegistry(),
                        data_dir=tmp_path, mode=mode, mock=mock)
    return VenueRouting(
        "acme", context=ctx, quote_currency="KRW", fee_rate=Decimal("0.001"),
        balances=paper_balances("acme", ctx, {}) or {}, api_key="k" if keys else None,
        api_secret="s" if keys else None, base_url="https://acme.example", symbols=["BTC"],
        last_book=lambda symbol: None, rules=lambda s: MarketRules(s, Decimal(1), Decimal("0.0001")),
        log=logging.getLogger("test.venue"),
    )


def test_mock_mode_uses_the_simulated_exchange(tmp_path: Path) -> None:
    r = routing(tmp_path, mode="live", mock=True, keys=True)
    assert not r.live_private
    assert isinstance(r.private_backend(), SimulatedExchange)
    assert r.context.market is not None
    assert r.describe("AcmeExchange") == "AcmeExchange(mock: SimulatedExchange)"


@pytest.mark.parametrize(("mode", "keys"), [("paper", True), ("live", False), ("paper", False)])
def test_without_live_and_keys_private_calls_are_simulated(tmp_path: Path, mode: str, keys: bool) -> None:
    r = routing(tmp_path, mode=mode, mock=False, keys=keys)
    assert isinstance(r.private_backend(), SimulatedAccount)
    assert r.describe("AcmeExchange").endswith("private: SimulatedAccount)")


def test_live_with_keys_goes_to_the_venue_and_says_so_without_the_key(tmp_path: Path, caplog) -> None:
    r = routing(tmp_path, mode="live", mock=False, keys=True)
    assert r.live_private and r.private_backend() is None
    with caplog.at_level(logging.WARNING):
        r.announce()
    assert "LIVE" in caplog.text and "key *** go to https://acme.example" in caplog.text


def test_paper_balances_prefer_the_section() -> None:
    assert paper_balances("acme", None, {"simulated_balances": {"KRW": 5}}) == {"KRW": 5}
    assert paper_balances("acme", None, {}) is None
