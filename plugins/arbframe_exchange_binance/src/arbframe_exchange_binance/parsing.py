"""Binance payloads -> kernel models, with exact decimals (prices and quantities arrive as strings).

Shapes (Binance spot API documentation):

* ``GET /api/v3/depth`` and the partial depth stream ``<symbol>@depth<5|10|20>[@100ms]``:
  ``{"lastUpdateId": 160, "bids": [["0.0024", "10"]], "asks": [["0.0026", "100"]]}`` (best first).
* ``GET /api/v3/ticker/bookTicker``: ``{"symbol", "bidPrice", "bidQty", "askPrice", "askQty"}``.
* ``<symbol>@bookTicker`` stream: ``{"u": 400900217, "s": "BNBUSDT", "b", "B", "a", "A"}``.
* Orders (``POST/GET/DELETE /api/v3/order``, ``GET /api/v3/openOrders``): ``symbol``, ``orderId``,
  ``clientOrderId`` (``origClientOrderId`` on cancel), ``price``, ``origQty``, ``executedQty``,
  ``cummulativeQuoteQty``, ``status``, ``type``, ``side``, ``time``/``transactTime``/``updateTime``, ``fills``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from arbframe import BookLevel, Order, OrderBook, OrderStatus, OrderType, Quote, Side

ZERO = Decimal(0)
_D = Decimal
_new = object.__new__
_set = object.__setattr__

#: Interned levels: consecutive snapshots of a book repeat most of their ``[price, qty]`` rows (a partial depth
#: stream resends all 20 levels every 100 ms), and BookLevel/Decimal are immutable, so a row seen before is
#: served from here instead of being parsed again: price string -> {qty string -> BookLevel}. Bounded: cleared
#: when it holds ``_CACHE_MAX`` levels.
_BY_PRICE: dict[str, dict[str, BookLevel]] = {}
_CACHE_MAX = 50_000
_cached = 0


def _level(price: str, qty: str) -> BookLevel:
    # BookLevel is a frozen slots dataclass; building it without the generated __init__ halves the cost.
    lvl = _new(BookLevel)
    _set(lvl, "price", _D(price))
    _set(lvl, "qty", _D(qty))
    return lvl


def _miss(price: str, qty: str) -> BookLevel:
    global _cached
    if _cached >= _CACHE_MAX:
        _BY_PRICE.clear()
        _cached = 0
    by_qty = _BY_PRICE.get(price)
    lvl = _new(BookLevel)
    if by_qty:  # the price is known (with another size): share its Decimal
        _set(lvl, "price", next(iter(by_qty.values())).price)
    else:
        _set(lvl, "price", _D(price))
        if by_qty is None:
            by_qty = _BY_PRICE[price] = {}
    _set(lvl, "qty", _D(qty))
    by_qty[qty] = lvl
    _cached += 1
    return lvl


def levels(rows: Sequence[Sequence[str]], depth: int | None = None) -> tuple[BookLevel, ...]:
    """``[["price", "qty"], ...]`` -> BookLevels (exact decimals), keeping at most ``depth`` rows."""
    if depth is not None and len(rows) > depth:
        rows = rows[:depth]
    get = _BY_PRICE.get
    out = []
    append = out.append
    for price, qty in rows:  # Binance rows are exactly [price, qty]; anything else raises ValueError
        by_qty = get(price)
        if by_qty is not None:
            lvl = by_qty.get(qty)
            if lvl is not None:
                append(lvl)
                continue
        append(_miss(price, qty))
    return tuple(out)


def clear_level_cache() -> None:
    global _cached
    _BY_PRICE.clear()
    _cached = 0


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def ms_to_dt(ms: int | float | None) -> datetime:
    if ms is None:
        return datetime.now(timezone.utc)
    return datetime.fromtimestamp(ms / 1000.0, tz=timezone.utc)


def depth_to_book(payload: Mapping[str, Any], symbol: str, ts: datetime, *, depth: int | None = None,
                  exchange: str = "binance", simulated: bool = False) -> OrderBook:
    """A depth snapshot (REST or partial depth stream) as an :class:`OrderBook`."""
    return OrderBook(exchange, symbol, levels(payload["bids"], depth), levels(payload["asks"], depth), ts,
                     simulated)


def book_ticker_to_book(payload: Mapping[str, Any], symbol: str, ts: datetime, *,
                        exchange: str = "binance") -> OrderBook:
    """A book ticker (REST long keys or stream short keys) as a one-level :class:`OrderBook`."""
    if "bidPrice" in payload:
        bid, bid_q, ask, ask_q = payload["bidPrice"], payload["bidQty"], payload["askPrice"], payload["askQty"]
    else:
        bid, bid_q, ask, ask_q = payload["b"], payload["B"], payload["a"], payload["A"]
    bids = (_level(bid, bid_q),) if _D(bid_q) > 0 else ()
    asks = (_level(ask, ask_q),) if _D(ask_q) > 0 else ()
    return OrderBook(exchange, symbol, bids, asks, ts)


def book_ticker_to_quote(payload: Mapping[str, Any], symbol: str, ts: datetime, *,
                         exchange: str = "binance") -> Quote:
    book = book_ticker_to_book(payload, symbol, ts, exchange=exchange)
    quote = book.quote()
    if quote is None:
        raise ValueError(f"{exchange}: empty book ticker for {symbol}")
    return quote


_STATUS = {
    "NEW": OrderStatus.OPEN,
    "PENDING_NEW": OrderStatus.OPEN,
    "PARTIALLY_FILLED": OrderStatus.PARTIALLY_FILLED,
    "FILLED": OrderStatus.FILLED,
    "CANCELED": OrderStatus.CANCELED,
    "PENDING_CANCEL": OrderStatus.CANCELED,
    "EXPIRED": OrderStatus.CANCELED,
    "EXPIRED_IN_MATCH": OrderStatus.CANCELED,
    "REJECTED": OrderStatus.REJECTED,
}


def order_status(status: str) -> OrderStatus:
    return _STATUS.get(status, OrderStatus.OPEN)


def parse_order(payload: Mapping[str, Any], symbol: str, *, exchange: str = "binance",
                position_id: str | None = None) -> Order:
    """An order answer as a kernel :class:`Order` (``id`` = the client order id, stable across look-ups)."""
    client_id = payload.get("origClientOrderId") or payload.get("clientOrderId") or ""
    executed = _D(payload.get("executedQty") or "0")
    cum_quote = _D(payload.get("cummulativeQuoteQty") or "0")
    orig_qty = _D(payload.get("origQty") or "0")
    price = _D(payload.get("price") or "0")
    order_type = OrderType.LIMIT if payload.get("type", "LIMIT").startswith("LIMIT") else OrderType.MARKET
    fee = ZERO
    fee_currency = ""
    for fill in payload.get("fills") or ():
        asset = fill.get("commissionAsset", "")
        if not fee_currency:
            fee_currency = asset
        if asset == fee_currency:
            fee += _D(fill.get("commission") or "0")
    if executed == 0 and orig_qty == 0 and payload.get("origQuoteOrderQty"):
        orig_qty = ZERO
    ts_ms = payload.get("transactTime") or payload.get("updateTime") or payload.get("time")
    return Order(
        id=client_id or str(payload.get("orderId", "")),
        ts=ms_to_dt(ts_ms),
        exchange=exchange,
        symbol=symbol,
        side=Side.BUY if payload.get("side") == "BUY" else Side.SELL,
        order_type=order_type,
        qty=orig_qty,
        price=price if price > 0 else None,
        status=order_status(payload.get("status", "NEW")),
        filled_qty=executed,
        avg_price=(cum_quote / executed) if executed > 0 else None,
        fee=fee,
        fee_currency=fee_currency,
        position_id=position_id,
        client_order_id=client_id or None,
        exchange_order_id=str(payload["orderId"]) if payload.get("orderId") is not None else None,
    )
