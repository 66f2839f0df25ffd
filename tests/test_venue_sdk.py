"""The venue building blocks: rate limits as data, retries by error kind, the stream supervisor, a fake venue."""

from __future__ import annotations

import asyncio
import json
import random
import time
from decimal import Decimal

import pytest

from arbframe import (
    Backoff,
    BookInfo,
    BookLevel,
    BookStream,
    HeaderFeedback,
    HttpAnswer,
    HttpRequest,
    OrderBook,
    OrderRejected,
    ProtocolError,
    Quota,
    RateLimited,
    RateLimiter,
    RateLimits,
    RetryPolicy,
    StreamSettings,
    StreamSpec,
    TransportError,
    VenueHttp,
    VenueUnavailable,
    utcnow,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


LIMITS = RateLimits(
    quotas=(Quota("requests", 2, 1.0), Quota("weight", 10, 60.0, fixed=True)),
    costs={"depth": {"weight": 5}},
    default_cost={"requests": 1},
    feedback=(HeaderFeedback("X-Used-Weight", "weight"),),
)


async def test_limiter_waits_per_quota_and_endpoint_cost() -> None:
    clock = Clock()
    waits: list[tuple[str, float]] = []
    limiter = RateLimiter(LIMITS, clock=clock, sleep=clock.sleep, on_wait=lambda q, s: waits.append((q, s)))
    assert await limiter.acquire("ticker") == 0 and await limiter.acquire("ticker") == 0
    assert await limiter.acquire("ticker") == pytest.approx(1.0)  # the 3rd in one second waits for the 1st
    assert waits[0][0] == "requests"
    clock.now = 1020.0  # 1020 // 60 == 17: the fixed window runs to 1080
    await limiter.acquire("depth")
    await limiter.acquire("depth")
    waited = await limiter.acquire("depth")  # weight 15 > 10 in this minute
    assert waits[-1][0] == "weight" and waited == pytest.approx(60.0 + 1e-3)


async def test_a_sliding_window_counts_what_it_holds_as_requests_come_and_expire() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimits(quotas=(Quota("requests", 1000, 1.0),), default_cost={"requests": 1},
                                     costs={"heavy": {"requests": 2.5}}), clock=clock, sleep=clock.sleep)
    for i in range(600):
        clock.now = 1000.0 + i / 1000  # 600 requests in 0.6 s
        await limiter.acquire("ticker")
    await limiter.acquire("heavy")
    assert limiter.used("requests") == 602.5
    clock.now = 1001.2995  # the first 300 (sent at 1000.000-1000.299) expired
    assert limiter.used("requests") == 302.5
    clock.now = 1002.0
    assert limiter.used("requests") == 0


async def test_limiter_takes_the_venues_higher_count_and_blocks_on_retry_after_and_bans() -> None:
    clock = Clock()
    limiter = RateLimiter(LIMITS, clock=clock, sleep=clock.sleep)
    limiter.observe({"x-used-weight": "9"})  # another process on our IP used 9 already (case-insensitive)
    assert limiter.used("weight") == 9
    assert limiter.delay("depth")[0] == "weight"
    limiter.block(2.5)
    assert limiter.delay("ticker") == ("retry_after", 2.5)
    limiter.ban(30)
    with pytest.raises(Exception, match="banned for another 30s") as info:
        limiter.check_ban("v", "depth")
    assert type(info.value).__name__ == "Banned" and info.value.retry_after == 30


def test_remaining_feedback_blocks_the_quota_at_zero() -> None:
    clock = Clock()
    limits = RateLimits(quotas=(Quota("order", 8, 1.0),), default_cost={"order": 1},
                        feedback=(HeaderFeedback("Remaining-Req", meaning="remaining",
                                                 parse=lambda v: (v.split(";")[0].split("=")[1],
                                                                  float(v.split("sec=")[1]))),))
    limiter = RateLimiter(limits, clock=clock)
    limiter.observe({"Remaining-Req": "group=order; min=1800; sec=0"})
    assert limiter.delay("x") == ("order", 1.0)


