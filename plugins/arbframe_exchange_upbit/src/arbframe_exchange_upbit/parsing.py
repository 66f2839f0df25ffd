"""Upbit JSON -> kernel models, with exact decimals.

Upbit writes prices and sizes as JSON numbers in market data (REST and WebSocket) and as strings in private
data (accounts, orders). Bodies are decoded with every JSON number turned into a Decimal straight from its
text, so no value ever passes through a binary float. WebSocket messages come in the DEFAULT format
(``orderbook_units``, ``ask_price``...) or the SIMPLE one (``obu``, ``ap``...); both are parsed.
"""

from __future__ import annotations

import functools
import json
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from operator import attrgetter, gt, lt
from typing import Any

from arbframe import Balance, BookLevel, Order, OrderBook, OrderStatus, OrderType, ProtocolError, Side

__all__ = [
    "QUOTE",
    "book_from_units",
    "dec",
    "loads",
    "market_for",
    "parse_account_details",
    "parse_accounts",
    "parse_order",
    "parse_rest_orderbook",
    "parse_ws_message",
    "symbol_for",
    "ts_ms",
    "ws_count",
]

QUOTE = "KRW"
_UTC = timezone.utc
_ZERO = Decimal(0)
#: JSON numbers -> Decimal through a bounded C-level LRU keyed by the number's text: consecutive books repeat most
#: prices and sizes, so a lookup usually replaces a conversion (Decimals are immutable, sharing them is safe).
_decimal_of_text = functools.lru_cache(maxsize=8192)(Decimal)
_decoder = json.JSONDecoder(parse_float=_decimal_of_text, parse_int=Decimal)
_decode = _decoder.decode
_scan = _decoder.scan_once
_WS_COUNTS = (1, 5, 15, 30)


def loads(data: str | bytes) -> Any:
    """Decode JSON with exact decimals; raises :class:`ProtocolError` on malformed input."""
    try:
        if data.__class__ is not str:
            data = bytes(data).decode("utf-8")
        try:  # the C scanner straight away (what JSONDecoder.decode does, minus two regex calls)
            obj, end = _scan(data, 0)
        except StopIteration:
            return _decode(data)  # leading whitespace or an error: the full decoder tells which
        if end != len(data) and data[end:].strip():
            raise ValueError(f"extra data at {end}")
        return obj
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed JSON: {exc}") from None


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
        raise ProtocolError(f"not a number: {value!r}") from None


def market_for(symbol: str, quote: str = QUOTE) -> str:
    """``BTC`` -> ``KRW-BTC`` (a full market name passes through)."""
    return symbol if "-" in symbol else f"{quote}-{symbol}"


_SYMBOLS: dict[str, str] = {}


def symbol_for(market: str) -> str:
    """``KRW-BTC`` -> ``BTC``."""
    found = _SYMBOLS.get(market)
    if found is None:
        found = market.split("-", 1)[1] if "-" in market else market
        if len(_SYMBOLS) < 4096:
            _SYMBOLS[market] = found
    return found


def ws_count(depth: int) -> int:
    """The smallest WebSocket orderbook unit count Upbit supports that covers ``depth``."""
    for count in _WS_COUNTS:
        if depth <= count:
            return count
    return _WS_COUNTS[-1]


def ts_ms(ms: Any) -> datetime:
    """Epoch milliseconds -> aware UTC datetime."""
    try:
        return datetime.fromtimestamp(int(ms) / 1000.0, _UTC)
    except (TypeError, ValueError, OverflowError):
        raise ProtocolError(f"bad timestamp {ms!r}") from None


def _slot_setters(cls: type, names: tuple[str, ...]) -> list | None:
    """The slot descriptors' setters of a frozen slotted dataclass (None when it has no such slots)."""
    try:
        return [cls.__dict__[n].__set__ for n in names]
    except (KeyError, AttributeError):  # pragma: no cover - a kernel model without slots
        return None


