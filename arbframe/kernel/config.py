"""Configuration: YAML files overlaid on the embedded defaults, ``${VAR}`` interpolation, JSON Schema validation.

Validation runs in two passes. Pass 1 (:func:`load_config`) checks the kernel's keys, the sections builtin and
``arbframe.plugins`` modules contribute, and that every selected driver name is installed — importing no driver.
Pass 2 (:func:`validate_full`) runs after the selected drivers are imported and adds their schema fragments.
Every error names the key path, the value (secrets masked) and what was expected.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from arbframe.core.errors import ConfigError, DriverNotInstalled
from arbframe.core.secrets import MASK, mask_url
from arbframe.kernel.entrypoints import DRIVER_GROUPS, installed_names

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SECRET_KEY = re.compile(r"(password|secret|api_key|apikey|token|private_key)", re.IGNORECASE)

# ------------------------------------------------------------------------------------------------- kernel schema
_BOOL = {"type": "boolean"}
_POSITIVE_INT = {"type": "integer", "minimum": 1}
_URL = {"type": "string", "minLength": 1, "writeOnly": True}

KERNEL_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "arbframe configuration",
    "type": "object",
    "properties": {
        "mode": {"enum": ["paper", "backtest", "live"], "description": "paper | backtest | live"},
        "mock_mode": {"type": "boolean", "description": "quote from the kernel's simulated market"},
        "service": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1, "description": "name used in heartbeat keys"},
                "interval_seconds": {"type": "number", "exclusiveMinimum": 0},
            },
            "additionalProperties": False,
        },
        "logging": {
            "type": "object",
            "properties": {"level": {"enum": ["DEBUG", "INFO", "WARNING", "ERROR"]}},
            "additionalProperties": False,
        },
        "storage": {
            "type": "object",
            "properties": {
                "backend": {"type": "string", "minLength": 1, "description": "csv | postgres | hybrid | plugin"},
                "csv": {
                    "type": "object",
                    "properties": {
                        "data_dir": {"type": "string", "minLength": 1},
                        "fsync": {"type": "boolean"},
                    },
                    "additionalProperties": False,
                },
            },
            "additionalProperties": {"type": "object"},
            "required": ["backend"],
        },
        "redis": {
            "type": "object",
            "properties": {
                "enabled": _BOOL,
                "url": _URL,
                "prefix": {"type": "string", "minLength": 1, "pattern": "^[^\\s:]+$"},
                "health_ttl_seconds": _POSITIVE_INT,
            },
            "additionalProperties": True,
        },
        "cache": {
            "type": "object",
            "properties": {"backend": {"type": "string", "minLength": 1}},
            "additionalProperties": True,
        },
        "metrics_server": {
            "type": "object",
            "properties": {
                "enabled": _BOOL,
                "host": {"type": "string", "minLength": 1},
                "port": {"type": "integer", "minimum": 0, "maximum": 65535},
            },
            "additionalProperties": False,
        },
        "fx": {
            "type": "object",
            "properties": {"source": {"type": "string", "minLength": 1}},
            "additionalProperties": True,
        },
    },
    "additionalProperties": False,
}


# ------------------------------------------------------------------------------------------------------ loading
def embedded_defaults_text() -> str:
    return resources.files("arbframe").joinpath("defaults/base.yml").read_text(encoding="utf-8")


def _load_yaml(text: str, source: str) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
        raise ConfigError(f"invalid YAML at {where}: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML in {source}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror}") from None
    return _load_yaml(text, str(p))


def _scalar(text: str) -> Any:
    """A value that was wholly one ``${VAR}``: typed like YAML would type it (``8000`` -> int)."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (bool, int, float, str)) or value is None else text