async def test_limiter_fast_path_never_jumps_the_queue_and_wait_free_leaves_a_reserve() -> None:
    """An uncontended acquire is settled at once, without the lock; while someone waits in the queue, a newcomer
    queues behind them (no overtaking). wait_free (background polling) waits until the cost fits with a reserve
    left over and takes nothing."""
    clock = Clock()
    gate = asyncio.Event()

    async def sleep(seconds: float) -> None:  # time passes only when the test opens the gate
        await gate.wait()
        gate.clear()
        clock.now += seconds

    limits = RateLimits(quotas=(Quota("requests", 2, 1.0),), default_cost={"requests": 1})
    limiter = RateLimiter(limits, clock=clock, sleep=sleep)
    assert await limiter.acquire("a") == 0 and await limiter.acquire("a") == 0  # fast path, both fit
    order: list[str] = []

    async def take(name: str) -> None:
        await limiter.acquire(name)
        order.append(name)

    first = asyncio.ensure_future(take("queued"))
    await asyncio.sleep(0)  # it waits (the window is full) inside the queue
    clock.now += 1.0  # room again -- but the queued caller has not run yet
    second = asyncio.ensure_future(take("newcomer"))
    await asyncio.sleep(0)
    assert order == [], "the newcomer overtook the caller waiting in the queue"
    gate.set()
    await asyncio.wait_for(asyncio.gather(first, second), 5)
    assert order == ["queued", "newcomer"]

    fresh = RateLimiter(RateLimits(quotas=(Quota("requests", 10, 1.0),), default_cost={"requests": 1}),
                        clock=clock, sleep=clock.sleep)
    for _ in range(7):
        await fresh.acquire("x")
    assert await fresh.wait_free("x", reserve=0.2) == 0  # 7 + 1 + 2 reserved <= 10
    await fresh.acquire("x")
    waited = await fresh.wait_free("x", reserve=0.2)  # 8 + 1 + 2 > 10: waits for the oldest to expire
    assert waited == pytest.approx(1.0) and fresh.used("requests") <= 8


def test_limits_refuse_a_cost_in_an_undeclared_quota() -> None:
    with pytest.raises(ValueError, match="unknown quota"):
        RateLimits(quotas=(Quota("requests", 1),), costs={"depth": {"weight": 5}})


async def test_retry_honours_retry_safe_and_transient_with_seeded_jitter() -> None:
    clock = Clock()
    policy = RetryPolicy(attempts=4, backoff=Backoff(initial=0.1, jitter=0.5), rng=random.Random(1),
                         sleep=clock.sleep)
    calls = {"n": 0}

    async def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise VenueUnavailable("503")
        return "ok"

    assert await policy.call(flaky, idempotent=True) == "ok" and calls["n"] == 3
    first = list(clock.slept)
    assert len(first) == 2 and first[0] != 0.1 and 0.05 <= first[0] <= 0.15 and 0.1 <= first[1] <= 0.3
    again = RetryPolicy(attempts=4, backoff=Backoff(initial=0.1, jitter=0.5), rng=random.Random(1), sleep=clock.sleep)
    calls["n"] = 0
    clock.slept.clear()
    await again.call(flaky, idempotent=True)
    assert clock.slept == first  # the same seed, the same waits

    async def placing() -> None:
        calls["n"] += 1
        raise TransportError("dropped")

    calls["n"] = 0
    with pytest.raises(TransportError):
        await policy.call(placing, idempotent=False)  # an order is never resent after a transport error
    assert calls["n"] == 1

    async def limited() -> None:
        calls["n"] += 1
        raise RateLimited("429", retry_after=0.7)

    calls["n"] = 0
    clock.slept.clear()
    with pytest.raises(RateLimited):
        await policy.call(limited, idempotent=False)  # retry_safe: resent even for an order, after Retry-After
    assert calls["n"] == 4 and clock.slept == [0.7, 0.7, 0.7]

    async def rejected() -> None:
        calls["n"] += 1
        raise OrderRejected("min notional")

    calls["n"] = 0
    with pytest.raises(OrderRejected):
        await policy.call(rejected, idempotent=True)
    assert calls["n"] == 1


