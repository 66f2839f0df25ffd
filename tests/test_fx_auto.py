"""``fx.source: auto`` (the default): static in mock mode and backtests, the forex quotation on real markets."""

from __future__ import annotations

from arbframe.kernel.config import fx_source_name, load_config, selected_drivers


def test_auto_picks_static_offline_and_forex_on_real_markets() -> None:
    assert fx_source_name(load_config([])) == "static"  # the defaults run in mock mode
    real = load_config([], overrides={"mock_mode": False})
    assert fx_source_name(real) == "forex" and selected_drivers(real)["fx"] == [("forex", "fx.source")]
    assert fx_source_name(load_config([], overrides={"mock_mode": False, "mode": "backtest"})) == "static"
    explicit = load_config([], overrides={"mock_mode": False, "fx": {"source": "exchange"}})
    assert fx_source_name(explicit) == "exchange"