def _make_builder():
    """Builds books by filling the slots of the frozen dataclasses directly instead of going through their
    generated ``__init__`` (which calls ``object.__setattr__`` per field): about twice as fast. Verified once
    against the plain constructors; falls back to them if anything differs."""
    new = object.__new__
    level_cls, book_cls = BookLevel, OrderBook
    lv = _slot_setters(level_cls, ("price", "qty"))
    bk = _slot_setters(book_cls, ("exchange", "symbol", "bids", "asks", "ts", "simulated"))

    def plain(exchange, symbol, units, ts, depth, ap, aq, bp, bq, simulated=False):
        if len(units) > depth:
            units = units[:depth]
        bids = [(dec(u[bp]), dec(u[bq])) for u in units]
        asks = [(dec(u[ap]), dec(u[aq])) for u in units]
        bids = sorted(((p, q) for p, q in bids if p > 0 and q > 0), reverse=True)
        asks = sorted((p, q) for p, q in asks if p > 0 and q > 0)
        return OrderBook(exchange, symbol, tuple(BookLevel(p, q) for p, q in bids),
                         tuple(BookLevel(p, q) for p, q in asks), ts, simulated)

    if lv is None or bk is None:  # pragma: no cover
        return plain
    set_price, set_qty = lv
    set_ex, set_sym, set_bids, set_asks, set_ts, set_sim = bk
    d = Decimal
    price_of = attrgetter("price")
    qty_of = attrgetter("qty")

    def fast(exchange, symbol, units, ts, depth, ap, aq, bp, bq, simulated=False):
        if len(units) > depth:
            units = units[:depth]
        if units:
            first = units[0]
            # loads() decodes every JSON number as a Decimal, so checking the first unit is enough
            if first[bp].__class__ is not d or first[bq].__class__ is not d or first[ap].__class__ is not d \
                    or first[aq].__class__ is not d:
                return plain(exchange, symbol, units, ts, depth, ap, aq, bp, bq, simulated)
        bids = []
        asks = []
        add_bid = bids.append
        add_ask = asks.append
        for unit in units:
            level = new(level_cls)
            set_price(level, unit[bp])
            set_qty(level, unit[bq])
            add_bid(level)
            level = new(level_cls)
            set_price(level, unit[ap])
            set_qty(level, unit[aq])
            add_ask(level)
        # Upbit sends units best first; verify in C and repair only when needed (empty sides, disorder)
        bid_prices = list(map(price_of, bids))
        ask_prices = list(map(price_of, asks))
        if not (all(map(qty_of, bids)) and all(map(gt, bid_prices, bid_prices[1:])) and all(bid_prices)):
            bids = sorted((b for b in bids if b.qty > 0 and b.price > 0), key=price_of, reverse=True)
        if not (all(map(qty_of, asks)) and all(map(lt, ask_prices, ask_prices[1:])) and all(ask_prices)):
            asks = sorted((a for a in asks if a.qty > 0 and a.price > 0), key=price_of)
        book = new(book_cls)
        set_ex(book, exchange)
        set_sym(book, symbol)
        set_bids(book, tuple(bids))
        set_asks(book, tuple(asks))
        set_ts(book, ts)
        set_sim(book, simulated)
        return book

    probe_units = [{"a": Decimal("2"), "b": Decimal("1"), "x": Decimal("3"), "y": Decimal("4")},
                   {"a": Decimal("3"), "b": Decimal("0.5"), "x": Decimal("0"), "y": Decimal("1")}]
    ts = datetime(2020, 1, 1, tzinfo=_UTC)
    try:
        got = fast("e", "S", probe_units, ts, 15, "a", "x", "b", "y")
        want = plain("e", "S", probe_units, ts, 15, "a", "x", "b", "y")
        if got == want and repr(got) == repr(want) and hash(got.bids) == hash(want.bids):
            return fast
    except Exception:  # pragma: no cover
        pass
    return plain  # pragma: no cover


