"""The FX source contract kit: the builtin static source passes it, and the kit catches what it should."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from datetime import timedelta
from decimal import Decimal

import pytest

from arbframe import FxRate, FxSource, new_id, utcnow
from arbframe.builtins.static_fx import StaticFxSource
from arbframe.testing.fx_kit import FxSourceContract, check_fx_rate


class TestStaticFxContract(FxSourceContract):
    @pytest.fixture
    def fx_source(self) -> FxSource:
        return StaticFxSource({"static_rate": 1350.0}, None)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TcpFxSource(FxSource):
    """A tiny source reading ``<rate>\\n`` from a TCP endpoint: enough to exercise the failure checks."""

    name = "tcp"

    def __init__(self, section, context=None) -> None:
        self.port = int(section["port"])
        self.timeout = float(section.get("timeout_seconds", 1.0))
        self.closed = 0

    async def fetch(self) -> FxRate:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), self.timeout)
        try:
            line = await asyncio.wait_for(reader.readline(), self.timeout)
        finally:
            writer.close()
        return FxRate(id=new_id(), ts=utcnow(), rate=Decimal(line.decode().strip()), source="tcp")

    async def close(self) -> None:
        self.closed += 1


class TestFailingSourceContract(FxSourceContract):
    """A live TCP source for the fetch checks and the same source on a closed port for the failure checks."""

    max_wait_seconds = 2.0

    @pytest.fixture
    async def fx_source(self):
        async def serve(reader, writer):
            writer.write(b"1387.25\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        yield TcpFxSource({"port": port})
        server.close()
        await server.wait_closed()

    @pytest.fixture
    def failing_fx_source(self) -> FxSource:
        return TcpFxSource({"port": _closed_port(), "timeout_seconds": 0.5})


GOOD = FxRate(id="fx-1", ts=utcnow(), rate=Decimal("1350.5"), source="static")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rate": 1350.5}, "Decimal"),
        ({"rate": Decimal("0.00074")}, "plausible range"),
        ({"rate": Decimal("-1")}, "positive"),
        ({"id": ""}, "id"),
        ({"source": ""}, "source"),
        ({"ts": utcnow().replace(tzinfo=None)}, "aware UTC"),
        ({"ts": utcnow() + timedelta(hours=1)}, "future"),
        ({"base": "KRW", "quote": "USD", "rate": Decimal("1000")}, "USD/KRW"),
    ],
)
def test_kit_rejects_bad_rates(change, message) -> None:
    with pytest.raises(AssertionError, match=message):
        check_fx_rate(dataclasses.replace(GOOD, **change))


def test_kit_accepts_a_good_rate_and_other_pairs() -> None:
    check_fx_rate(GOOD)
    eur = dataclasses.replace(GOOD, base="EUR", rate=Decimal("1480"))
    check_fx_rate(eur, base="EUR", rate_range=None)


class HangingFxSource(FxSource):
    name = "hanging"

    async def fetch(self) -> FxRate:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")


async def test_kit_fails_a_source_that_hangs() -> None:
    class Kit(FxSourceContract):
        max_wait_seconds = 0.2

    with pytest.raises(AssertionError, match="took"):
        await Kit().test_fx_contract_failure_raises_promptly(HangingFxSource())


class MadeUpFxSource(FxSource):
    """Returns a rate even though its backend is down: exactly what the kit must refuse."""

    name = "madeup"

    async def fetch(self) -> FxRate:
        return GOOD


async def test_kit_fails_a_source_that_invents_a_rate_when_down() -> None:
    with pytest.raises(AssertionError, match="must raise"):
        await FxSourceContract().test_fx_contract_failure_raises_promptly(MadeUpFxSource())
