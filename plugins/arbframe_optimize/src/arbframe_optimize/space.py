"""The search space: ``optimize.space`` read and checked against the config schema, then sampled per trial.

Each entry maps a parameter path to a range or to choices::

    optimize:
      space:
        arbitrage.entry_threshold: {low: 0.002, high: 0.03, log: true}
        arbitrage.order_notional_krw: {low: 200000, high: 2000000, step: 100000}
        arbitrage.max_holding_seconds: {choices: [600, 3600, null]}

A path must name a value the replay reads (``arbitrage.*``, ``paper.*``, ``fx.max_age_seconds``) and every
value of its range must be one the config schema accepts there: otherwise ``arbframe optimize`` exits with
status 2 and one line naming the path, before any trial runs. Integer keys sample integers.
"""

from __future__ import annotations

import copy
import difflib
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from arbframe import ConfigError

#: sections a replay reads (None: every key) -> the keys of it that may be tuned
TUNABLE: dict[str, frozenset[str] | None] = {"arbitrage": None, "paper": None, "fx": frozenset({"max_age_seconds"})}
#: keys inside those sections that change nothing in a search's replay
NOT_REPLAYED: dict[str, str] = {
    "arbitrage.domestic": "a replay takes its venues from the recording header",
    "arbitrage.foreign": "a replay takes its venues from the recording header",
    "arbitrage.log_spreads": "a search's replays record nothing",
    "arbitrage.spread_log_interval_seconds": "a search's replays record nothing",
}


@dataclass(frozen=True)
class Param:
    """One dimension of the search space."""

    path: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] | None = None
    integer: bool = False

    def describe(self) -> str:
        if self.choices is not None:
            return f"one of {list(self.choices)}"
        scale = ", log scale" if self.log else ""
        step = f", step {self.step}" if self.step is not None else ""
        kind = "integer" if self.integer else "number"
        return f"{kind} {self.low} .. {self.high}{scale}{step}"

    def as_dict(self) -> dict[str, Any]:
        """What a study records of this dimension (a study joined with another space is refused)."""
        if self.choices is not None:
            return {"choices": list(self.choices)}
        return {"low": self.low, "high": self.high, "log": self.log, "step": self.step, "integer": self.integer}


def _fail(path: str, text: str) -> ConfigError:
    return ConfigError(f"config error: optimize.space.{path}: {text}")


def _node(schema: Mapping[str, Any], path: str) -> Mapping[str, Any] | None:
    """The schema of the value at ``path`` (through ``properties`` or a mapping's ``additionalProperties``)."""
    node: Mapping[str, Any] = schema
    for part in path.split("."):
        props = node.get("properties") or {}
        if part in props:
            node = props[part]
        elif isinstance(node.get("additionalProperties"), Mapping):
            node = node["additionalProperties"]
        else:
            return None
    return node


def _leaf_paths(node: Mapping[str, Any], prefix: str) -> Iterator[str]:
    for key, sub in (node.get("properties") or {}).items():
        path = f"{prefix}.{key}"
        if isinstance(sub, Mapping) and sub.get("properties"):
            yield from _leaf_paths(sub, path)
        else:
            yield path


def _types(node: Mapping[str, Any]) -> set[str]:
    kind = node.get("type")
    if kind is None:
        return set()
    return {kind} if isinstance(kind, str) else set(kind)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _mismatch(node: Mapping[str, Any], value: Any) -> str | None:
    """Why the schema ``node`` refuses ``value`` (type, enum, bounds), or None."""
    types = _types(node)
    if types:
        ok = (
            ("null" in types and value is None)
            or ("boolean" in types and isinstance(value, bool))
            or ("string" in types and isinstance(value, str))
            or ("number" in types and _is_number(value))
            or ("integer" in types and _is_number(value) and float(value).is_integer())
        )
        if not ok:
            return f"{value!r} is not of type {' or '.join(sorted(types))}"
    if "enum" in node and value not in node["enum"]:
        return f"{value!r} is not one of {node['enum']}"
    if _is_number(value):
        for key, holds, op in (("minimum", lambda v, b: v >= b, ">="), ("maximum", lambda v, b: v <= b, "<="),
                               ("exclusiveMinimum", lambda v, b: v > b, ">"),
                               ("exclusiveMaximum", lambda v, b: v < b, "<")):
            bound = node.get(key)
            if bound is not None and not holds(value, bound):
                return f"{value!r} is outside the schema's bounds (expected {op} {bound})"
    return None