def interpolate(value: Any, env: Mapping[str, str], *, source: str, path: str = "") -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string; a missing variable without default is an error."""
    if isinstance(value, dict):
        return {k: interpolate(v, env, source=source, path=_join(path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, source=source, path=f"{path}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def repl(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = env.get(name)
        if found is None or (found == "" and default is not None):
            if default is None:
                raise ConfigError(
                    f"{source}: {path}: environment variable ${{{name}}} is not set and has no default "
                    f"(set it, or write ${{{name}:-default}})"
                )
            return default
        return found

    whole = _VAR.fullmatch(value)
    replaced = _VAR.sub(repl, value)
    return _scalar(replaced) if whole and replaced != "" else replaced


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def deep_merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """``overlay`` on ``base``: mappings merge key by key, anything else (lists too) is replaced."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_config(
    paths: Sequence[str | os.PathLike[str]] | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    fragments: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The effective config: embedded defaults, then each file in order, then ``overrides``; validated (pass 1)."""
    env = os.environ if env is None else env
    config = interpolate(_load_yaml(embedded_defaults_text(), "<embedded defaults>"), env, source="defaults")
    sources = ["<embedded defaults>"]
    for path in paths or ():
        overlay = interpolate(read_config_file(path), env, source=str(path))
        config = deep_merge(config, overlay)
        sources.append(str(path))
    if overrides:
        config = deep_merge(config, overrides)
    if fragments is None:
        fragments = _module_fragments()
    validate_kernel(config, fragments, sources=sources)
    return config


def _module_fragments() -> dict[str, Mapping[str, Any]]:
    """Schema fragments of builtin and ``arbframe.plugins`` modules (cheap modules, never drivers)."""
    from arbframe.kernel.loader import collect_schema_fragments, new_plugin_manager, register_builtin_and_plugin_modules

    pm = new_plugin_manager()
    register_builtin_and_plugin_modules(pm)
    return collect_schema_fragments(pm)


# ---------------------------------------------------------------------------------------------------- schemas
def compose_schema(fragments: Mapping[str, Mapping[str, Any]], extra_sections: Iterable[str] = ()) -> dict:
    """The kernel schema with each fragment merged in at its dotted section path."""
    schema = copy.deepcopy(KERNEL_SCHEMA)
    for section in extra_sections:
        schema["properties"].setdefault(section, {"type": "object"})
    for path, fragment in sorted(fragments.items()):
        node = schema
        for part in path.split("."):
            props = node.setdefault("properties", {})
            node = props.setdefault(part, {"type": "object"})
        _merge_schema(node, fragment)
    return schema


def _merge_schema(node: dict[str, Any], fragment: Mapping[str, Any]) -> None:
    for key, value in fragment.items():
        if key == "properties" and isinstance(node.get("properties"), dict):
            node["properties"].update(copy.deepcopy(value))
        elif key == "required" and isinstance(node.get("required"), list):
            node["required"] = sorted(set(node["required"]) | set(value))
        else:
            node[key] = copy.deepcopy(value)


def validate_kernel(
    config: Mapping[str, Any], fragments: Mapping[str, Mapping[str, Any]], *, sources: Sequence[str] = ()
) -> None:
    """Pass 1: kernel and module schemas; every selected driver installed (metadata only)."""

    exchange_sections = [*installed_names(DRIVER_GROUPS["exchange"]), *default_sections()]
    schema = compose_schema(fragments, extra_sections=exchange_sections)
    _validate(config, schema, sources)
    for kind, picks in selected_drivers(config).items():
        names = installed_names(DRIVER_GROUPS[kind])
        for name, key_path in picks:
            if name not in names:
                raise DriverNotInstalled(DRIVER_GROUPS[kind], name, names, key_path)


def validate_full(config: Mapping[str, Any], fragments: Mapping[str, Mapping[str, Any]]) -> None:
    """Pass 2: everything, including the selected drivers' own sections."""

    schema = compose_schema(fragments, extra_sections=[*installed_names(DRIVER_GROUPS["exchange"]),
                                                       *default_sections()])
    _validate(config, schema, ())


def default_sections() -> list[str]:
    """Top-level sections of the embedded defaults: always allowed, so the defaults' ``upbit``/``binance``
    sections do not break a config when those plugins are not installed (a third-party venue in their place)."""
    global _DEFAULT_SECTIONS
    if _DEFAULT_SECTIONS is None:
        _DEFAULT_SECTIONS = list(_load_yaml(embedded_defaults_text(), "<embedded defaults>"))
    return _DEFAULT_SECTIONS


_DEFAULT_SECTIONS: list[str] | None = None


def driver_section_path(kind: str, name: str) -> str:
    if kind == "storage":
        return f"storage.{name}"
    if kind == "cache":
        return "redis" if name == "redis" else "cache"
    if kind == "fx":
        return "fx"
    return name


def _validate(config: Mapping[str, Any], schema: Mapping[str, Any], sources: Sequence[str]) -> None:
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), list(map(str, e.path))))
    if errors:
        raise ConfigError(describe_error(errors[0], schema, sources))


