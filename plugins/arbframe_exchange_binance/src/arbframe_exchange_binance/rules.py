"""Symbol rules from ``GET /api/v3/exchangeInfo`` and client-side order preparation.

Filters used (Binance spot "Filters" documentation):

* ``PRICE_FILTER``: ``minPrice`` / ``maxPrice`` / ``tickSize`` (each disabled when 0); ``price % tickSize == 0``.
* ``LOT_SIZE``: ``minQty`` / ``maxQty`` / ``stepSize``; ``(quantity - minQty) % stepSize == 0``.
* ``MARKET_LOT_SIZE``: the same for MARKET orders (``stepSize`` 0 -> use LOT_SIZE's step).
* ``NOTIONAL``: ``minNotional`` (``applyMinToMarket``) and ``maxNotional`` (``applyMaxToMarket``).
* ``MIN_NOTIONAL``: the older form, ``minNotional`` with ``applyToMarket``.

Quantities are rounded down to the step, limit prices to the tick on the side that keeps the caller's limit
(a buy never pays more than asked, a sell never receives less); then the order is validated and a
:class:`arbframe.OrderRejected` (``filter_type``) names the filter it breaks, before anything is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal
from typing import Any

from arbframe import MarketRules, OrderRequest, OrderType, Side
from arbframe_exchange_binance.errors import filter_error

ZERO = Decimal(0)


@dataclass(frozen=True)
class SymbolRules:
    market: str  # BTCUSDT
    base: str  # BTC
    quote: str  # USDT
    status: str = "TRADING"
    tick_size: Decimal = ZERO
    min_price: Decimal = ZERO
    max_price: Decimal = ZERO
    step_size: Decimal = ZERO
    min_qty: Decimal = ZERO
    max_qty: Decimal = ZERO
    market_step_size: Decimal = ZERO
    market_min_qty: Decimal = ZERO
    market_max_qty: Decimal = ZERO
    min_notional: Decimal = ZERO
    max_notional: Decimal = ZERO
    min_notional_applies_to_market: bool = True
    max_notional_applies_to_market: bool = False
    quote_precision: int = 8
    order_types: tuple[str, ...] = ()

    def market_rules(self, symbol: str) -> MarketRules:
        return MarketRules(
            symbol=symbol,
            tick_size=self.tick_size if self.tick_size > 0 else None,
            step_size=self.step_size,
            min_qty=self.min_qty,
            min_notional=self.min_notional,
        )


def _d(value: Any) -> Decimal:
    """Exact decimal without trailing zeros (``"0.01000000"`` -> ``0.01``, ``"10.000"`` -> ``10``)."""
    if value is None or value == "":
        return ZERO
    out = (value if isinstance(value, Decimal) else Decimal(str(value))).normalize()
    return out.quantize(Decimal(1)) if out.as_tuple().exponent > 0 else out  # type: ignore[operator]


def parse_symbol(entry: Mapping[str, Any]) -> SymbolRules:
    """One element of ``exchangeInfo["symbols"]``."""
    kw: dict[str, Any] = {}
    for f in entry.get("filters", ()):
        kind = f.get("filterType")
        if kind == "PRICE_FILTER":
            kw.update(tick_size=_d(f.get("tickSize")), min_price=_d(f.get("minPrice")),
                      max_price=_d(f.get("maxPrice")))
        elif kind == "LOT_SIZE":
            kw.update(step_size=_d(f.get("stepSize")), min_qty=_d(f.get("minQty")), max_qty=_d(f.get("maxQty")))
        elif kind == "MARKET_LOT_SIZE":
            kw.update(market_step_size=_d(f.get("stepSize")), market_min_qty=_d(f.get("minQty")),
                      market_max_qty=_d(f.get("maxQty")))
        elif kind == "NOTIONAL":
            kw.update(min_notional=_d(f.get("minNotional")), max_notional=_d(f.get("maxNotional")),
                      min_notional_applies_to_market=bool(f.get("applyMinToMarket", True)),
                      max_notional_applies_to_market=bool(f.get("applyMaxToMarket", False)))
        elif kind == "MIN_NOTIONAL" and "min_notional" not in kw:
            kw.update(min_notional=_d(f.get("minNotional")),
                      min_notional_applies_to_market=bool(f.get("applyToMarket", True)))
    return SymbolRules(
        market=entry["symbol"],
        base=entry.get("baseAsset", ""),
        quote=entry.get("quoteAsset", ""),
        status=entry.get("status", "TRADING"),
        quote_precision=int(entry.get("quoteAssetPrecision", entry.get("quotePrecision", 8))),
        order_types=tuple(entry.get("orderTypes", ())),
        **kw,
    )


def parse_exchange_info(payload: Mapping[str, Any]) -> tuple[dict[str, SymbolRules], dict[str, int]]:
    """``(rules by market name, limits)``; limits: ``weight_per_minute``, ``orders_per_10s``, ``orders_per_day``."""
    rules = {s["symbol"]: parse_symbol(s) for s in payload.get("symbols", ())}
    limits: dict[str, int] = {}
    for rl in payload.get("rateLimits", ()):
        kind, interval, num, limit = (rl.get("rateLimitType"), rl.get("interval"), rl.get("intervalNum", 1),
                                      rl.get("limit"))
        if kind == "REQUEST_WEIGHT" and interval == "MINUTE" and num == 1:
            limits["weight_per_minute"] = int(limit)
        elif kind == "ORDERS" and interval == "SECOND" and num == 10:
            limits["orders_per_10s"] = int(limit)
        elif kind == "ORDERS" and interval == "DAY" and num == 1:
            limits["orders_per_day"] = int(limit)
    return rules, limits


def _on_step(value: Decimal, step: Decimal, rounding: str, origin: Decimal = ZERO) -> Decimal:
    if step <= 0:
        return value
    units = ((value - origin) / step).to_integral_value(rounding=rounding)
    out = origin + units * step
    return out.quantize(step) if step.as_tuple().exponent < 0 else out  # type: ignore[operator]


def fmt(value: Decimal) -> str:
    """A decimal as Binance wants it: plain notation, no exponent, no trailing zeros."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


