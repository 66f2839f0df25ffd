"""The health report (seed D2 §2–3): one bounded check per component, run concurrently, aggregated.

Checks come from the plugins that own the components (``arbframe_health_checks``: REDIS from the Redis plugin,
POSTGRES and CSV from the storage plugins, one per enabled exchange; STORAGE from the kernel's storage writer in
the running service) plus the kernel's own: FX (the USD/KRW rate read through the cache, as any second process
sees it), HEARTBEAT (freshness of the running service's heartbeat: its heartbeat file, so no Redis is needed,
else the shared cache), LIVENESS (the loop completed a tick within ``max(3 x interval, 10 s)``: ERROR when not,
which is what ``/health`` answers 503 for) and READINESS (storage writable or safely spooling, venues reachable,
not killed; WARN when not). See :mod:`arbframe.service.liveness`.

Every check runs at the same time as the others, a sync probe in a daemon thread and an async probe as a
coroutine on its own loop in that thread, each bounded by its ``timeout_seconds`` (and by the report's overall
budget): a check that does not answer in time is ``ERROR`` and is left behind, so with every server down the
report still answers within seconds. Messages never contain secrets (URL passwords are cut out as a last line of
defence).

The text layout and icons are the seed's (its title with the product renamed)::

    ────────────────────────────────────────────────────────────
    arbframe: Health Check Report
    ────────────────────────────────────────────────────────────

    [REDIS     ] ✅ OK       Connected to redis://localhost:6379/0
    [POSTGRES  ] ✅ OK       Connected to localhost:5432/arbitrage
    [CSV       ] ✅ OK       CSV storage at data

    Overall:       ✅ OK
    ────────────────────────────────────────────────────────────
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arbframe.core.mappings import section
from arbframe.core.models import utcnow
from arbframe.core.secrets import scrub
from arbframe.kernel.config import driver_section, fx_source_name
from arbframe.kernel.entrypoints import DRIVER_GROUPS, installed_names
from arbframe.kernel.interfaces import Cache, FxSource, HealthCheck, HealthResult, HealthStatus

if TYPE_CHECKING:
    from arbframe.kernel.plugin_host import Kernel

log = logging.getLogger("arbframe.health")

TITLE = "arbframe: Health Check Report"
RULE = "─" * 60
#: components shown first, in the seed's order; the rest follow in the order they were contributed
PREFERRED_ORDER = ("redis", "postgres", "csv")
#: kernel checks come last
KERNEL_COMPONENTS = ("fx", "heartbeat", "liveness", "readiness")
#: the kernel checks read the cache within this bound, so a hung cache makes them SKIP (FX falls back to the
#: source) instead of timing out; the cache's own row (REDIS) reports the problem
CACHE_READ_SECONDS = 0.4

_SEVERITY = {
    HealthStatus.OK: 0,
    HealthStatus.SKIP: 0,
    HealthStatus.DISABLED: 0,
    HealthStatus.WARN: 1,
    HealthStatus.ERROR: 2,
}
# ---------------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class CheckOutcome:
    """One row of the report: the check's result and how long it took."""

    result: HealthResult
    duration_seconds: float

    @property
    def component(self) -> str:
        return self.result.component

    @property
    def status(self) -> HealthStatus:
        return self.result.status

    def to_dict(self) -> dict[str, Any]:
        return {
            "component": self.result.component,
            "status": self.result.status.value,
            "message": self.result.message,
            "details": _jsonable(self.result.details),
            "duration_ms": round(self.duration_seconds * 1000, 3),
        }


def aggregate_status(statuses: Iterable[HealthStatus]) -> HealthStatus:
    """ERROR if any check is ERROR, else WARN if any is WARN, else OK (SKIP and DISABLED are neutral)."""
    worst = HealthStatus.OK
    for status in statuses:
        if _SEVERITY[status] > _SEVERITY[worst]:
            worst = status
    return worst