def describe_error(error: Any, schema: Mapping[str, Any], sources: Sequence[str] = ()) -> str:
    """One line: where (files), key path, value (masked when secret) and what was expected."""
    path = ".".join(str(p) for p in error.absolute_path) or "<top level>"
    value = error.instance
    last_key = str(error.absolute_path[-1]) if error.absolute_path else ""
    shown = MASK if _SECRET_KEY.search(last_key) or error.schema.get("writeOnly") else repr(value)
    where = f"config error ({', '.join(sources)}): " if sources else "config error: "
    kind = error.validator
    if kind == "additionalProperties":
        allowed = list((error.schema.get("properties") or {}).keys())
        extras = [k for k in value if k not in allowed] if isinstance(value, Mapping) else []
        parts = []
        for extra in extras:
            key = _join("" if path == "<top level>" else path, extra)
            close = difflib.get_close_matches(str(extra), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            parts.append(f"{key}: unknown key{hint}")
        expected = ", ".join(sorted(allowed))
        return f"{where}{'; '.join(parts)}; expected one of: {expected}"
    if kind == "type":
        expected = error.validator_value
        return f"{where}{path}: expected {_plural(expected)}, got {shown}"
    if kind == "enum":
        options = ", ".join(map(repr, error.validator_value))
        close = difflib.get_close_matches(str(value), [str(o) for o in error.validator_value], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{where}{path}: {shown} is not allowed{hint}; expected one of {options}"
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        op = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}[kind]
        return f"{where}{path}: {shown} is out of range; expected a number {op} {error.validator_value}"
    if kind == "required":
        return f"{where}{path}: {error.message}"
    return f"{where}{path}: {shown} is not valid: {error.message if shown != MASK else kind}"


def _plural(expected: Any) -> str:
    names = expected if isinstance(expected, list) else [expected]
    return " or ".join(f"a {n}" if n not in ("integer", "object", "array") else f"an {n}" for n in names).replace(
        "a boolean", "a boolean (true/false)"
    )


# ------------------------------------------------------------------------------------------------------ masking
def masked(config: Any, schema: Mapping[str, Any] | None = None, *, key: str = "") -> Any:
    """A copy safe to print: ``writeOnly`` values and secret-looking keys masked, passwords cut out of URLs."""
    schema = schema or {}
    if isinstance(config, Mapping):
        props = schema.get("properties", {}) if isinstance(schema, Mapping) else {}
        return {k: masked(v, props.get(k, {}), key=str(k)) for k, v in config.items()}
    if isinstance(config, list):
        return [masked(v, schema.get("items", {}) if isinstance(schema, Mapping) else {}, key=key) for v in config]
    if isinstance(config, str):
        if _SECRET_KEY.search(key) and config:
            return MASK
        if schema.get("writeOnly") and "://" not in config and config:
            return MASK
        if "://" in config or "password=" in config.lower():
            return mask_url(config)
    return config

def cache_backend(config: Mapping[str, Any]) -> str:
    """``redis`` when Redis is enabled (or the hybrid storage asks for it), else the configured/builtin cache."""
    redis = config.get("redis", {}) or {}
    if redis.get("enabled") or config.get("storage", {}).get("backend") == "hybrid":
        return "redis"
    return str((config.get("cache") or {}).get("backend", "memory"))


def selected_drivers(config: Mapping[str, Any]) -> dict[str, list[tuple[str, str]]]:
    storage = str(config.get("storage", {}).get("backend", "csv"))
    storage_driver = "csv" if storage == "hybrid" else storage
    arbitrage = config.get("arbitrage", {}) or {}
    exchanges = [
        (str(arbitrage.get(role)), f"arbitrage.{role}") for role in ("domestic", "foreign") if arbitrage.get(role)
    ]
    return {
        "storage": [(storage_driver, "storage.backend")],
        "cache": [(cache_backend(config), "redis.enabled")],
        "exchange": exchanges,
        "fx": [(str((config.get("fx") or {}).get("source", "static")), "fx.source")],
    }


def schema_defaults(schema: Mapping[str, Any] | None, section: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``section`` with every missing (or null) key filled from the schema's ``default`` values, nested objects
    included, so a driver declares each default once, in its ``config_schema()``."""
    out: dict[str, Any] = {k: v for k, v in (section or {}).items() if v is not None}
    for key, prop in ((schema or {}).get("properties") or {}).items():
        if not isinstance(prop, Mapping):
            continue
        if key not in out and "default" in prop:
            out[key] = copy.deepcopy(prop["default"])
        if prop.get("properties") and isinstance(out.get(key, {}), Mapping):
            nested = schema_defaults(prop, out.get(key) or {})
            if nested or key in out:
                out[key] = nested
    return out
