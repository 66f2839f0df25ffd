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

from arbframe import Balance, BookLevel, Order, OrderBook, OrderStatus, OrderType, ProtocolError, Side

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


def _field_error(exchange: str, client_id: str, name: str, value: Any, what: str) -> Exception:
    return ProtocolError(f"{exchange}: order {client_id or '?'}: field {name!r} is not {what}: {value!r:.60}",
                         exchange=exchange, endpoint="/api/v3/order")


def _num(payload: Mapping[str, Any], name: str, exchange: str, client_id: str) -> Decimal:
    """A decimal field, sent as a string (Binance's form) or as a JSON number; missing or empty means 0."""
    value = payload.get(name)
    if value is None or value == "":
        return ZERO
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _field_error(exchange, client_id, name, value, "a number")
    try:
        out = _D(value) if isinstance(value, (str, int)) else _D(repr(value))
    except ArithmeticError:  # decimal.InvalidOperation
        raise _field_error(exchange, client_id, name, value, "a number") from None
    if not out.is_finite():
        raise _field_error(exchange, client_id, name, value, "a finite number")
    return out


def _text(payload: Mapping[str, Any], name: str, default: str, exchange: str, client_id: str) -> str:
    value = payload.get(name, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise _field_error(exchange, client_id, name, value, "a string")
    return value


def _ms(payload: Mapping[str, Any], exchange: str, client_id: str) -> datetime:
    for name in ("transactTime", "updateTime", "time"):
        value = payload.get(name)
        if value is None or value == "":
            continue
        ms = _num(payload, name, exchange, client_id)
        try:
            return datetime.fromtimestamp(float(ms) / 1000.0, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise _field_error(exchange, client_id, name, value, "a time in ms") from None
    return datetime.now(timezone.utc)


def order_fees(payload: Mapping[str, Any], *, exchange: str = "binance",
               client_id: str = "") -> list[tuple[str, Decimal]]:
    """Commission per asset over the ``fills``, in the order the assets first appear (all of them kept)."""
    fees: dict[str, Decimal] = {}
    fills = payload.get("fills") or ()
    if not isinstance(fills, (list, tuple)):
        raise _field_error(exchange, client_id, "fills", fills, "a list")
    for fill in fills:
        if not isinstance(fill, Mapping):
            raise _field_error(exchange, client_id, "fills", fill, "a list of objects")
        asset = _text(fill, "commissionAsset", "", exchange, client_id)
        fees[asset] = fees.get(asset, ZERO) + _num(fill, "commission", exchange, client_id)
    return list(fees.items())


def parse_order(payload: Mapping[str, Any], symbol: str, *, exchange: str = "binance",
                position_id: str | None = None) -> Order:
    """An order answer as a kernel :class:`Order` (``id`` = the client order id, stable across look-ups).

    Numbers are taken as strings (Binance's form) or JSON numbers; a field of another type raises
    :class:`arbframe.ProtocolError` naming it. A fee paid in several assets (BNB until it runs out, then the received
    asset) is kept whole: ``fee``/``fee_currency`` are the first asset, ``Order.fees`` lists every one.
    """
    if not isinstance(payload, Mapping):
        raise _field_error(exchange, "", "(answer)", payload, "an object")
    client_id = payload.get("origClientOrderId") or payload.get("clientOrderId") or ""
    if not isinstance(client_id, str):
        raise _field_error(exchange, "", "clientOrderId", client_id, "a string")
    executed = _num(payload, "executedQty", exchange, client_id)
    cum_quote = _num(payload, "cummulativeQuoteQty", exchange, client_id)
    orig_qty = _num(payload, "origQty", exchange, client_id)
    price = _num(payload, "price", exchange, client_id)
    order_type = (OrderType.LIMIT if _text(payload, "type", "LIMIT", exchange, client_id).startswith("LIMIT")
                  else OrderType.MARKET)
    side = _text(payload, "side", "", exchange, client_id)
    status = _text(payload, "status", "NEW", exchange, client_id)
    fees = order_fees(payload, exchange=exchange, client_id=client_id)
    fee_currency, fee = fees[0] if fees else ("", ZERO)
    order_id = payload.get("orderId")
    if order_id is not None and (isinstance(order_id, bool) or not isinstance(order_id, (int, str))):
        raise _field_error(exchange, client_id, "orderId", order_id, "an id")
    return Order(
        id=client_id or str(order_id if order_id is not None else ""),
        ts=_ms(payload, exchange, client_id),
        exchange=exchange,
        symbol=symbol,
        side=Side.BUY if side == "BUY" else Side.SELL,
        order_type=order_type,
        qty=orig_qty,
        price=price if price > 0 else None,
        status=order_status(status),
        filled_qty=executed,
        avg_price=(cum_quote / executed) if executed > 0 else None,
        fee=fee,
        fee_currency=fee_currency,
        position_id=position_id,
        client_order_id=client_id or None,
        exchange_order_id=str(order_id) if order_id is not None else None,
        fees=tuple(fees) if len(fees) > 1 else (),
    )


def parse_balances(payload: Mapping[str, Any]) -> dict[str, Balance]:
    """``GET /api/v3/account`` -> free and locked per asset (assets with both 0 left out)."""
    out: dict[str, Balance] = {}
    for row in payload.get("balances", ()):
        free = _D(str(row.get("free") or "0"))
        locked = _D(str(row.get("locked") or "0"))
        if free > 0 or locked > 0:
            out[str(row["asset"]).upper()] = Balance(free, locked)
    return out