@dataclass(frozen=True)
class PreparedOrder:
    """The parameters of ``POST /api/v3/order`` after rounding and validation (strings, as sent)."""

    params: dict[str, str]
    qty: Decimal | None
    price: Decimal | None
    quote_amount: Decimal | None


def prepare_order(req: OrderRequest, rules: SymbolRules, *, reference_price: Decimal | None = None) -> PreparedOrder:
    """Round ``req`` to the symbol's grid and check every filter; raises :class:`arbframe.OrderRejected`.

    ``reference_price`` (e.g. the current best price) is used to check the notional of MARKET orders. A LIMIT
    order carries ``req.time_in_force`` (``GTC``, ``IOC``, ``FOK``) as ``timeInForce``.
    """
    if rules.status != "TRADING":
        raise filter_error(f"{rules.market} is not trading (status {rules.status})", "STATUS")
    params: dict[str, str] = {
        "symbol": rules.market,
        "side": "BUY" if req.side is Side.BUY else "SELL",
        "type": "LIMIT" if req.order_type is OrderType.LIMIT else "MARKET",
    }
    qty: Decimal | None = None
    price: Decimal | None = None
    quote_amount: Decimal | None = None
    if req.order_type is OrderType.LIMIT:
        if req.price is None or req.qty is None:
            raise filter_error("a LIMIT order needs price and qty", "PARAMS")
        if req.time_in_force not in ("GTC", "IOC", "FOK"):
            raise filter_error(f"timeInForce {req.time_in_force!r} is not GTC, IOC or FOK", "PARAMS")
        rounding = ROUND_FLOOR if req.side is Side.BUY else ROUND_CEILING
        price = _on_step(req.price, rules.tick_size, rounding)
        origin = rules.min_qty if req.qty >= rules.min_qty else ZERO
        qty = _on_step(req.qty, rules.step_size, ROUND_DOWN, origin)
        _check_price(price, rules)
        _check_qty(qty, rules.min_qty, rules.max_qty, "LOT_SIZE", rules)
        _check_notional(price * qty, rules, market=False)
        params.update(timeInForce=req.time_in_force, quantity=fmt(qty), price=fmt(price))
    else:
        if req.quote_amount is not None and req.qty is None:
            if req.side is not Side.BUY:
                raise filter_error("quote_amount is for MARKET buys", "PARAMS")
            quote_amount = req.quote_amount.quantize(Decimal(1).scaleb(-rules.quote_precision), ROUND_DOWN)
            if quote_amount <= 0:
                raise filter_error("quote amount rounds to zero", "NOTIONAL")
            _check_notional(quote_amount, rules, market=True)
            params["quoteOrderQty"] = fmt(quote_amount)
        else:
            if req.qty is None:
                raise filter_error("a MARKET order needs qty or quote_amount", "PARAMS")
            step = rules.market_step_size if rules.market_step_size > 0 else rules.step_size
            min_q = rules.market_min_qty if rules.market_min_qty > 0 else rules.min_qty
            qty = _on_step(req.qty, step, ROUND_DOWN, min_q if req.qty >= min_q else ZERO)
            max_q = rules.market_max_qty if rules.market_max_qty > 0 else rules.max_qty
            _check_qty(qty, min_q, max_q, "MARKET_LOT_SIZE" if rules.market_step_size > 0 else "LOT_SIZE", rules)
            ref = reference_price if reference_price is not None else req.price
            if ref is not None:
                _check_notional(ref * qty, rules, market=True)
            params["quantity"] = fmt(qty)
    params["newClientOrderId"] = req.client_order_id
    return PreparedOrder(params=params, qty=qty, price=price, quote_amount=quote_amount)


def _check_price(price: Decimal, r: SymbolRules) -> None:
    if price <= 0:
        raise filter_error(f"{r.market}: price rounds to {price}", "PRICE_FILTER")
    if r.min_price > 0 and price < r.min_price:
        raise filter_error(f"{r.market}: price {price} < minPrice {r.min_price}", "PRICE_FILTER")
    if r.max_price > 0 and price > r.max_price:
        raise filter_error(f"{r.market}: price {price} > maxPrice {r.max_price}", "PRICE_FILTER")


def _check_qty(qty: Decimal, min_q: Decimal, max_q: Decimal, name: str, r: SymbolRules) -> None:
    if qty <= 0 or (min_q > 0 and qty < min_q):
        raise filter_error(f"{r.market}: quantity {qty} < minQty {min_q}", name)
    if max_q > 0 and qty > max_q:
        raise filter_error(f"{r.market}: quantity {qty} > maxQty {max_q}", name)


def _check_notional(notional: Decimal, r: SymbolRules, *, market: bool) -> None:
    if r.min_notional > 0 and notional < r.min_notional and (not market or r.min_notional_applies_to_market):
        raise filter_error(f"{r.market}: notional {notional} < minNotional {r.min_notional}", "NOTIONAL")
    if r.max_notional > 0 and notional > r.max_notional and (not market or r.max_notional_applies_to_market):
        raise filter_error(f"{r.market}: notional {notional} > maxNotional {r.max_notional}", "NOTIONAL")
