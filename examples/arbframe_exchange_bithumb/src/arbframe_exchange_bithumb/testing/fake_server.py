"""A tiny local fake of Bithumb's public order-book endpoint, for tests and demos (standard library only).

::

    with FakeBithumb() as fake:                       # 127.0.0.1 on a free port, served from a thread
        section = {"market_data": "rest", "base_url": fake.url}
        fake.set_mid("BTC", 135_000_000)              # script the book
        fake.fail(times=2, status=500)                # the next two requests answer HTTP 500
        fake.fail(times=1, api_status="5500")         # ... or an API error in a 200 answer

Books are deterministic: ``levels`` levels on each side around ``mid``, one price unit apart, quantities from a
seeded generator. ``fake.requests`` lists the paths asked for.

Standalone: ``python -m arbframe_exchange_bithumb.testing.fake_server --port 8123`` prints ``BASE_URL=...`` and serves
until interrupted.
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["DEFAULT_MIDS", "FakeBithumb"]

DEFAULT_MIDS: dict[str, Decimal] = {
    "BTC": Decimal("135000000"),
    "ETH": Decimal("4800000"),
    "XRP": Decimal("3100"),
    "USDT": Decimal("1395"),
}


def _unit(price: Decimal) -> Decimal:
    from arbframe_exchange_bithumb.exchange import DEFAULT_PRICE_UNITS

    for lower, unit in DEFAULT_PRICE_UNITS:
        if price >= Decimal(lower):
            return Decimal(unit)
    return Decimal(DEFAULT_PRICE_UNITS[-1][1])


class FakeBithumb:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, seed: int = 7, levels: int = 30) -> None:
        self.mids: dict[str, Decimal] = dict(DEFAULT_MIDS)
        self.levels = levels
        self.seed = seed
        self.requests: list[str] = []
        self._faults: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._handle(self)

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------ control
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeBithumb:
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), name="fake-bithumb",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> FakeBithumb:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_mid(self, symbol: str, price: Decimal | int | str) -> None:
        with self._lock:
            self.mids[symbol.upper()] = Decimal(str(price))

    def fail(self, *, times: int = 1, status: int = 200, api_status: str = "5900", delay: float = 0.0) -> None:
        """The next ``times`` requests fail: HTTP ``status`` (>= 400), or an API error ``api_status`` in a 200."""
        with self._lock:
            self._faults.extend({"status": status, "api_status": api_status, "delay": delay} for _ in range(times))

    # ----------------------------------------------------------------------------------------- serving
    def book(self, symbol: str, count: int) -> dict[str, Any]:
        mid = self.mids[symbol]
        unit = _unit(mid)
        mid = (mid / unit).to_integral_value() * unit
        rng = random.Random(f"{self.seed}:{symbol}")
        count = max(1, min(count, self.levels))

        def side(sign: int) -> list[dict[str, str]]:
            out = []
            for i in range(count):
                price = mid + sign * unit * (i + 1)
                qty = Decimal(rng.randint(1_000_000, 90_000_000)) / Decimal(100_000_000) * (1 + i)
                out.append({"price": f"{price:f}", "quantity": f"{qty:f}"})
            return out

        return {
            "timestamp": str(int(time.time() * 1000)),
            "payment_currency": "KRW",
            "order_currency": symbol,
            "bids": side(-1),
            "asks": side(+1),
        }

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        with self._lock:
            self.requests.append(parts.path)
            fault = self._faults.pop(0) if self._faults else None
        if fault is not None:
            if fault["delay"]:
                time.sleep(fault["delay"])
            if fault["status"] >= 400:
                self._send(handler, fault["status"], {"status": "5900", "message": "Unknown Error"})
            else:
                self._send(handler, 200, {"status": fault["api_status"], "message": "Injected fault"})
            return
        prefix = "/public/orderbook/"
        if not parts.path.startswith(prefix):
            self._send(handler, 404, {"status": "5100", "message": "Bad Request"})
            return
        market = parts.path[len(prefix):]
        symbol, _, quote = market.partition("_")
        with self._lock:
            known = quote == "KRW" and symbol in self.mids
        if not known:
            self._send(handler, 200, {"status": "5500", "message": "Invalid Parameter"})
            return
        query = parse_qs(parts.query)
        try:
            count = int(query.get("count", ["30"])[0])
        except ValueError:
            self._send(handler, 200, {"status": "5500", "message": "Invalid Parameter"})
            return
        with self._lock:
            data = self.book(symbol, count)
        self._send(handler, 200, {"status": "0000", "data": data})

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="serve a fake Bithumb public order-book API")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    fake = FakeBithumb(args.host, args.port)
    print(f"BASE_URL={fake.url}", flush=True)
    try:
        fake._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        fake._server.server_close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
