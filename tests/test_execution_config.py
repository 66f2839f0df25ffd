"""The ``live`` config section: schema-validated (exit 2 naming the key path), the defaults file and the typed
LiveConfig agree, limits exported as gauges, entry blocks from limits and reserves."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from prometheus_client import CollectorRegistry

from arbframe.cli import main
from arbframe.core.errors import ConfigError
from arbframe.core.models import Side
from arbframe.execution.config import LiveConfig, RiskLimits
from arbframe.execution.risk import ExecutionMetrics, RiskGuard
from arbframe.kernel.config import load_config


@pytest.mark.parametrize(("live", "path"), [
    ({"max_slippage_bps": -1}, "live.max_slippage_bps"),
    ({"hedge_timeout_seconds": 0}, "live.hedge_timeout_seconds"),
    ({"limits": {"max_open_postions": 3}}, "live.limits.max_open_postions"),
    ({"limits": {"max_consecutive_failures": 0}}, "live.limits.max_consecutive_failures"),
    ({"dry_run": "yes"}, "live.dry_run"),
])
def test_bad_live_keys_name_their_path(live, path) -> None:
    with pytest.raises(ConfigError, match=path.replace(".", r"\.")) as err:
        load_config([], overrides={"live": live})
    assert err.value.exit_status == 2


def test_bad_live_key_exits_2_with_one_line(tmp_path, capsys) -> None:
    config = tmp_path / "bad.yml"
    config.write_text("live:\n  max_residual_krw: -5\n")
    assert main(["config", "validate", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "live.max_residual_krw" in err[0]


def test_defaults_file_and_typed_config_agree() -> None:
    assert LiveConfig.from_config(load_config([])) == LiveConfig()
    cfg = LiveConfig.from_config({"live": {"reconcile_interval_minutes": 2, "max_slippage_bps": 15,
                                           "limits": {"max_open_positions": None,
                                                      "min_reserve": {"upbit": {"krw": 100000}}}}})
    assert cfg.reconcile_interval_seconds == 120 and cfg.max_slippage_bps == D(15)
    assert cfg.limits.max_open_positions is None and cfg.limits.min_reserve == {"upbit": {"KRW": D(100000)}}


def test_limits_are_gauges_and_block_entries_with_a_reason() -> None:
    registry = CollectorRegistry()
    limits = RiskLimits(max_order_notional_krw=D(1_000_000), max_symbol_notional_krw=D(1_500_000),
                        max_total_notional_krw=D(1_800_000), max_open_positions=2,
                        min_reserve={"upbit": {"KRW": D(500_000)}})
    guard = RiskGuard(LiveConfig(limits=limits), ExecutionMetrics.get(registry))
    value = registry.get_sample_value
    assert value("arbframe_risk_limit", {"limit": "max_open_positions"}) == 2
    assert value("arbframe_risk_limit", {"limit": "max_total_notional_krw"}) == 1_800_000
    assert value("arbframe_risk_min_reserve", {"venue": "upbit", "asset": "KRW"}) == 500_000
    assert guard.entry_block("BTC", D(1)) == "reconciliation has not run yet"
    assert value("arbframe_execution_entries_paused") == 1
    guard.reconciling = None
    guard.publish()

    class Pos:
        def __init__(self, symbol, qty, price):
            self.symbol, self.qty, self.entry_domestic_price = symbol, D(qty), D(price)

    class Wallet:
        def __init__(self, free):
            self.free = free

        def get(self, asset):
            return self.free.get(asset, D(0))

    assert "max_order_notional_krw" in guard.entry_block("BTC", D(1_000_001))
    one = [Pos("BTC", "0.01", "100000000")]  # 1,000,000 KRW open on BTC
    assert "max_symbol_notional_krw" in guard.entry_block("BTC", D(600_000), positions=one)
    assert guard.entry_block("ETH", D(600_000), positions=one) is None
    assert "max_total_notional_krw" in guard.entry_block("ETH", D(1_000_000), positions=one)
    assert "max_open_positions" in guard.entry_block("ETH", D(1), positions=one * 2)
    wallets = {"upbit": Wallet({"KRW": D(1_200_000)})}
    buy = [("upbit", Side.BUY, D("0.008"), D("100000000"), "KRW")]  # 800,000 KRW leaves 400,000 < 500,000
    assert "min_reserve" in guard.entry_block("BTC", D(800_000), legs=buy, wallets=wallets)
    small = [("upbit", Side.BUY, D("0.007"), D("100000000"), "KRW")]  # leaves exactly 500,000
    assert guard.entry_block("BTC", D(700_000), legs=small, wallets=wallets) is None
    assert value("arbframe_execution_entries_paused") == 0
