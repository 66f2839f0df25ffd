"""Contract tests every :class:`arbframe.FxSource` must pass (the builtin ``static`` source passes them).

Use it from a plugin's tests with a few lines::

    import pytest
    from arbframe.testing.fx_kit import FxSourceContract

    class TestMyFxContract(FxSourceContract):
        @pytest.fixture
        async def fx_source(self):
            source = MyFxSource({"url": fake_server_url}, None)   # a fake/test endpoint, never the internet
            yield source
            await source.close()

Optionally also override ``failing_fx_source``: a source whose backend is down (a closed port, a fake server
answering 500). The kit then checks that ``fetch()`` *raises* an ``Exception`` promptly (within
``max_wait_seconds``) rather than hanging or returning a made-up rate, so the kernel's FX service can fall back
to the last good rate. Without it those checks are skipped.

Class attributes tune what is checked:

``base`` / ``quote``        the pair the source must quote (``USD`` / ``KRW``)
``rate_range``              plausible bounds of the rate (USD/KRW: 500..5000); catches inverted or scaled rates
``expect_simulated``        None (don't care), True or False: the ``simulated`` flag the rates must carry
``max_wait_seconds``        bound on one ``fetch()`` of a failing source
``max_future_skew``         how far in the future a rate's timestamp may be (clock skew of the venue)

Each check is also available as a plain function (``check_fx_rate``) for use outside the class.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, ClassVar

import pytest

from arbframe.core.models import FxRate
from arbframe.core.records import from_row, to_dict
from arbframe.kernel.interfaces import FxSource

__all__ = ["FxSourceContract", "check_fx_rate"]

_SECRET_WORDS = ("secret", "password", "api_key", "token")


def check_fx_rate(
    fx: Any,
    *,
    base: str = "USD",
    quote: str = "KRW",
    rate_range: tuple[Decimal, Decimal] | None = (Decimal(500), Decimal(5000)),
    max_future_skew: timedelta = timedelta(minutes=5),
    now: datetime | None = None,
) -> None:
    """``fx`` is a storable :class:`arbframe.FxRate` of ``base``/``quote`` with an exact, plausible rate."""
    assert isinstance(fx, FxRate), f"fetch() must return arbframe.FxRate, got {type(fx).__name__}"
    assert isinstance(fx.id, str) and fx.id, "FxRate.id must be a non-empty string (records are keyed by it)"
    assert isinstance(fx.ts, datetime), f"FxRate.ts must be a datetime, got {type(fx.ts).__name__}"
    assert fx.ts.tzinfo is not None and fx.ts.utcoffset() == timedelta(0), f"FxRate.ts must be aware UTC: {fx.ts!r}"
    now = now or datetime.now(timezone.utc)
    assert fx.ts <= now + max_future_skew, f"FxRate.ts {fx.ts.isoformat()} is in the future"
    assert type(fx.rate) is Decimal, f"FxRate.rate must be a Decimal (exact), got {type(fx.rate).__name__}"
    assert fx.rate.is_finite() and fx.rate > 0, f"FxRate.rate must be positive and finite, got {fx.rate}"
    if rate_range is not None:
        low, high = rate_range
        assert low <= fx.rate <= high, (
            f"{fx.base}/{fx.quote} rate {fx.rate} outside the plausible range {low}..{high} "
            "(inverted pair or wrong unit?)"
        )
    assert isinstance(fx.source, str) and fx.source, "FxRate.source must name where the rate came from"
    assert (fx.base, fx.quote) == (base, quote), f"expected a {base}/{quote} rate, got {fx.base}/{fx.quote}"
    assert isinstance(fx.simulated, bool), "FxRate.simulated must be a bool"
    # what storage does with it: text columns and back, exactly
    assert from_row(FxRate, to_dict(fx)) == fx, "FxRate does not round-trip through its stored (text) form"


class FxSourceContract:
    """Base class of an FX source's contract tests. Override the ``fx_source`` fixture."""

    base: ClassVar[str] = "USD"
    quote: ClassVar[str] = "KRW"
    rate_range: ClassVar[tuple[Decimal, Decimal] | None] = (Decimal(500), Decimal(5000))
    expect_simulated: ClassVar[bool | None] = None
    max_wait_seconds: ClassVar[float] = 5.0
    max_future_skew: ClassVar[timedelta] = timedelta(minutes=5)

    @pytest.fixture
    def fx_source(self) -> FxSource:  # pragma: no cover - always overridden
        pytest.fail(f"{type(self).__name__} must override the `fx_source` fixture; see arbframe.testing.fx_kit",
                    pytrace=False)

    @pytest.fixture
    def failing_fx_source(self) -> FxSource:
        pytest.skip("no `failing_fx_source` fixture: the failure checks need a source whose backend is down")

    def _check(self, fx: Any) -> None:
        check_fx_rate(fx, base=self.base, quote=self.quote, rate_range=self.rate_range,
                      max_future_skew=self.max_future_skew)
        if self.expect_simulated is not None:
            assert fx.simulated is self.expect_simulated, f"FxRate.simulated should be {self.expect_simulated}"

    # ------------------------------------------------------------------------------------ identity & config
    async def test_fx_contract_identity(self, fx_source: FxSource) -> None:
        assert isinstance(fx_source, FxSource), "an FX source must subclass arbframe.FxSource"
        name = type(fx_source).name
        assert name and name == name.lower() and " " not in name, f"bad entry-point name {name!r}"
        assert isinstance(type(fx_source).api_version, int)
        schema = type(fx_source).config_schema()
        assert schema is None or (isinstance(schema, dict) and schema.get("type") == "object"), (
            "config_schema() must return None or an object schema"
        )
        for key, prop in ((schema or {}).get("properties") or {}).items():
            if any(word in key.lower() for word in _SECRET_WORDS):
                assert prop.get("writeOnly") is True, f"config key {key!r} holds a secret: mark it writeOnly"

    # --------------------------------------------------------------------------------------------- fetch
    async def test_fx_contract_fetch_returns_a_storable_rate(self, fx_source: FxSource) -> None:
        self._check(await fx_source.fetch())

    async def test_fx_contract_each_fetch_is_a_new_record(self, fx_source: FxSource) -> None:
        first = await fx_source.fetch()
        second = await fx_source.fetch()
        self._check(first)
        self._check(second)
        assert first.id != second.id, "every fetch is a new fx_rates record: ids must differ"
        assert second.ts >= first.ts, "timestamps of successive fetches must not go backwards"

    async def test_fx_contract_concurrent_fetches(self, fx_source: FxSource) -> None:
        rates = await asyncio.wait_for(asyncio.gather(*(fx_source.fetch() for _ in range(3))),
                                       self.max_wait_seconds * 3)
        for fx in rates:
            self._check(fx)
        assert len({fx.id for fx in rates}) == 3, "concurrent fetches must return distinct records"

    async def test_fx_contract_rate_is_immutable(self, fx_source: FxSource) -> None:
        fx = await fx_source.fetch()
        with pytest.raises(dataclasses.FrozenInstanceError):
            fx.rate = Decimal(1)  # type: ignore[misc]

    async def test_fx_contract_close_is_idempotent(self, fx_source: FxSource) -> None:
        await fx_source.fetch()
        await fx_source.close()
        await fx_source.close()

    # ------------------------------------------------------------------------------------------ failures
    async def _failed_fetch(self, source: FxSource) -> tuple[BaseException, float]:
        started = time.monotonic()
        try:
            fx = await asyncio.wait_for(source.fetch(), self.max_wait_seconds + 1.0)
        except Exception as exc:
            return exc, time.monotonic() - started
        raise AssertionError(f"fetch() of a source whose backend is down returned {fx!r}; it must raise")

    async def test_fx_contract_failure_raises_promptly(self, failing_fx_source: FxSource) -> None:
        _exc, elapsed = await self._failed_fetch(failing_fx_source)
        assert elapsed <= self.max_wait_seconds, (
            f"fetch() of a failing source took {elapsed:.1f}s to fail; bound it by a timeout "
            f"(max_wait_seconds={self.max_wait_seconds})"
        )
        await failing_fx_source.close()

    async def test_fx_contract_failure_then_close_is_clean(self, failing_fx_source: FxSource) -> None:
        for _ in range(2):
            await self._failed_fetch(failing_fx_source)
        await failing_fx_source.close()
        await failing_fx_source.close()