def parse_space(space: Mapping[str, Any], schema: Mapping[str, Any]) -> list[Param]:
    """``optimize.space`` as parameters, each checked against ``schema`` (``arbframe.config_schema()``)."""
    if not space:
        raise ConfigError("config error: optimize.space: empty; expected at least one parameter path -> "
                          "{low, high} or {choices} (see docs/OPTIMIZE.md)")
    tunable_paths = sorted(p for section in TUNABLE for p in _leaf_paths(_node(schema, section) or {}, section)
                           if p not in NOT_REPLAYED and _allowed(p))
    params = []
    for path, spec in space.items():
        path = str(path)
        rest = path.partition(".")[2]
        node = _node(schema, path) if rest else None
        if node is None:
            close = difflib.get_close_matches(path, tunable_paths, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise _fail(path, f"unknown parameter path{hint}; expected a key the replay reads, such as "
                              "arbitrage.entry_threshold")
        if not _allowed(path):
            raise _fail(path, "a replay does not read it; expected a key under arbitrage, paper or "
                              "fx.max_age_seconds")
        if path in NOT_REPLAYED:
            raise _fail(path, f"tuning it changes nothing: {NOT_REPLAYED[path]}")
        if "object" in _types(node) or "array" in _types(node) or node.get("properties"):
            raise _fail(path, "names a section or a list, not a single value")
        params.append(_param(path, spec, node))
    return params


def _allowed(path: str) -> bool:
    section, _, rest = path.partition(".")
    if section not in TUNABLE:
        return False
    keys = TUNABLE[section]
    return keys is None or rest in keys


def _param(path: str, spec: Any, node: Mapping[str, Any]) -> Param:
    if not isinstance(spec, Mapping):
        raise _fail(path, f"expected {{low, high}} or {{choices}}, got {spec!r}")
    if "choices" in spec:
        extra = sorted(set(spec) - {"choices"})
        if extra:
            raise _fail(path, f"choices cannot be combined with {', '.join(extra)}")
        choices = tuple(spec["choices"] or ())
        if not choices:
            raise _fail(path, "choices: expected at least one value")
        for choice in choices:
            why = _mismatch(node, choice)
            if why is not None:
                raise _fail(path, f"choice {why}")
        return Param(path, choices=choices)
    low, high = spec.get("low"), spec.get("high")
    if not _is_number(low) or not _is_number(high):
        raise _fail(path, f"expected numbers low and high (or choices), got low={low!r} high={high!r}")
    types = _types(node)
    if not types & {"number", "integer"}:
        raise _fail(path, f"a range needs a numeric key; this one is {' or '.join(sorted(types)) or 'untyped'} "
                          "(use choices)")
    if not low < high:
        raise _fail(path, f"low {low!r} must be below high {high!r}")
    integer = "integer" in types and "number" not in types
    log = bool(spec.get("log", False))
    step = spec.get("step")
    if step is not None and (not _is_number(step) or step <= 0):
        raise _fail(path, f"step must be a positive number, got {step!r}")
    if log and low <= 0:
        raise _fail(path, f"a log scale needs low > 0, got {low!r}")
    if log and step is not None:
        raise _fail(path, "log and step cannot be combined")
    if integer:
        for name, value in (("low", low), ("high", high), ("step", step)):
            if value is not None and not float(value).is_integer():
                raise _fail(path, f"{name} must be a whole number for this integer key, got {value!r}")
        low, high = int(low), int(high)
        step = None if step is None else int(step)
    if step is not None:
        steps = (high - low) / step
        if abs(steps - round(steps)) > 1e-9 * max(1.0, abs(steps)):
            raise _fail(path, f"high {high!r} must be low {low!r} plus a whole number of steps of {step!r}")
    for name, value in (("low", low), ("high", high)):
        why = _mismatch(node, value)
        if why is not None:
            raise _fail(path, f"range {low!r} .. {high!r}: {name} {why}")
    return Param(path, low=low, high=high, log=log, step=step, integer=integer)


def suggest(trial: Any, params: list[Param]) -> dict[str, Any]:
    """Parameter path -> value for an Optuna trial."""
    values: dict[str, Any] = {}
    for p in params:
        if p.choices is not None:
            values[p.path] = trial.suggest_categorical(p.path, list(p.choices))
        elif p.integer:
            values[p.path] = trial.suggest_int(p.path, int(p.low), int(p.high),  # type: ignore[arg-type]
                                               step=int(p.step or 1), log=p.log)
        else:
            values[p.path] = trial.suggest_float(p.path, float(p.low), float(p.high),  # type: ignore[arg-type]
                                                 step=None if p.step is None else float(p.step), log=p.log)
    return values


def overlay(values: Mapping[str, Any]) -> dict[str, Any]:
    """Parameter path -> value as a nested config overlay."""
    out: dict[str, Any] = {}
    for path, value in values.items():
        node = out
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def apply(config: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` with each parameter path set to its value."""
    out = copy.deepcopy(dict(config))
    for path, value in values.items():
        node = out
        *parents, last = path.split(".")
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[last] = value
    return out