@dataclass
class HealthReport:
    outcomes: list[CheckOutcome]
    generated_at: datetime = field(default_factory=utcnow)
    duration_seconds: float = 0.0

    @property
    def overall(self) -> HealthStatus:
        return aggregate_status(o.status for o in self.outcomes)

    @property
    def exit_code(self) -> int:
        """0, or 1 when any check is ERROR (seed D2 §3)."""
        return 1 if self.overall is HealthStatus.ERROR else 0

    def result(self, component: str) -> HealthResult | None:
        for outcome in self.outcomes:
            if outcome.component.lower() == component.lower():
                return outcome.result
        return None

    def to_dict(self) -> dict[str, Any]:
        overall = self.overall.value
        return {
            "status": overall,
            "overall": overall,
            "generated_at": self.generated_at.isoformat(),
            "duration_ms": round(self.duration_seconds * 1000, 3),
            "checks": [o.to_dict() for o in self.outcomes],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def format(self, verbose: bool = False) -> str:
        return format_health_report(self, verbose=verbose)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return scrub(value) if isinstance(value, str) else value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    enum_value = getattr(value, "value", None)
    if isinstance(enum_value, (str, int, float)):
        return enum_value
    return scrub(str(value))


def format_line(result: HealthResult) -> str:
    status = result.status
    return f"[{result.component.upper():<10}] {status.icon} {status.value:<8} {result.message}"


def format_health_report(report: HealthReport, verbose: bool = False) -> str:
    """The seed's layout: title between rules, one line per component, the overall status, a closing rule."""
    lines = [RULE, TITLE, RULE, ""]
    for outcome in report.outcomes:
        lines.append(format_line(outcome.result))
        if verbose:
            pad = " " * 13
            lines.append(f"{pad}took {outcome.duration_seconds * 1000:.1f} ms")
            for key, value in outcome.result.details.items():
                lines.append(f"{pad}{key}: {_jsonable(value)}")
    overall = report.overall
    lines += ["", f"Overall:       {overall.icon} {overall.value}"]
    if verbose:
        lines.append(f"Checked {len(report.outcomes)} component(s) in {report.duration_seconds:.2f} s "
                     f"at {report.generated_at.isoformat(timespec='seconds')}")
    lines.append(RULE)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- running
def _await(awaitable: Awaitable[Any]) -> Any:
    async def wrapper() -> Any:
        return await awaitable

    return asyncio.run(wrapper())


def _run_probe(check: HealthCheck, box: dict[str, Any], timeout: float) -> None:
    started = time.perf_counter()
    try:
        value = check.probe()
        if inspect.isawaitable(value):
            pending: Awaitable[Any] = value

            async def bounded() -> Any:
                return await asyncio.wait_for(pending, timeout)

            value = asyncio.run(bounded())
        box["result"] = value
    except BaseException as exc:  # reported as the check's ERROR
        box["error"] = exc
    finally:
        box["duration"] = time.perf_counter() - started


def _outcome(check: HealthCheck, box: dict[str, Any], timeout: float, waited: float) -> CheckOutcome:
    component = check.component
    if "result" in box:
        value = box["result"]
        if isinstance(value, HealthResult):
            result = value if value.component else HealthResult(component, value.status, value.message, value.details)
            result = HealthResult(result.component, result.status, scrub(result.message), result.details)
        else:
            result = HealthResult(component, HealthStatus.ERROR, f"check returned {type(value).__name__}, "
                                                                 "not a HealthResult")
        return CheckOutcome(result, box.get("duration", waited))
    if "error" in box:
        exc = box["error"]
        if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
            message = f"no answer within {timeout:.1f}s"
        else:
            message = f"check failed: {type(exc).__name__}: {exc}"
        return CheckOutcome(HealthResult(component, HealthStatus.ERROR, scrub(message)), box.get("duration", waited))
    return CheckOutcome(HealthResult(component, HealthStatus.ERROR, f"no answer within {timeout:.1f}s"), waited)


def run_checks(checks: Sequence[HealthCheck], *, budget_seconds: float | None = None) -> list[CheckOutcome]:
    """Run every check concurrently, each bounded by its timeout (and all by ``budget_seconds``).

    A probe that overruns is reported as ERROR and abandoned (its daemon thread ends on its own or with the
    process); the order of the outcomes is the order of ``checks``.
    """
    started = time.monotonic()
    slots = []
    for check in checks:
        timeout = max(0.0, float(check.timeout_seconds))
        if budget_seconds is not None:
            timeout = min(timeout, max(0.0, budget_seconds))
        box: dict[str, Any] = {}
        thread = threading.Thread(
            target=_run_probe, args=(check, box, timeout), name=f"health-{check.component}", daemon=True
        )
        thread.start()
        slots.append((check, box, thread, timeout))
    outcomes = []
    for check, box, thread, timeout in slots:
        thread.join(max(0.0, started + timeout - time.monotonic()))
        outcomes.append(_outcome(check, box, timeout, time.monotonic() - started))
    return outcomes


async def run_checks_async(
    checks: Sequence[HealthCheck], *, budget_seconds: float | None = None
) -> list[CheckOutcome]:
    """:func:`run_checks` without blocking the caller's event loop (for the ``/health`` endpoint)."""
    return await asyncio.to_thread(run_checks, checks, budget_seconds=budget_seconds)


def order_checks(checks: Iterable[HealthCheck], then: Sequence[str] = ()) -> list[HealthCheck]:
    """Seed order first (REDIS, POSTGRES, CSV), then ``then`` (e.g. the exchanges, domestic first), then other
    plugins' checks, kernel checks last; one check per component."""
    unique: dict[str, HealthCheck] = {}
    for check in checks:
        key = check.component.lower()
        if key in unique:
            log.debug("duplicate health check for %s ignored", check.component)
            continue
        unique[key] = check

    def rank(item: tuple[int, HealthCheck]) -> tuple[int, int]:
        index, check = item
        name = check.component.lower()
        if name in PREFERRED_ORDER:
            return (0, PREFERRED_ORDER.index(name))
        if name in KERNEL_COMPONENTS:
            return (3, KERNEL_COMPONENTS.index(name))
        if name in then:
            return (1, list(then).index(name))
        return (2, index)

    return [c for _, c in sorted(enumerate(unique.values()), key=rank)]


def build_report(
    checks: Sequence[HealthCheck], *, budget_seconds: float | None = None, then: Sequence[str] = ()
) -> HealthReport:
    started = time.monotonic()
    at = utcnow()
    outcomes = run_checks(order_checks(checks, then), budget_seconds=budget_seconds)
    return HealthReport(outcomes, generated_at=at, duration_seconds=time.monotonic() - started)


async def build_report_async(checks: Sequence[HealthCheck], *, budget_seconds: float | None = None) -> HealthReport:
    return await asyncio.to_thread(build_report, checks, budget_seconds=budget_seconds)


# ---------------------------------------------------------------------------------------------- kernel checks
def heartbeat_check(
    cache: Cache,
    service: str,
    *,
    ttl_seconds: int = 60,
    interval_seconds: float = 30.0,
    clock: Callable[[], datetime] = utcnow,
    timeout_seconds: float = 1.5,
    cache_read_seconds: float = CACHE_READ_SECONDS,
    file: Path | None = None,
) -> HealthCheck:
    """HEARTBEAT: OK when ``service`` beat recently; WARN when the beat is stale or missing (exit status 0);
    SKIP when the cache cannot be read (the cache's own row reports that). With ``file`` (the service's heartbeat
    file) present, the beat is read from it: no cache needed."""
    stale_after = max(2 * float(interval_seconds), 5.0)

    def from_file(path: Path) -> HealthResult | None:
        from arbframe.service.liveness import read_heartbeat

        data = read_heartbeat(path)
        if data is None:
            return None
        stamp = data.get("last_tick_at") or data.get("started_at")
        try:
            ts = datetime.fromisoformat(str(stamp))
        except ValueError:
            return HealthResult("heartbeat", HealthStatus.WARN, f"unreadable heartbeat file {path}")
        interval = float(data.get("interval_seconds") or interval_seconds)
        stale = max(2 * interval, 5.0)
        age = max(0.0, (clock() - ts).total_seconds())
        details = {"service": service, "last_beat": ts.isoformat(), "age_seconds": round(age, 3),
                   "via": str(path)}
        stopped = " (service stopped cleanly)" if data.get("stopped") else ""
        if age > stale:
            return HealthResult("heartbeat", HealthStatus.WARN,
                                f"{service} last beat {age:.0f}s ago (expected every {interval:g}s)", details)
        return HealthResult("heartbeat", HealthStatus.OK, f"{service} alive, last beat {age:.1f}s ago "
                            f"(heartbeat file){stopped}", details)

    def probe() -> HealthResult:
        if file is not None:
            found = from_file(file)
            if found is not None:
                return found
        if not cache.available:
            return HealthResult("heartbeat", HealthStatus.SKIP, f"cache unavailable ({cache.describe()})")
        status, ts = _bounded(lambda: cache.get_heartbeat(service), cache_read_seconds)
        if status != "ok":
            why = (f"cache not answering within {cache_read_seconds:g}s" if status == "timeout"
                   else f"cache read failed ({type(ts).__name__})")
            return HealthResult("heartbeat", HealthStatus.SKIP, f"cannot read the heartbeat of {service}: {why}")
        if ts is None:
            # a cache already known to be down (``degraded``) is not probed again: the cache's own row says why
            if getattr(cache, "degraded", False) or not cache.ping():
                return HealthResult("heartbeat", HealthStatus.SKIP, f"cannot read the heartbeat of {service}: "
                                                                    "cache unreachable")
            return HealthResult(
                "heartbeat", HealthStatus.WARN,
                f"no heartbeat from {service} in the last {ttl_seconds}s (service not running?)",
                {"service": service},
            )
        age = max(0.0, (clock() - ts).total_seconds())
        details = {"service": service, "last_beat": ts.isoformat(), "age_seconds": round(age, 3)}
        if age > stale_after:
            return HealthResult(
                "heartbeat", HealthStatus.WARN,
                f"{service} last beat {age:.0f}s ago (expected every {interval_seconds:g}s)", details,
            )
        return HealthResult("heartbeat", HealthStatus.OK, f"{service} alive, last beat {age:.1f}s ago", details)

    return HealthCheck("heartbeat", probe, timeout_seconds=timeout_seconds)


def fx_check(
    cache: Cache,
    source: FxSource | None = None,
    *,
    max_age_seconds: float = 300.0,
    clock: Callable[[], datetime] = utcnow,
    timeout_seconds: float = 1.5,
    cache_read_seconds: float = CACHE_READ_SECONDS,
) -> HealthCheck:
    """FX: the USD/KRW rate as another process reads it (through the cache), else straight from the source."""

    async def probe() -> HealthResult:
        fx = None
        answered = True
        if cache.available:
            # a blocking read is fine here: this coroutine runs on its own loop in the check's thread
            status, fx = _bounded(cache.get_fx_rate, cache_read_seconds)
            answered = status == "ok"
            fx = fx if answered else None
        if fx is not None:
            age = fx.age_seconds(clock())
            details = {"rate": str(fx.rate), "source": fx.source, "ts": fx.ts.isoformat(),
                       "age_seconds": round(age, 3), "via": cache.name}
            text = f"USD/KRW {fx.rate} from {fx.source}"
            if age > max_age_seconds:
                return HealthResult("fx", HealthStatus.WARN, f"{text} is {age:.0f}s old", details)
            return HealthResult("fx", HealthStatus.OK, f"{text} ({age:.0f}s old, via {cache.name} cache)", details)
        if source is None:
            return HealthResult("fx", HealthStatus.SKIP, "no FX rate in the cache and no source configured")
        try:
            fx = await source.fetch()
        except Exception as exc:
            return HealthResult("fx", HealthStatus.ERROR, f"FX source {source.name or type(source).__name__} "
                                                          f"failed: {type(exc).__name__}: {exc}")
        age = fx.age_seconds(clock())
        details = {"rate": str(fx.rate), "source": fx.source, "ts": fx.ts.isoformat(),
                   "age_seconds": round(age, 3), "via": "source"}
        if age > max_age_seconds:
            return HealthResult("fx", HealthStatus.WARN, f"USD/KRW {fx.rate} from {fx.source} is {age:.0f}s old "
                                                         f"(fx.max_age_seconds={max_age_seconds:g})", details)
        note = ""
        if cache.name != "memory":
            reachable = answered and cache.available and not getattr(cache, "degraded", False)
            if reachable:
                reachable = _bounded(cache.ping, cache_read_seconds) == ("ok", True)
            note = f" (not published to the {cache.name} cache yet)" if reachable else f" ({cache.name} unreachable)"
        return HealthResult("fx", HealthStatus.OK, f"USD/KRW {fx.rate} from {fx.source} ({age:.0f}s old){note}",
                            details)

    return HealthCheck("fx", probe, timeout_seconds=timeout_seconds)


def kernel_checks(
    config: Mapping[str, Any],
    cache: Cache | None,
    *,
    fx_source: FxSource | None = None,
    service_name: str | None = None,
    same_process: bool = False,
) -> list[HealthCheck]:
    """The kernel's own checks: FX always, HEARTBEAT when another process's heartbeat can be seen.

    ``same_process``: the report runs inside the service (``/health``), so even the memory cache holds its
    heartbeat. From the ``arbframe health`` command the memory cache is not shared, so HEARTBEAT is left out.
    """
    from arbframe.service.liveness import heartbeat_path

    checks: list[HealthCheck] = []
    redis = section(config, "redis")
    service = section(config, "service")
    ttl = int(redis.get("health_ttl_seconds", 60) or 60)
    beat_file = heartbeat_path(config)
    has_file = not same_process and beat_file.exists()
    if cache is not None:
        checks.append(fx_check(cache, fx_source, max_age_seconds=float(section(config, "fx").get(
            "max_age_seconds", 300) or 300)))
        if same_process or cache.name != "memory" or has_file:
            checks.append(heartbeat_check(
                cache, service_name or str(service.get("name") or "bot_service"),
                ttl_seconds=ttl, interval_seconds=float(service.get("interval_seconds", 30) or 30),
                file=beat_file if has_file else None,
            ))
    elif fx_source is not None:
        from arbframe.builtins.memory_cache import MemoryCache

        checks.append(fx_check(MemoryCache(), fx_source, max_age_seconds=float(section(config, "fx").get(
            "max_age_seconds", 300) or 300)))
    if not same_process:
        checks += file_loop_checks(beat_file)
    return checks


def file_loop_checks(path: Path) -> list[HealthCheck]:
    """LIVENESS and READINESS of the service whose heartbeat file is ``path`` (``arbframe health``). No file: no
    service has run with this config here, so both SKIP (``--live`` still fails)."""
    from arbframe.service.liveness import liveness_from_file, read_heartbeat, readiness_from_file

    def stopped() -> bool:
        return bool((read_heartbeat(path) or {}).get("stopped"))

    def live() -> HealthResult:
        if not path.exists():
            return HealthResult("liveness", HealthStatus.SKIP, f"no service running here (no heartbeat file {path})")
        if stopped():  # a clean stop is not a failure of the report (``--live`` still says not live)
            return HealthResult("liveness", HealthStatus.SKIP, "the service stopped cleanly")
        return liveness_from_file(path)

    def ready() -> HealthResult:
        if not path.exists() or stopped():
            return HealthResult("readiness", HealthStatus.SKIP, "no service running here")
        result = readiness_from_file(path)
        if result.status is HealthStatus.ERROR:  # not ready is a warning in the report; --ready makes it fatal
            return HealthResult("readiness", HealthStatus.WARN, result.message, result.details)
        return result

    return [HealthCheck("liveness", live, timeout_seconds=1.0), HealthCheck("readiness", ready, timeout_seconds=1.0)]


def loop_checks(state: Any) -> list[HealthCheck]:
    """LIVENESS and READINESS of the loop in this process (``/health``)."""

    def live() -> HealthResult:
        ok, why = state.live()
        return HealthResult("liveness", HealthStatus.OK if ok else HealthStatus.ERROR, why,
                            {"ticks": state.ticks, "age_seconds": round(state.age(), 3)})

    def ready() -> HealthResult:
        if state.ready:
            return HealthResult("readiness", HealthStatus.OK, state.ready_reason)
        return HealthResult("readiness", HealthStatus.WARN, f"not ready: {state.ready_reason}")

    return [HealthCheck("liveness", live, timeout_seconds=1.0), HealthCheck("readiness", ready, timeout_seconds=1.0)]


# --------------------------------------------------------------------------------------------- from a kernel
def _bounded(fn: Callable[[], Any], timeout: float) -> tuple[str, Any]:
    """Run ``fn`` in a daemon thread: ("ok", value) | ("error", exc) | ("timeout", None)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True, name="health-build")
    thread.start()
    thread.join(timeout)
    if "value" in box:
        return "ok", box["value"]
    if "error" in box:
        return "error", box["error"]
    return "timeout", None


def _failed(component: str, what: str, exc: BaseException | None, timeout: float) -> HealthCheck:
    message = (f"{what} did not start within {timeout:.1f}s" if exc is None
               else f"{what} failed to start: {type(exc).__name__}: {exc}")
    result = HealthResult(component, HealthStatus.ERROR, scrub(message))
    return HealthCheck(component, lambda: result, timeout_seconds=1.0)


def checks_from_kernel(kernel: Kernel, *, build_timeout: float = 0.8) -> tuple[list[HealthCheck], list[Any]]:
    """Build what contributes checks (cache, CSV and selected storage, selected exchanges, FX source), each
    bounded by ``build_timeout``, then collect every plugin's checks plus the kernel's.

    Returns the checks and the drivers built here (the caller closes them with :func:`close_drivers`).
    """
    config = kernel.config
    context = kernel.context
    built: list[Any] = []
    extra: list[HealthCheck] = []

    def build(kind: str, name: str, section: Mapping[str, Any], key: str) -> Any:
        status, value = _bounded(lambda: kernel.driver_class(kind, name, key)(dict(section or {}), context),
                                 build_timeout)
        if status == "ok":
            kernel.register(value, f"{kind}:{name}")
            built.append(value)
            return value
        extra.append(_failed(name, f"{kind} {name!r}", value if status == "error" else None, build_timeout))
        return None

    storage = section(config, "storage")
    backend = str(storage.get("backend", "csv"))
    build("storage", "csv", driver_section(config, "storage", "csv"), "storage.backend")
    if backend not in ("csv", "hybrid"):
        build("storage", backend, driver_section(config, "storage", backend), "storage.backend")

    cache = None
    try:
        cache = kernel.load_cache()
        built.append(cache)
    except Exception as exc:
        extra.append(_failed("cache", "cache", exc, build_timeout))

    arbitrage = section(config, "arbitrage")
    for role in ("domestic", "foreign"):
        name = arbitrage.get(role)
        if not name:
            continue
        if context.mock and str(name) not in installed_names(DRIVER_GROUPS["exchange"]):
            from arbframe.market.routing import simulated_venue

            venue = kernel.load_exchange(str(name), simulated=functools.partial(simulated_venue, str(name), context,
                                                                                 role=role))
            built.append(venue)
            continue
        build("exchange", str(name), driver_section(config, "exchange", str(name)), f"arbitrage.{role}")

    fx_name = fx_source_name(config)
    fx_source = build("fx", fx_name, driver_section(config, "fx", fx_name), "fx.source")

    checks = kernel.health_checks() + extra
    checks += kernel_checks(config, cache, fx_source=fx_source, service_name=context.service_name)
    return checks, built


def close_drivers(drivers: Iterable[Any]) -> None:
    for driver in drivers:
        close = getattr(driver, "close", None)
        if close is None:
            continue
        try:
            result = close()
            if inspect.isawaitable(result):
                _bounded(functools.partial(_await, result), 1.0)
        except Exception as exc:
            log.debug("closing %s failed: %r", type(driver).__name__, exc)


def report_for_kernel(kernel: Kernel, *, budget_seconds: float = 2.0, build_timeout: float = 0.8) -> HealthReport:
    """Everything ``arbframe health`` does after loading the config: build, check (bounded), close."""
    started = time.monotonic()
    checks, built = checks_from_kernel(kernel, build_timeout=build_timeout)
    remaining = max(1.0, budget_seconds - (time.monotonic() - started))
    try:
        arbitrage = section(kernel.config, "arbitrage")
        exchanges = [str(arbitrage[r]).lower() for r in ("domestic", "foreign") if arbitrage.get(r)]
        report = build_report(checks, budget_seconds=remaining, then=exchanges)
    finally:
        _bounded(lambda: close_drivers(built), 0.5)
    report.duration_seconds = time.monotonic() - started
    return report
