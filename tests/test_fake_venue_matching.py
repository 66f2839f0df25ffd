"""The venue-neutral matching engine of arbframe.testing.fake_venue.FakeVenue: balances, IOC/FOK/GTC limit orders
against the fake's own book, fees per side in the asset charged, the order store and the order faults.

Expected figures are worked out by hand from the hand-written book below."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D
from typing import Any

import aiohttp
import pytest

from arbframe.testing.fake_venue import (
    EXPECTED_ERRORS,
    FAULT_KINDS,
    ORDER_FAULT_KINDS,
    FakeVenue,
    OrderRefused,
)

#: bids 99 x 1, 98 x 2; asks 101 x 1, 102 x 2, 103 x 5
BIDS = [(D(99), D(1)), (D(98), D(2))]
ASKS = [(D(101), D(1)), (D(102), D(2)), (D(103), D(5))]


class HandVenue(FakeVenue):
    """A fake with a hand-written book and a minimal JSON order route, as a venue's fake would add."""

    name = "hand"

    def base_book(self, symbol: str) -> tuple[list[tuple[D, D]], list[tuple[D, D]]]:
        return list(BIDS), list(ASKS)

    def routes(self, app: Any) -> None:
        from aiohttp import web

        async def order(request: Any) -> Any:
            body = await request.json()
            try:
                placed = self.place_limit(body["symbol"], body["side"], body["price"], body["qty"], body["client_id"])
            except OrderRefused as refused:
                return web.json_response({"error": refused.reason}, status=400)
            late = await self.after_accept(placed, request)
            if late is not None:
                return late
            return web.json_response({"id": placed.venue_id, "status": placed.status,
                                      "filled": str(placed.filled_qty)})

        async def ping(request: Any) -> Any:
            return web.json_response({})

        async def ws(request: Any) -> Any:
            sock = web.WebSocketResponse()
            await sock.prepare(request)
            self.ws_clients.append(sock)
            async for _ in sock:
                pass
            return sock

        app.router.add_post("/order", order)
        app.router.add_get("/ping", ping)
        app.router.add_get("/ws", ws)


def upbit_like(**kw: Any) -> HandVenue:
    return HandVenue(mids={"BTC": 100}, balances={"KRW": 1000, "BTC": 10}, **kw)


def binance_like(**kw: Any) -> HandVenue:
    kw.setdefault("fees", {"buy": ("0.001", "base"), "sell": ("0.001", "quote")})
    venue = HandVenue(mids={"BTC": 100}, balances={"USDT": 1000, "BTC": 10}, **kw)
    venue.quote = "USDT"
    return venue


def test_ioc_buy_walks_levels_pays_quote_fee_and_cancels_the_rest() -> None:
    venue = upbit_like()
    order = venue.place_limit("BTC", "buy", "102", "4", "c1")
    # 1 @ 101 + 2 @ 102 = 305 KRW; fee 0.05 % of 305 = 0.1525 KRW on top; the last 1 BTC is canceled (IOC)
    assert (order.status, order.filled_qty, order.quote_qty, order.fee, order.fee_asset) == (
        "canceled", D(3), D(305), D("0.1525"), "KRW")
    assert order.fills == [(D(101), D(1), D("0.0505")), (D(102), D(2), D("0.102"))]
    assert venue.balance("KRW") == (D("694.8475"), D(0))
    assert venue.balance("BTC") == (D(13), D(0))
    # the depth it took is gone from the book until the mid moves
    assert venue.book("BTC")[1] == [(D(103), D(5))]
    venue.set_mid("BTC", 101)
    assert venue.book("BTC")[1] == ASKS
    venue.set_mid("BTC", 100)  # back to the first mid: still a fresh book
    assert venue.book("BTC")[1] == ASKS


def test_binance_fees_buy_in_base_sell_in_quote() -> None:
    venue = binance_like()
    buy = venue.place_limit("BTC", "buy", "102", "1.5", "b1")
    # 1 @ 101 + 0.5 @ 102 = 152 USDT; fee 0.1 % of 1.5 BTC = 0.0015 BTC taken from the coin received
    assert (buy.status, buy.filled_qty, buy.fee, buy.fee_asset) == ("filled", D("1.5"), D("0.0015"), "BTC")
    sell = venue.place_limit("BTC", "sell", "98", "2", "s1")
    # 1 @ 99 + 1 @ 98 = 197 USDT; fee 0.1 % of 197 = 0.197 USDT taken from the proceeds
    assert (sell.status, sell.quote_qty, sell.fee, sell.fee_asset) == ("filled", D(197), D("0.197"), "USDT")
    assert venue.balance("USDT") == (D(1000) - D(152) + D(197) - D("0.197"), D(0))
    assert venue.balance("BTC") == (D(10) + D("1.5") - D("0.0015") - D(2), D(0))
    assert venue.book("BTC") == ([(D(98), D(1))], [(D(102), D("1.5")), (D(103), D(5))])