book_from_units = _make_builder()
book_from_units.__doc__ = """Build an OrderBook from Upbit's paired units (each unit holds one ask and one bid level):
``book_from_units(exchange, symbol, units, ts, depth, ask_price_key, ask_size_key, bid_price_key,
bid_size_key, simulated=False)``. Levels with a zero size are dropped; each side is best first."""


def parse_rest_orderbook(item: dict, exchange: str, depth: int) -> OrderBook:
    """One element of ``GET /v1/orderbook``."""
    try:
        return book_from_units(exchange, symbol_for(item["market"]), item["orderbook_units"],
                               ts_ms(item["timestamp"]), depth, "ask_price", "ask_size", "bid_price", "bid_size")
    except (KeyError, TypeError) as exc:
        raise ProtocolError(f"unexpected orderbook shape: missing {exc}") from None


def parse_ws_message(msg: dict, exchange: str, depth: int) -> tuple[str, Any] | None:
    """A decoded WebSocket message -> ``("orderbook", OrderBook)`` / ``("ticker", (symbol, price, ts))`` /
    ``("status", text)`` / None for types we do not use. DEFAULT and SIMPLE formats are both accepted."""
    try:
        kind = msg.get("ty")
        if kind is not None:  # SIMPLE
            if kind == "orderbook":
                return kind, book_from_units(exchange, symbol_for(msg["cd"]), msg["obu"], ts_ms(msg["tms"]),
                                             depth, "ap", "as", "bp", "bs")
            if kind == "ticker":
                return kind, (symbol_for(msg["cd"]), dec(msg["tp"]), ts_ms(msg["tms"]))
            return None
        kind = msg.get("type")
        if kind == "orderbook":
            return kind, book_from_units(exchange, symbol_for(msg["code"]), msg["orderbook_units"],
                                         ts_ms(msg["timestamp"]), depth,
                                         "ask_price", "ask_size", "bid_price", "bid_size")
        if kind == "ticker":
            return kind, (symbol_for(msg["code"]), dec(msg["trade_price"]), ts_ms(msg["timestamp"]))
        if "status" in msg:
            return "status", msg["status"]
        return None
    except (KeyError, TypeError, AttributeError) as exc:
        raise ProtocolError(f"unexpected WebSocket message shape: missing {exc}") from None


def parse_account_details(rows: Any) -> dict[str, Balance]:
    """``GET /v1/accounts`` -> free (``balance``) and ``locked`` (held by open orders or withdrawals) per currency."""
    if not isinstance(rows, list):
        raise ProtocolError("accounts: expected a list")
    out: dict[str, Balance] = {}
    for row in rows:
        try:
            out[str(row["currency"]).upper()] = Balance(dec(row["balance"]), dec(row.get("locked") or "0"))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ProtocolError(f"accounts: missing {exc}") from None
    return out


def parse_accounts(rows: Any) -> dict[str, Decimal]:
    """``GET /v1/accounts`` -> free balance per currency (``balance``; see :func:`parse_account_details`)."""
    return {currency: b.free for currency, b in parse_account_details(rows).items()}


_SIDES = {"bid": Side.BUY, "ask": Side.SELL}


def _parse_time(text: Any) -> datetime:
    if not text:
        return datetime.now(_UTC)
    try:
        value = datetime.fromisoformat(str(text))
    except ValueError:
        raise ProtocolError(f"bad created_at {text!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=_UTC)
    return value.astimezone(_UTC)


def parse_order(row: Any, exchange: str, simulated: bool = False) -> Order:
    """An Upbit order object (POST /v1/orders, GET /v1/order, GET /v1/orders/open, DELETE /v1/order)."""
    if not isinstance(row, dict):
        raise ProtocolError("order: expected an object")
    try:
        uuid = str(row["uuid"])
        side = _SIDES[row["side"]]
        ord_type = row.get("ord_type", "limit")
        state = row.get("state", "wait")
        market = row["market"]
    except KeyError as exc:
        raise ProtocolError(f"order: missing or bad {exc}") from None
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