async def test_retry_policy_takes_over_after_a_first_attempt_made_outside_it() -> None:
    """VenueHttp makes the first attempt itself (no retry machinery on the hot path) and hands a failure over:
    the policy counts it as attempt one and waits it out like any other."""
    clock = Clock()
    policy = RetryPolicy(attempts=3, backoff=Backoff(initial=0.1, jitter=0), sleep=clock.sleep)
    calls = {"n": 0}

    async def later() -> str:
        calls["n"] += 1
        return "ok"

    assert await policy.call(later, idempotent=True, failed=VenueUnavailable("503")) == "ok"
    assert calls["n"] == 1 and clock.slept == [0.1]

    async def failing() -> str:
        calls["n"] += 1
        raise VenueUnavailable("still 503")

    calls["n"] = 0
    with pytest.raises(VenueUnavailable, match="still"):
        await policy.call(failing, idempotent=True, failed=VenueUnavailable("503"))
    assert calls["n"] == 2  # 3 attempts in all, the first made by the caller
    with pytest.raises(TransportError):
        await policy.call(failing, idempotent=False, failed=TransportError("dropped"))  # an order: never again
    assert calls["n"] == 2


class ScriptedTransport:
    """A VenueHttp transport answering from a script of (status, headers, body); records what was sent."""

    def __init__(self, *answers: tuple[int, dict[str, str], bytes]) -> None:
        self.answers = list(answers)
        self.sent: list[tuple[str, str, dict[str, str], bytes | None]] = []

    async def __call__(self, method, url, headers, body, timeout):
        self.sent.append((method, url, dict(headers), body))
        status, head, raw = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return HttpAnswer(status, head, raw)

    async def close(self) -> None:
        return None


async def test_venue_http_first_attempt_retries_signing_and_decoding() -> None:
    clock = Clock()
    signed: list[object] = []

    def sign(request: HttpRequest) -> None:
        signed.append(request.sign_data)
        request.headers["X-Sig"] = f"sig{len(signed)}"  # a fresh headers dict per attempt

    ok = (200, {"x-used-weight": "3"}, b'{"a": 1}')
    transport = ScriptedTransport((503, {}, b"busy"), ok)
    limiter = RateLimiter(LIMITS, clock=clock, sleep=clock.sleep)
    http = VenueHttp("v", "http://venue.test/", limiter=limiter, sign=sign, transport=transport,
                     retry=RetryPolicy(attempts=3, backoff=Backoff(initial=0.1, jitter=0), sleep=clock.sleep))
    headers = {"Accept": "application/json"}
    assert await http.json("GET", "/depth", endpoint="depth", params={"s": "BTC", "n": None}, headers=headers,
                           sign_data="once") == {"a": 1}
    assert [url for _, url, _, _ in transport.sent] == ["http://venue.test/depth?s=BTC"] * 2
    assert [h["X-Sig"] for _, _, h, _ in transport.sent] == ["sig1", "sig2"]
    assert headers == {"Accept": "application/json"}  # the caller's headers are never changed
    assert signed == ["once", "once"] and clock.slept == [0.1]
    assert limiter.used("weight") == 10  # both attempts counted (the venue's lower count does not undo them)
    post = VenueHttp("v", "http://venue.test", transport=ScriptedTransport((503, {}, b"busy"), ok),
                     retry=RetryPolicy(attempts=3, sleep=clock.sleep))
    with pytest.raises(VenueUnavailable):
        await post.request("POST", "/order", body=b"x")  # not idempotent: never sent twice
    assert len(post.transport.sent) == 1

    def classify(answer: HttpAnswer):
        if answer.status < 300:
            try:
                answer.decoded = json.loads(answer.body)
            except ValueError:
                return ProtocolError("not JSON")
        return None

    garbled = VenueHttp("v", "http://venue.test", classify=classify, retry=RetryPolicy(attempts=2, sleep=clock.sleep),
                        transport=ScriptedTransport((200, {}, b"<html>"), (200, {}, b'[1, 2]')))
    answer = await garbled.request("GET", "/x")  # a garbled 2xx is a ProtocolError, and a read is retried
    assert answer.decoded == [1, 2] and answer.json() is answer.decoded  # decoded once, by classify
    with pytest.raises(ProtocolError) as info:
        await VenueHttp("v", "http://venue.test", classify=classify, retry=RetryPolicy(attempts=1),
                        transport=ScriptedTransport((200, {}, b"<html>"))).request("GET", "/x")
    assert info.value.exchange == "v" and info.value.endpoint == "/x" and info.value.status == 200
    assert HttpAnswer(200, {"Retry-After": "2"}, b"").header("retry-after") == "2"  # plain dicts: either case