def test_limit_price_bounds_the_walk_and_fok_is_all_or_nothing() -> None:
    venue = upbit_like()
    none = venue.place_limit("BTC", "buy", "100", "1", "x1")  # below the best ask: nothing, IOC cancels
    assert (none.status, none.filled_qty) == ("canceled", D(0))
    fok = venue.place_limit("BTC", "sell", "98", "4", "x2", tif="FOK")  # only 3 bid at >= 98
    assert (fok.status, fok.filled_qty) == ("canceled", D(0))
    assert venue.balance("KRW") == (D(1000), D(0)) and venue.balance("BTC") == (D(10), D(0))
    assert venue.book("BTC") == (BIDS, ASKS)


def test_gtc_rests_locked_until_canceled_and_store_lookups() -> None:
    venue = upbit_like()
    order = venue.place_limit("BTC", "buy", "100", "2", "g1", tif="GTC")
    # 2 x 100 = 200 KRW plus the 0.1 KRW fee it would pay, held
    assert order.status == "new" and venue.balance("KRW") == (D("799.9"), D("200.1"))
    assert venue.get_order(client_id="g1") is order and venue.get_order(venue_id=order.venue_id) is order
    assert venue.get_order(client_id="nope") is None and venue.get_order(venue_id="999") is None
    assert venue.cancel(client_id="g1").status == "canceled"
    assert venue.balance("KRW") == (D(1000), D(0))
    with pytest.raises(OrderRefused) as again:
        venue.cancel(venue_id=order.venue_id)
    assert again.value.reason == "not_open"
    with pytest.raises(OrderRefused) as unknown:
        venue.cancel(client_id="missing")
    assert unknown.value.reason == "unknown_order"


def test_refusals_change_nothing() -> None:
    venue = upbit_like()
    for args, reason in [(("ETH", "buy", "1", "1"), "unknown_symbol"), (("BTC", "buy", "0", "1"), "bad_order"),
                         (("BTC", "hold", "1", "1"), "bad_order"),
                         (("BTC", "buy", "200", "5"), "insufficient_balance"),  # 1000 + fee > 1000 KRW
                         (("BTC", "sell", "90", "11"), "insufficient_balance")]:
        with pytest.raises(OrderRefused) as refused:
            venue.place_limit(*args, client_id=f"r-{reason}-{args[1]}")
        assert refused.value.reason == reason
    assert venue.orders == {} and venue.balance("KRW") == (D(1000), D(0)) and venue.balance("BTC") == (D(10), D(0))
    assert len(venue.placements) == 5


def test_duplicate_client_ids() -> None:
    strict = upbit_like()  # default "any": never twice
    strict.place_limit("BTC", "buy", "101", "1", "dup")
    with pytest.raises(OrderRefused) as refused:
        strict.place_limit("BTC", "buy", "101", "1", "dup")
    assert refused.value.reason == "duplicate_client_id"
    assert strict.placements == ["dup", "dup"]

    binance = binance_like(duplicate_client_id="open")  # Binance: refused only while one is open
    binance.place_limit("BTC", "buy", "90", "1", "same", tif="GTC")
    with pytest.raises(OrderRefused):
        binance.place_limit("BTC", "buy", "90", "1", "same", tif="GTC")
    binance.cancel(client_id="same")
    second = binance.place_limit("BTC", "buy", "101", "1", "same")  # the double fill the issue warns about
    assert second.status == "filled" and binance.get_order(client_id="same") is second
    with pytest.raises(ValueError):
        HandVenue(duplicate_client_id="sometimes")


