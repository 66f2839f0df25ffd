"""Upbit JSON -> kernel models, with exact decimals.

Upbit writes prices and sizes as JSON numbers in market data (REST and WebSocket) and as strings in private
data (accounts, orders). Bodies are decoded with ``parse_float=Decimal`` so no value ever passes through a
binary float. WebSocket messages come in the DEFAULT format (``orderbook_units``, ``ask_price``...) or the
SIMPLE one (``obu``, ``ap``...); both are parsed.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from operator import itemgetter
from typing import Any

from arbframe import BookLevel, Order, OrderBook, OrderStatus, OrderType, Side

from .errors import UpbitProtocolError

__all__ = [
    "QUOTE",
    "book_from_units",
    "dec",
    "loads",
    "market_for",
    "parse_accounts",
    "parse_order",
    "parse_rest_orderbook",
    "parse_ws_message",
    "symbol_for",
    "ws_count",
]

QUOTE = "KRW"
_UTC = timezone.utc
_ZERO = Decimal(0)
_decoder = json.JSONDecoder(parse_float=Decimal, parse_int=Decimal)
_decode = _decoder.decode
_WS_COUNTS = (1, 5, 15, 30)


def loads(data: str | bytes) -> Any:
    """Decode JSON with exact decimals; raises :class:`UpbitProtocolError` on malformed input."""
    try:
        if isinstance(data, (bytes, bytearray, memoryview)):
            data = bytes(data).decode("utf-8")
        return _decode(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UpbitProtocolError(f"malformed JSON: {exc}") from None


def dec(value: Any) -> Decimal:
    """A Decimal from a JSON number or numeric string (floats via their shortest repr)."""
    if value.__class__ is Decimal:
        return value
    if value is None or value == "":
        return _ZERO
    try:
        if isinstance(value, float):
            return Decimal(repr(value))
        return Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise UpbitProtocolError(f"not a number: {value!r}") from None


def market_for(symbol: str, quote: str = QUOTE) -> str:
    """``BTC`` -> ``KRW-BTC`` (a full market name passes through)."""
    return symbol if "-" in symbol else f"{quote}-{symbol}"


def symbol_for(market: str) -> str:
    """``KRW-BTC`` -> ``BTC``."""
    return market.split("-", 1)[1] if "-" in market else market


def ws_count(depth: int) -> int:
    """The smallest WebSocket orderbook unit count Upbit supports that covers ``depth``."""
    for count in _WS_COUNTS:
        if depth <= count:
            return count
    return _WS_COUNTS[-1]


def _ts_ms(ms: Any) -> datetime:
    try:
        return datetime.fromtimestamp(int(ms) / 1000.0, _UTC)
    except (TypeError, ValueError, OverflowError):
        raise UpbitProtocolError(f"bad timestamp {ms!r}") from None


def _make_levels():
    """A builder of BookLevel tuples that fills the slots directly instead of going through the frozen
    dataclass's generated ``__init__`` (about twice as fast); checked once against the plain constructor.
    (Reusing levels through a dict keyed by (price, qty) was tried and is slower: hashing fresh Decimals costs
    more than building the level.)"""
    new = object.__new__
    cls = BookLevel
    try:
        set_price = cls.__dict__["price"].__set__
        set_qty = cls.__dict__["qty"].__set__

        def levels(pairs: list) -> tuple:
            out = []
            append = out.append
            for price, qty in pairs:
                level = new(cls)
                set_price(level, price)
                set_qty(level, qty)
                append(level)
            return tuple(out)

        one = levels([(Decimal("1.5"), Decimal("2"))])[0]
        ref = BookLevel(Decimal("1.5"), Decimal("2"))
        if one == ref and hash(one) == hash(ref) and repr(one) == repr(ref):
            return levels
    except (KeyError, AttributeError, TypeError):  # pragma: no cover - a kernel BookLevel without slots
        pass

    def plain(pairs: list) -> tuple:  # pragma: no cover
        return tuple([BookLevel(p, q) for p, q in pairs])

    return plain


_levels = _make_levels()
_D = Decimal
_first = itemgetter(0)
_second = itemgetter(1)


def _exact(pairs: list) -> list:
    return [(dec(p), dec(q)) for p, q in pairs]


def book_from_units(exchange: str, symbol: str, units: list, ts: datetime, depth: int,
                    ap: str, aq: str, bp: str, bq: str, simulated: bool = False) -> OrderBook:
    """Build a book from Upbit's paired units (each unit holds one ask and one bid level).

    Numbers decoded by :func:`loads` are already Decimals; anything else is converted exactly. Levels with a
    zero size are dropped; each side is sorted best first."""
    if len(units) > depth:
        units = units[:depth]
    bids = [(u[bp], u[bq]) for u in units]
    asks = [(u[ap], u[aq]) for u in units]
    # loads() decodes every JSON number as a Decimal, so checking the first pair of each side is enough
    if bids and (bids[0][0].__class__ is not _D or bids[0][1].__class__ is not _D
                 or asks[0][0].__class__ is not _D or asks[0][1].__class__ is not _D):
        bids = _exact(bids)
        asks = _exact(asks)
    # a unit with an empty side (size 0): drop that level (C-level checks: Decimal truthiness)
    if not (all(map(_second, bids)) and all(map(_first, bids))):
        bids = [(p, q) for p, q in bids if q > 0 and p > 0]
    if not (all(map(_second, asks)) and all(map(_first, asks))):
        asks = [(p, q) for p, q in asks if q > 0 and p > 0]
    bids.sort(reverse=True)
    asks.sort()
    return OrderBook(exchange, symbol, _levels(bids), _levels(asks), ts, simulated)


def parse_rest_orderbook(item: dict, exchange: str, depth: int) -> OrderBook:
    """One element of ``GET /v1/orderbook``."""
    try:
        return book_from_units(exchange, symbol_for(item["market"]), item["orderbook_units"],
                               _ts_ms(item["timestamp"]), depth, "ask_price", "ask_size", "bid_price", "bid_size")
    except (KeyError, TypeError) as exc:
        raise UpbitProtocolError(f"unexpected orderbook shape: missing {exc}") from None


def parse_ws_message(msg: dict, exchange: str, depth: int) -> tuple[str, Any] | None:
    """A decoded WebSocket message -> ``("orderbook", OrderBook)`` / ``("ticker", (symbol, price, ts))`` /
    ``("status", text)`` / None for types we do not use. DEFAULT and SIMPLE formats are both accepted."""
    try:
        kind = msg.get("ty")
        if kind is not None:  # SIMPLE
            if kind == "orderbook":
                return kind, book_from_units(exchange, symbol_for(msg["cd"]), msg["obu"], _ts_ms(msg["tms"]),
                                             depth, "ap", "as", "bp", "bs")
            if kind == "ticker":
                return kind, (symbol_for(msg["cd"]), dec(msg["tp"]), _ts_ms(msg["tms"]))
            return None
        kind = msg.get("type")
        if kind == "orderbook":
            return kind, book_from_units(exchange, symbol_for(msg["code"]), msg["orderbook_units"],
                                         _ts_ms(msg["timestamp"]), depth,
                                         "ask_price", "ask_size", "bid_price", "bid_size")
        if kind == "ticker":
            return kind, (symbol_for(msg["code"]), dec(msg["trade_price"]), _ts_ms(msg["timestamp"]))
        if "status" in msg:
            return "status", msg["status"]
        return None
    except (KeyError, TypeError, AttributeError) as exc:
        raise UpbitProtocolError(f"unexpected WebSocket message shape: missing {exc}") from None


def parse_accounts(rows: Any) -> dict[str, Decimal]:
    """``GET /v1/accounts`` -> free balance per currency (``balance``; ``locked`` is excluded)."""
    if not isinstance(rows, list):
        raise UpbitProtocolError("accounts: expected a list")
    out: dict[str, Decimal] = {}
    for row in rows:
        try:
            out[str(row["currency"]).upper()] = dec(row["balance"])
        except (KeyError, TypeError) as exc:
            raise UpbitProtocolError(f"accounts: missing {exc}") from None
    return out


_SIDES = {"bid": Side.BUY, "ask": Side.SELL}


def _parse_time(text: Any) -> datetime:
    if not text:
        return datetime.now(_UTC)
    try:
        value = datetime.fromisoformat(str(text))
    except ValueError:
        raise UpbitProtocolError(f"bad created_at {text!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=_UTC)
    return value.astimezone(_UTC)


def parse_order(row: Any, exchange: str, simulated: bool = False) -> Order:
    """An Upbit order object (POST /v1/orders, GET /v1/order, GET /v1/orders/open, DELETE /v1/order)."""
    if not isinstance(row, dict):
        raise UpbitProtocolError("order: expected an object")
    try:
        uuid = str(row["uuid"])
        side = _SIDES[row["side"]]
        ord_type = row.get("ord_type", "limit")
        state = row.get("state", "wait")
        market = row["market"]
    except KeyError as exc:
        raise UpbitProtocolError(f"order: missing or bad {exc}") from None
    executed = dec(row.get("executed_volume"))
    volume = row.get("volume")
    qty = dec(volume) if volume not in (None, "") else executed
    if state in ("wait", "watch"):
        status = OrderStatus.PARTIALLY_FILLED if executed > 0 else OrderStatus.OPEN
    elif state == "done":
        status = OrderStatus.FILLED
    elif state == "cancel":
        status = OrderStatus.CANCELED
    else:
        status = OrderStatus.OPEN
    avg_price = None
    if executed > 0:
        funds = row.get("executed_funds")
        if funds not in (None, ""):
            avg_price = dec(funds) / executed
        elif row.get("trades"):
            total = sum((dec(t.get("funds")) for t in row["trades"]), _ZERO)
            vol = sum((dec(t.get("volume")) for t in row["trades"]), _ZERO)
            avg_price = total / vol if vol > 0 else None
    is_limit = ord_type == "limit"
    identifier = row.get("identifier") or None
    return Order(
        id=identifier or uuid,
        ts=_parse_time(row.get("created_at")),
        exchange=exchange,
        symbol=symbol_for(market),
        side=side,
        order_type=OrderType.LIMIT if is_limit else OrderType.MARKET,
        qty=qty,
        price=dec(row["price"]) if is_limit and row.get("price") not in (None, "") else None,
        status=status,
        filled_qty=executed,
        avg_price=avg_price,
        fee=dec(row.get("paid_fee")),
        fee_currency=market.split("-", 1)[0] if "-" in market else QUOTE,
        client_order_id=identifier,
        exchange_order_id=uuid,
        simulated=simulated,
    )