def test_stream_settings_refuse_an_idle_watchdog_that_could_fire_before_a_keepalive() -> None:
    with pytest.raises(ValueError, match="shorter than idle_timeout"):
        StreamSettings(ping_interval=10, idle_timeout=10)
    assert StreamSettings(ping_interval=None, idle_timeout=5).idle_timeout == 5


# ------------------------------------------------------------------------------------ the stream supervisor
class FakeWs:
    """A WebSocket server on 127.0.0.1 sending one book per subscription message and answering text pings."""

    def __init__(self) -> None:
        self.connections = 0
        self.pings = 0
        self.silent = False
        self.clients: list = []

    async def handler(self, request):
        from aiohttp import WSMsgType, web

        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.connections += 1
        self.clients.append(ws)
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            if msg.data == "PING":
                self.pings += 1
                if not self.silent:
                    await ws.send_str('{"status":"UP"}')
            elif not self.silent:
                for symbol in json.loads(msg.data)["symbols"]:
                    await ws.send_str(json.dumps({"symbol": symbol, "bid": "100", "ask": "101",
                                                  "conn": self.connections}))
        return ws

    async def push(self, symbol: str, bid: str) -> None:
        for ws in self.clients:
            if not ws.closed:
                await ws.send_str(json.dumps({"symbol": symbol, "bid": bid, "ask": "999", "conn": 0}))


def _parse(data: str) -> list[OrderBook]:
    msg = json.loads(data)
    if "symbol" not in msg:
        return []
    return [OrderBook("fake", msg["symbol"], (BookLevel(Decimal(msg["bid"]), Decimal(1)),),
                      (BookLevel(Decimal(msg["ask"]), Decimal(1)),), utcnow())]