def test_reject_and_insufficient_balance_faults_with_filters() -> None:
    venue = upbit_like()
    venue.inject("reject", side="sell")
    venue.inject("insufficient_balance", symbol="BTC")
    with pytest.raises(OrderRefused) as first:
        venue.place_limit("BTC", "buy", "101", "1", "f1")  # the reject waits for a sell
    assert first.value.reason == "insufficient_balance"
    with pytest.raises(OrderRefused) as second:
        venue.place_limit("BTC", "sell", "99", "1", "f2")
    assert second.value.reason == "rejected"
    assert venue.place_limit("BTC", "sell", "99", "1", "f3").status == "filled"
    assert venue.faults == []


def test_partial_fault_fills_a_fraction() -> None:
    venue = upbit_like()
    venue.inject("partial", fraction="0.25")
    order = venue.place_limit("BTC", "buy", "103", "4", "p1")
    # would take 1 @ 101, 2 @ 102, 1 @ 103; a quarter of 4 is 1 BTC: the first level only
    assert (order.status, order.filled_qty, order.quote_qty) == ("canceled", D(1), D(101))
    assert venue.balance("KRW") == (D(1000) - D(101) - D("0.0505"), D(0))


def test_delayed_fill_shows_new_then_fills_on_a_later_lookup() -> None:
    venue = upbit_like()
    venue.inject("delayed_fill", polls=1)
    order = venue.place_limit("BTC", "buy", "101", "1", "d1")
    assert order.status == "new" and venue.balance("KRW")[1] == D("101.0505")
    assert venue.get_order(client_id="d1").status == "new"  # the first lookup still sees it new
    assert venue.get_order(client_id="d1").status == "filled"
    assert venue.balance("KRW") == (D(1000) - D("101.0505"), D(0)) and venue.balance("BTC") == (D(11), D(0))

    venue.inject("delayed_fill", polls=3)
    held = venue.place_limit("BTC", "sell", "99", "1", "d2")
    assert venue.cancel(client_id="d2").status == "canceled" and held.filled_qty == 0
    assert venue.balance("BTC") == (D(11), D(0))


def test_order_faults_are_not_taken_by_the_middleware_and_kinds_are_known() -> None:
    assert set(ORDER_FAULT_KINDS) < set(FAULT_KINDS) and "ws_drop" in FAULT_KINDS
    assert {"reject", "insufficient_balance", "accept_then_timeout", "error_after_accept"} <= set(EXPECTED_ERRORS)
    venue = upbit_like()
    with pytest.raises(ValueError):
        venue.inject("explode")
    venue.inject("reject")
    assert venue.take_fault("/ping") is None and len(venue.faults) == 1


async def test_accept_then_timeout_error_after_accept_and_drop_over_http() -> None:
    async with upbit_like() as venue, aiohttp.ClientSession() as session:
        order = {"symbol": "BTC", "side": "buy", "price": "101", "qty": "1"}
        venue.inject("accept_then_timeout", delay=30)
        with pytest.raises(asyncio.TimeoutError):
            async with session.post(f"{venue.url}/order", json={**order, "client_id": "t1"},
                                    timeout=aiohttp.ClientTimeout(total=0.3)) as resp:
                await resp.read()
        assert venue.get_order(client_id="t1").status == "filled"  # placed and filled; the answer was late

        venue.inject("error_after_accept", status=503)
        venue.set_mid("BTC", 101)
        async with session.post(f"{venue.url}/order", json={**order, "client_id": "t2"}) as resp:
            assert resp.status == 503
        assert venue.get_order(client_id="t2").status == "filled"

        venue.inject("accept_then_timeout", drop=True)
        venue.set_mid("BTC", 100)
        with pytest.raises(aiohttp.ClientError):
            async with session.post(f"{venue.url}/order", json={**order, "client_id": "t3"}) as resp:
                await resp.read()
        assert venue.get_order(client_id="t3").status == "filled"
        assert venue.balance("BTC") == (D(13), D(0))
    # close() released the answer held back for 30 s: the test did not wait for it


async def test_ws_drop_closes_websocket_clients_then_serves() -> None:
    async with upbit_like() as venue, aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{venue.ws_url}/ws") as ws:
            for _ in range(100):  # the server registers the client once its handler ran
                if venue.ws_clients:
                    break
                await asyncio.sleep(0.01)
            venue.inject("ws_drop")
            async with session.get(f"{venue.url}/ping") as resp:
                assert resp.status == 200
            message = await asyncio.wait_for(ws.receive(), 5)
            assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert venue.ws_clients == []