@pytest.fixture
async def fake_ws():
    from aiohttp import web

    fake = FakeWs()
    app = web.Application()
    app.router.add_get("/ws", fake.handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.url = f"ws://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/ws"
    yield fake
    await runner.cleanup()


def _stream(fake: FakeWs, **settings) -> BookStream:
    spec = StreamSpec(url=lambda symbols, depth: fake.url, parse=_parse, ping_text="PING",
                      subscribe=lambda symbols, depth: [json.dumps({"symbols": symbols})])
    return BookStream("fake", spec, ["BTC"], 5, rng=random.Random(3),
                      settings=StreamSettings(**{"ping_interval": 0.05, "idle_timeout": 0.3,
                                                 "backoff": Backoff(initial=0.01, maximum=0.05), **settings}))


async def test_stream_subscribes_keeps_alive_and_serves_latest(fake_ws) -> None:
    stream = _stream(fake_ws)
    books = stream.books(["BTC"])
    first = await asyncio.wait_for(books.__anext__(), 5)
    assert first.symbol == "BTC" and stream.latest("BTC") is first
    await fake_ws.push("BTC", "105")
    assert (await asyncio.wait_for(books.__anext__(), 5)).best_bid == Decimal(105)
    await asyncio.sleep(0.4)  # longer than idle_timeout: the keepalive answers keep the quiet connection alive
    assert fake_ws.pings >= 3 and fake_ws.connections == 1 and stream.reconnects == 0
    await books.aclose()
    await stream.stop()
    assert stream.latest("BTC") is None  # nothing is "latest" on a stream that is down


async def test_stream_replaces_a_silent_connection_and_resubscribes(fake_ws) -> None:
    stream = _stream(fake_ws)
    books = stream.books(["BTC"])
    await asyncio.wait_for(books.__anext__(), 5)
    fake_ws.silent = True  # the server stops answering even pings: the watchdog must replace the connection
    for _ in range(200):
        if fake_ws.connections >= 2:
            break
        await asyncio.sleep(0.02)
    fake_ws.silent = False
    await asyncio.wait_for(stream.connected.wait(), 5)
    await fake_ws.push("ETH", "1")  # noise for a symbol nobody asked for
    await fake_ws.push("BTC", "107")
    book = await asyncio.wait_for(books.__anext__(), 5)
    while book.best_bid != Decimal(107):  # (the resubscription's own book may come first)
        book = await asyncio.wait_for(books.__anext__(), 5)
    assert book.symbol == "BTC" and stream.reconnects >= 1 and fake_ws.connections >= 2
    await books.aclose()
    await stream.stop()


async def test_stream_rolls_over_without_a_gap_when_the_subscription_grows(fake_ws) -> None:
    stream = _stream(fake_ws, ping_interval=None, idle_timeout=5)
    books = stream.books()
    await asyncio.wait_for(books.__anext__(), 5)
    stream.update(["ETH"])
    seen = set()
    while "ETH" not in seen:
        seen.add((await asyncio.wait_for(books.__anext__(), 5)).symbol)
    for _ in range(100):  # the old connection retires right after the new one delivered
        if stream.rollovers:
            break
        await asyncio.sleep(0.01)
    assert stream.rollovers == 1 and stream.reconnects == 0 and fake_ws.connections == 2
    assert stream.latest("BTC") is not None and stream.latest("ETH") is not None
    await books.aclose()
    await stream.stop()


async def test_stop_during_a_rollover_ends_the_stream(fake_ws) -> None:
    """``stop()`` from the consumer of the replacement connection's first book: that book is published in the same
    step that tells the rollover its replacement delivered, so the cancellation reaches the supervisor while its
    ``wait_for`` already has a result (Python < 3.12 then returns the result and drops the cancellation). The
    stream must still end; it used to carry on with the new connection, and ``stop()`` (so ``UpbitExchange.close()``)
    hung until that connection died: a test calling ``FakeUpbit.step()`` by hand ran into it. The consumer awaits
    the books directly (a ``wait_for`` around it would add the hops that hide the race); a guard cancels the
    stream again after 10 s so a regression fails instead of hanging."""
    stream = _stream(fake_ws, ping_interval=None, idle_timeout=30)
    books = stream.books()
    await books.__anext__()  # connection 1
    stream.update(["ETH"])  # roll over to a connection for BTC and ETH
    loop = asyncio.get_running_loop()
    guard = loop.call_later(10, lambda: [t.cancel() for t in asyncio.all_tasks() if t.get_name() == "fake-stream"])
    try:
        await books.__anext__()  # the replacement's first book (connection 1 sends nothing more)
        started = loop.time()
        await stream.stop()
        took = loop.time() - started
    finally:
        guard.cancel()
    assert took < 5, f"stop() took {took:.1f}s: the stream went on after its cancellation"
    assert not stream.running and fake_ws.connections == 2
    await books.aclose()


async def test_stream_rollover_on_request_replaces_the_connection_once(fake_ws) -> None:
    stream = _stream(fake_ws, ping_interval=None, idle_timeout=5)
    books = stream.books(["BTC"])
    await asyncio.wait_for(books.__anext__(), 5)
    one, two = stream.rollover(), stream.rollover()  # asked twice while one is under way: joined
    assert one is two
    assert await asyncio.wait_for(one, 5) is True
    assert stream.rollovers == 1 and stream.reconnects == 0 and fake_ws.connections == 2
    assert stream.latest("BTC") is not None  # the old connection's book stays current on the new one
    await books.aclose()
    await stream.stop()
    assert await asyncio.wait_for(stream.rollover(), 1) is False  # a stopped stream has nothing to replace


class BufferedWs:
    """A connection whose frames are all buffered already: ``receive()`` returns them without yielding (as aiohttp's
    does for frames already read off the socket), then waits until closed."""

    def __init__(self, frames: list[str]) -> None:
        self.frames = list(frames)
        self.closed = False
        self._closing = asyncio.Event()

    async def receive(self):
        from aiohttp import WSMessage, WSMsgType

        if self.frames:
            return WSMessage(WSMsgType.TEXT, self.frames.pop(0), None)
        await self._closing.wait()
        return WSMessage(WSMsgType.CLOSED, None, None)

    async def send_str(self, text: str) -> None:
        pass

    async def close(self, **kw) -> bool:
        self.closed = True
        self._closing.set()
        return True


class BufferedSession:
    closed = False

    def __init__(self, frames: list[str]) -> None:
        self.frames = frames

    async def ws_connect(self, url: str, **kw) -> BufferedWs:
        return BufferedWs(self.frames)

    async def close(self) -> None:
        self.closed = True


async def _next_directly(books):
    """The next book awaited in this task (``wait_for`` would add loop passes of its own), cancelled after 5 s."""
    guard = asyncio.get_running_loop().call_later(5, asyncio.current_task().cancel)
    try:
        return await books.__anext__()
    finally:
        guard.cancel()


def _buffered_stream(frames: list[str], parsed: list[str], pause: float = 0.0) -> BookStream:
    def parse(data: str) -> list[OrderBook]:
        parsed.append(data)
        if pause:
            time.sleep(pause)  # a slow venue parse
        return _parse(data)

    stream = BookStream("fake", StreamSpec(url=lambda symbols, depth: "ws://buffered", parse=parse), [], 5,
                        settings=StreamSettings(ping_interval=None, idle_timeout=30, fallback_after=None))
    stream._session = BufferedSession(frames)
    return stream


@pytest.mark.parametrize("conflate", [False, True])
async def test_consumers_see_a_buffered_burst_of_many_symbols_before_it_is_all_parsed(conflate: bool) -> None:
    """One step's books of many symbols arrive back to back: the reader yields to the loop after a quarter of a
    millisecond of parsing them (0.1 ms each here), so a consumer (the event-driven ticks) takes the first of them
    long before the last is parsed."""
    frames = [json.dumps({"symbol": f"S{i}", "bid": "100", "ask": "101"}) for i in range(200)]
    parsed: list[str] = []
    stream = _buffered_stream(frames, parsed, pause=0.0001)
    books = stream.books(conflate=conflate)
    first = await _next_directly(books)
    assert first.symbol == "S0" and len(parsed) <= 10
    symbols = {first.symbol}
    while len(symbols) < 200:
        symbols.add((await asyncio.wait_for(books.__anext__(), 5)).symbol)
    await books.aclose()
    await stream.stop()


async def test_a_conflating_consumer_of_one_symbols_burst_is_woken_within_a_millisecond_or_so() -> None:
    """A burst of one symbol's updates to a conflating consumer: each book replaces the one before, so the reader
    does not yield for it every quarter of a millisecond, but still at least every millisecond of parsing; the
    consumer ends on the newest book."""
    frames = [json.dumps({"symbol": "BTC", "bid": str(100 + i), "ask": "999"}) for i in range(40)]
    parsed: list[str] = []
    stream = _buffered_stream(frames, parsed, pause=0.0003)
    books = stream.books(conflate=True)
    first = await _next_directly(books)
    assert len(parsed) < 10  # woken while the burst was still being parsed (after about 1 ms of it)
    book = first
    while book.best_bid != Decimal(139):
        book = await asyncio.wait_for(books.__anext__(), 5)
    assert stream.latest("BTC") is book
    await books.aclose()
    await stream.stop()


async def test_stream_rest_fallback_while_no_connection_delivers() -> None:
    """The stream cannot connect: after the grace, books come from the venue's poll (through books() and
    latest(), marked "rest" with their age); a failing poll backs off and yields nothing; stop ends it all."""
    polled: list[list[str]] = []
    failing = {"on": False}

    async def poll(symbols: list[str], depth: int):
        polled.append(list(symbols))
        if failing["on"]:
            raise TransportError("REST down too")
        for symbol in symbols:
            yield OrderBook("fake", symbol, (BookLevel(Decimal(100), Decimal(1)),),
                            (BookLevel(Decimal(101), Decimal(1)),), utcnow())

    from prometheus_client import CollectorRegistry

    from arbframe import VenueMetrics

    registry = CollectorRegistry()

    def sample(name: str) -> float | None:
        return registry.get_sample_value(f"arbframe_exchange_ws_rest_fallback{name}", {"exchange": "fake"})

    spec = StreamSpec(url=lambda symbols, depth: "ws://127.0.0.1:9/ws", parse=_parse, poll=poll)
    stream = BookStream("fake", spec, ["BTC", "ETH"], 5, rng=random.Random(3), settings=StreamSettings(
        ping_interval=None, idle_timeout=5, backoff=Backoff(initial=0.01, maximum=0.05), fallback_after=0.2,
        fallback_interval=0.02), metrics=VenueMetrics("fake", registry))
    assert (sample(""), sample("_seconds_total"), sample("_books_total")) == (0, 0, 0)  # exported from the start
    before = asyncio.all_tasks()
    started = asyncio.get_running_loop().time()
    books = stream.books()
    first = await asyncio.wait_for(books.__anext__(), 5)
    assert asyncio.get_running_loop().time() - started >= 0.2 - 0.01, "polled before the grace had passed"
    assert first.symbol in ("BTC", "ETH") and stream.fallback_active and polled[0] == ["BTC", "ETH"]
    info = stream.book_info("BTC")
    assert isinstance(info, BookInfo) and info.source == "rest" and info.age < 1
    assert stream.latest("BTC") is info.book
    failing["on"] = True
    failures = stream.fallback_failures
    for _ in range(300):
        if stream.fallback_failures >= failures + 2:
            break
        await asyncio.sleep(0.01)
    assert stream.fallback_failures >= failures + 2
    assert stream.latest("BTC", max_age=0.01) is None  # nothing new: the last book just ages
    # exported while it lasts: the gauge, every book polled, the time counted at each round
    assert sample("") == 1 and sample("_books_total") == stream.fallback_books >= 2
    counted = sample("_seconds_total")
    assert counted is not None and counted > 0
    await books.aclose()
    polling = time.monotonic() - stream.fallback_since
    await stream.stop()
    assert not stream.fallback_active
    assert sample("") == 0  # the rest of the time is counted as it ends: all of it, once
    total = sample("_seconds_total")
    assert total is not None and polling <= total <= time.monotonic() - stream.fallback_since
    await asyncio.sleep(0)
    assert [t for t in asyncio.all_tasks() - before if not t.done()] == []
    quiet = BookStream("fake", spec, ["BTC"], 5, settings=StreamSettings(ping_interval=None, idle_timeout=5,
                                                                          fallback_after=None))
    quiet.start()
    await asyncio.sleep(0.05)
    assert quiet._fallback_task is None and not quiet.fallback_active  # fallback_after=None: never polls
    await quiet.stop()
