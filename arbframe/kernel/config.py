"""Configuration: YAML files overlaid on the embedded defaults, ``${VAR}`` interpolation, JSON Schema validation.

Validation runs in two passes. Pass 1 (:func:`load_config`) checks the kernel's keys, the sections builtin and
``arbframe.plugins`` modules contribute, and that every selected driver name is installed — importing no driver.
Pass 2 (:func:`validate_full`) runs after the selected drivers are imported and adds their schema fragments.
Every error names the key path, the value (secrets masked) and what was expected.
"""

from __future__ import annotations

import copy
import difflib
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, TypeGuard

from arbframe.core.errors import ConfigError, DriverNotInstalled
from arbframe.core.mappings import section as config_section
from arbframe.core.secrets import MASK, mask_secret_url, mask_url
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
                "interval_seconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 86400},
                "retry_initial_seconds": {
                    "type": "number", "exclusiveMinimum": 0, "maximum": 3600,
                    "description": "first retry of a venue's rules, balances and books that did not load",
                },
                "retry_max_seconds": {
                    "type": "number", "exclusiveMinimum": 0, "maximum": 3600,
                    "description": "the retry interval doubles up to this",
                },
                "event_driven": {
                    "type": "boolean", "default": True,
                    "description": "evaluate a symbol as soon as either of its streamed books changes (coalesced), "
                                   "besides every interval; only venues that stream (use_websocket) trigger",
                },
                "instance_id": {
                    "type": "string", "minLength": 1, "maxLength": 100,
                    "description": "stamped on every record written (default <domestic>-<foreign>-<SYMBOLS>)",
                },
            },
            "additionalProperties": False,
        },
        "logging": {
            "type": "object",
            "properties": {
                "level": {"enum": ["DEBUG", "INFO", "WARNING", "ERROR"]},
                "format": {"enum": ["text", "json"], "description": "json: one JSON object per line"},
            },
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
                "writer": {
                    "type": "object",
                    "description": "the kernel's non-blocking storage writer",
                    "properties": {
                        "queue_size": {"type": "integer", "minimum": 1, "description": "records queued (20000)"},
                        "stall_seconds": {"type": "number", "exclusiveMinimum": 0,
                                          "description": "a driver call this slow diverts records to the spool (1)"},
                        "close_timeout_seconds": {"type": "number", "exclusiveMinimum": 0,
                                                  "description": "bound on closing the storage at shutdown (7)"},
                        "order_journal": {
                            "enum": ["os", "fsync", "off"],
                            "description": "how an order state is durable before live execution's next step: os "
                                           "(default) a journal write, survives the process being killed; fsync "
                                           "(default when storage.csv.fsync) also survives power loss; off: wait "
                                           "until the storage driver has flushed it (docs/LIVE.md, Durability)",
                        },
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


#: a config file larger than this is refused before parsing (the embedded defaults are about 5 kB)
MAX_CONFIG_BYTES = 1_000_000
#: at most this many ``*alias`` references per file, and at most this many nodes once aliases are expanded:
#: anchors stay usable for sharing a block, an alias bomb ("billion laughs") is refused before it is expanded
MAX_ALIASES = 100
MAX_EXPANDED_NODES = 100_000


def _strict_loader() -> type:
    """A ``SafeLoader`` that refuses duplicate keys, recursive aliases and alias bombs (built once, lazily)."""
    global _LOADER
    if _LOADER is not None:
        return _LOADER
    import yaml

    class StrictLoader(yaml.SafeLoader):
        aliases = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                self.aliases += 1
                if self.aliases > MAX_ALIASES:
                    event = self.peek_event()
                    raise yaml.composer.ComposerError(
                        None, None, f"more than {MAX_ALIASES} aliases (*name); refused", event.start_mark)
            return super().compose_node(parent, index)

        def construct_document(self, node: Any) -> Any:
            _check_node_graph(node)
            return super().construct_document(node)

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            if isinstance(node, yaml.MappingNode):
                seen: set[Any] = set()
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        duplicate = key in seen
                        seen.add(key)
                    except TypeError:
                        continue  # an unhashable key: SafeLoader's own error says so below
                    if duplicate:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"duplicate key {str(key)[:60]!r} (each key may appear once in a mapping)",
                            key_node.start_mark)
            return super().construct_mapping(node, deep=deep)

    _LOADER = StrictLoader
    return StrictLoader


_LOADER: type | None = None


def _check_node_graph(root: Any) -> None:
    """Refuse a node graph that loops (``a: &a [*a]``) or that expands past :data:`MAX_EXPANDED_NODES`."""
    import yaml

    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: Any) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise yaml.composer.ComposerError(None, None, "recursive alias (a node that contains itself); refused",
                                              node.start_mark)
        active.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        else:
            children = []
        for child in children:
            total += size(child)
            if total > MAX_EXPANDED_NODES:
                raise yaml.composer.ComposerError(
                    None, None, f"more than {MAX_EXPANDED_NODES:,} values once aliases are expanded "
                                "(an alias bomb?); refused", node.start_mark)
        active.discard(key)
        sizes[key] = total
        return total

    size(root)


#: ``[``/``{`` nesting beyond this is refused before parsing (PyYAML's scanner slows down quadratically with it)
MAX_FLOW_DEPTH = 64
_BRACKETS = re.compile(r"[\[\]{}]")


def _flow_depth(text: str) -> int:
    """The deepest ``[``/``{`` nesting, counted roughly (brackets inside quoted strings count too)."""
    depth = deepest = 0
    for match in _BRACKETS.finditer(text):
        if match.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth = max(depth - 1, 0)
    return deepest


def _load_yaml(text: str, source: str) -> dict[str, Any]:
    import yaml

    if _flow_depth(text) > MAX_FLOW_DEPTH:
        raise ConfigError(f"invalid YAML in {source}: nested too deeply (more than {MAX_FLOW_DEPTH} levels of "
                          "[ ] or { })")
    try:
        data = yaml.load(text, Loader=_strict_loader())  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
        raise ConfigError(f"invalid YAML at {where}: {_one_line(exc.problem or exc)}") from None
    except yaml.YAMLError as exc:
        # a ReaderError (control character) says where by position; its text names no value
        raise ConfigError(f"invalid YAML in {source}: {_one_line(exc)}") from None
    except RecursionError:
        raise ConfigError(f"invalid YAML in {source}: nested too deeply") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(path)
    try:
        if p.exists() and not p.is_file():
            raise ConfigError(f"config file {p} is not a regular file")
        size = p.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"config file {p} is {size:,} bytes; at most {MAX_CONFIG_BYTES:,} are read")
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {p} is not UTF-8 text (byte {exc.start} is not UTF-8); "
                          "is it a binary file?") from None
    if "\x00" in text:
        raise ConfigError(f"config file {p} contains a NUL byte (at offset {text.index(chr(0))}); "
                          "is it a binary file?")
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


#: ``ARBFRAME_<SECTION>__<KEY>[__<KEY>...]`` overrides one key; ``ARBFRAME__<KEY>`` a top-level key (``mode``)
ENV_PREFIX = "ARBFRAME_"


def env_overrides(env: Mapping[str, str]) -> list[tuple[str, list[str], Any]]:
    """``(variable, key path, value)`` of every ``ARBFRAME_<SECTION>__<KEY>`` variable, values parsed as YAML.

    Only names with a double underscore count, so the single-underscore variables the config files interpolate
    (``${ARBFRAME_LIVE_CONFIRM}``) are left alone. Keys are matched case-insensitively against the existing
    config (``PAPER__BALANCES__UPBIT__KRW`` finds ``KRW``), new keys are lower case.
    """
    import yaml

    found = []
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX):]
        if rest.startswith("_"):
            parts = [rest[1:]]
        elif "__" in rest:
            parts = rest.split("__")
        else:
            continue
        if not all(parts):
            raise ConfigError(f"environment variable {name}: empty key in the path (write SECTION__KEY)")
        text = env[name]
        try:
            value = yaml.safe_load(text) if text.strip() else text
        except yaml.YAMLError as exc:
            path = ".".join(p.lower() for p in parts)
            raise ConfigError(f"environment variable {name} ({path}): not a YAML value: {exc}") from None
        found.append((name, parts, value))
    return found


def apply_env_overrides(config: dict[str, Any], env: Mapping[str, str]) -> list[str]:
    """Set every ``ARBFRAME_*__*`` override in ``config`` (in place); returns the variable names applied."""
    applied = []
    for name, parts, value in env_overrides(env):
        node = config
        path = ""
        for i, part in enumerate(parts):
            key = next((k for k in node if str(k).lower() == part.lower()), part.lower())
            path = _join(path, key)
            if i == len(parts) - 1:
                node[key] = value
            else:
                child = node.setdefault(key, {})
                if not isinstance(child, dict):
                    raise ConfigError(f"environment variable {name}: {path} is {type(child).__name__}, not a section")
                node = child
        applied.append(name)
    return applied


def merged_config(
    paths: Sequence[str | os.PathLike[str]] | None = None, *, env: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Defaults, each file in order, then the environment's overrides, interpolated but not validated; and the
    sources (files and override variables) for error messages."""
    env = os.environ if env is None else env
    config = interpolate(_load_yaml(embedded_defaults_text(), "<embedded defaults>"), env, source="defaults")
    sources = ["<embedded defaults>"]
    for path in paths or ():
        overlay = interpolate(read_config_file(path), env, source=str(path))
        config = deep_merge(config, overlay)
        sources.append(str(path))
    sources += [f"${name}" for name in apply_env_overrides(config, env)]
    return config, sources


def load_config(
    paths: Sequence[str | os.PathLike[str]] | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    fragments: Mapping[str, Mapping[str, Any]] | None = None,
    check_installed: bool = True,
) -> dict[str, Any]:
    """The effective config: embedded defaults, then each file in order, then ``ARBFRAME_<SECTION>__<KEY>``
    environment overrides, then ``overrides`` (command-line options); validated (pass 1).

    ``check_installed=False`` skips the check that the selected drivers are installed (``config schema``)."""
    config, sources = merged_config(paths, env=env)
    if overrides:
        config = deep_merge(config, overrides)
    if fragments is None:
        fragments = _module_fragments()
    validate_kernel(config, fragments, sources=sources, check_installed=check_installed)
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


def config_schema() -> dict[str, Any]:
    """The JSON Schema :func:`load_config` validates against (pass 1): the kernel's keys and the sections builtin
    and ``arbframe.plugins`` modules contribute; drivers' own sections are left out (they load with the driver).

    For tools that check a key path or a value range before they use it (``arbframe optimize``)."""
    return compose_schema(_module_fragments(), extra_sections=[*top_level_driver_sections(), *default_sections()])


def check_config(config: Mapping[str, Any], schema: Mapping[str, Any] | None = None) -> None:
    """Pass 1's checks of a config changed in code (finite numbers, ``schema``, the rules that tie keys together),
    without reading a file or scanning installed plugins: raises :class:`ConfigError` naming the key path.

    ``schema`` defaults to :func:`config_schema`; pass it in when checking many configs."""
    _check_finite(config, ())
    _validate(config, config_schema() if schema is None else schema, ())
    check_rules(config)


def _merge_schema(node: dict[str, Any], fragment: Mapping[str, Any]) -> None:
    for key, value in fragment.items():
        if key == "properties" and isinstance(node.get("properties"), dict):
            node["properties"].update(copy.deepcopy(value))
        elif key == "required" and isinstance(node.get("required"), list):
            node["required"] = sorted(set(node["required"]) | set(value))
        else:
            node[key] = copy.deepcopy(value)


def validate_kernel(
    config: Mapping[str, Any], fragments: Mapping[str, Mapping[str, Any]], *, sources: Sequence[str] = (),
    check_installed: bool = True,
) -> None:
    """Pass 1: kernel and module schemas; every selected driver installed (metadata only)."""

    exchange_sections = [*top_level_driver_sections(), *default_sections()]
    schema = compose_schema(fragments, extra_sections=exchange_sections)
    _check_finite(config, sources)
    _validate(config, schema, sources)
    check_rules(config, sources)
    if check_installed:
        for kind, name, key_path in missing_drivers(config):
            raise DriverNotInstalled(DRIVER_GROUPS[kind], name, installed_names(DRIVER_GROUPS[kind]), key_path)


def missing_drivers(config: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(kind, name, key path) of every selected driver no installed distribution provides.

    In mock mode the venues are served by the kernel's simulated market, so a missing exchange plugin is not
    missing (``arbframe run --mock`` needs nothing but the kernel and a storage plugin).
    """
    mock = bool(config.get("mock_mode"))
    missing = []
    for kind, picks in selected_drivers(config).items():
        if kind == "exchange" and mock:
            continue
        names = installed_names(DRIVER_GROUPS[kind])
        missing += [(kind, name, key_path) for name, key_path in picks if name not in names]
    return missing


def _check_finite(value: Any, sources: Sequence[str], path: str = "") -> None:
    """NaN and infinities compare false with everything, so a threshold of ``.nan`` would never trigger."""
    if isinstance(value, float) and not math.isfinite(value):
        where = f"config error ({', '.join(sources)}): " if sources else "config error: "
        raise ConfigError(f"{where}{path or '<top level>'}: {value!r} is not a finite number")
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check_finite(item, sources, _join(path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_finite(item, sources, f"{path}[{i}]")


#: URL schemes redis-py accepts in ``redis.url``
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def check_rules(config: Mapping[str, Any], sources: Sequence[str] = ()) -> None:
    """Rules that tie keys together (JSON Schema compares no two values): one line naming the keys."""
    where = f"config error ({', '.join(sources)}): " if sources else "config error: "
    arb = config_section(config, "arbitrage")
    domestic, foreign = arb.get("domestic"), arb.get("foreign")
    if domestic is not None and domestic == foreign:
        raise ConfigError(f"{where}arbitrage.domestic and arbitrage.foreign are both {domestic!r}; "
                          "expected two different venues")
    entry, exit_ = arb.get("entry_threshold"), arb.get("exit_threshold")
    if _is_number(entry) and _is_number(exit_) and exit_ > entry:
        raise ConfigError(f"{where}arbitrage.exit_threshold {exit_!r} is above arbitrage.entry_threshold "
                          f"{entry!r}; expected exit <= entry (a position would close as soon as it opened)")
    zone = arb.get("timezone")
    if isinstance(zone, str) and not _known_zone(zone):
        raise ConfigError(f"{where}arbitrage.timezone: {zone[:60]!r} is not a time zone name; expected an IANA name "
                          "such as 'Asia/Seoul' or 'UTC'")
    redis = config_section(config, "redis")
    url = redis.get("url")
    if isinstance(url, str) and not url.lower().startswith(REDIS_SCHEMES):
        scheme = url.split("://", 1)[0] if "://" in url else ""
        shown = f"scheme {scheme + '://'!r}" if re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]{0,15}", scheme) else "no scheme"
        raise ConfigError(f"{where}redis.url: {MASK} is not a Redis URL ({shown}); expected one starting with "
                          f"{', '.join(REDIS_SCHEMES)}")


def _known_zone(name: str) -> bool:
    """A name ``arbframe.trading.statistics.load_timezone`` accepts (it falls back for these without tzdata)."""
    from zoneinfo import ZoneInfo

    if name in ("Asia/Seoul", "KST", "UTC", "Etc/UTC"):
        return True
    try:
        ZoneInfo(name)
    except (ValueError, OSError, LookupError):  # ZoneInfoNotFoundError is a KeyError; bad names raise ValueError
        return False
    return True


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate_full(config: Mapping[str, Any], fragments: Mapping[str, Mapping[str, Any]]) -> None:
    """Pass 2: everything, including the selected drivers' own sections."""

    schema = compose_schema(fragments, extra_sections=[*top_level_driver_sections(), *default_sections()])
    _validate(config, schema, ())


def default_sections() -> list[str]:
    """Top-level sections of the embedded defaults: always allowed, so the defaults' ``upbit``/``binance``
    sections do not break a config when those plugins are not installed (a third-party venue in their place)."""
    global _DEFAULT_SECTIONS
    if _DEFAULT_SECTIONS is None:
        _DEFAULT_SECTIONS = list(_load_yaml(embedded_defaults_text(), "<embedded defaults>"))
    return _DEFAULT_SECTIONS


_DEFAULT_SECTIONS: list[str] | None = None


#: where each kind's driver sections live. One rule: a driver's section is named after the driver (its entry-point
#: name, the value that selects it), inside its kind's namespace: the top level for exchanges and caches (the seed's
#: ``upbit:``, ``redis:``), ``storage.`` for storage (the seed's ``storage.postgres``), ``fx.`` for FX sources
#: (``fx.forex``)
SECTION_NAMESPACES: dict[str, str] = {"exchange": "", "cache": "", "storage": "storage.", "fx": "fx."}


def driver_section_path(kind: str, name: str) -> str:
    """The dotted config path of driver ``name``'s own section (see :data:`SECTION_NAMESPACES`)."""
    return SECTION_NAMESPACES.get(kind, "") + name


def driver_section(config: Mapping[str, Any], kind: str, name: str) -> dict[str, Any]:
    """Driver ``name``'s own section of ``config`` (empty when absent).

    An FX source also sees the kernel's shared ``fx`` keys beside its own (its own win): FX plugins written before
    the one-rule layout read their keys from the whole ``fx`` mapping, and keep working."""
    node: Any = config
    for part in driver_section_path(kind, name).split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    own = dict(node) if isinstance(node, Mapping) else {}
    if kind == "fx":
        return {**(config.get("fx") or {}), **own}
    return own


def top_level_driver_sections() -> list[str]:
    """Top-level sections an installed driver may own (exchanges, caches): allowed before the driver is loaded."""
    return [name for kind, space in SECTION_NAMESPACES.items() if not space
            for name in installed_names(DRIVER_GROUPS[kind])]


#: schema keyword of an object section, ``{"key": "other_key", ...}``: each key's value (or its schema default) must
#: be greater than the other key's (JSON Schema compares no two values); ``arbframe config validate`` refuses it
GREATER_THAN_KEYWORD = "x-arbframe-greater-than"


def _greater_than(validator: Any, rule: Mapping[str, str], instance: Any, schema: Mapping[str, Any]) -> Any:
    from jsonschema import ValidationError

    if not isinstance(instance, Mapping):
        return
    props = schema.get("properties") or {}

    def value(key: str) -> Any:
        found = instance.get(key)
        return found if found is not None else (props.get(key) or {}).get("default")

    for key, other in rule.items():
        mine, theirs = value(key), value(other)
        if _is_number(mine) and _is_number(theirs) and not mine > theirs:
            yield ValidationError(repr(theirs), path=[key], instance=mine)


def schema_validator(schema: Mapping[str, Any]) -> Any:
    """A Draft 2020-12 validator of ``schema`` that also checks :data:`GREATER_THAN_KEYWORD`."""
    from jsonschema import Draft202012Validator, validators

    return validators.extend(Draft202012Validator, {GREATER_THAN_KEYWORD: _greater_than})(schema)


def _validate(config: Mapping[str, Any], schema: Mapping[str, Any], sources: Sequence[str]) -> None:
    validator = schema_validator(schema)
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
    if kind == GREATER_THAN_KEYWORD:
        other = _join(path.rpartition(".")[0], error.validator_value[last_key])
        return f"{where}{path}: {shown} must be greater than {other} ({error.message})"
    return f"{where}{path}: {shown} is not valid: {error.message if shown != MASK else kind}"


def _plural(expected: Any) -> str:
    names = expected if isinstance(expected, list) else [expected]
    return " or ".join(f"a {n}" if n not in ("integer", "object", "array") else f"an {n}" for n in names).replace(
        "a boolean", "a boolean (true/false)"
    )


# ------------------------------------------------------------------------------------------------------ masking
#: schema keyword of a string whose whole URL is secret (notification URLs): ``config show`` prints ``scheme://***``
SECRET_URL_KEYWORD = "x-arbframe-secret-url"


def masked(config: Any, schema: Mapping[str, Any] | None = None, *, key: str = "") -> Any:
    """A copy safe to print: ``writeOnly`` values and secret-looking keys masked, passwords cut out of URLs."""
    schema = schema or {}
    if isinstance(config, Mapping):
        props = schema.get("properties", {}) if isinstance(schema, Mapping) else {}
        return {k: masked(v, props.get(k, {}), key=str(k)) for k, v in config.items()}
    if isinstance(config, list):
        return [masked(v, schema.get("items", {}) if isinstance(schema, Mapping) else {}, key=key) for v in config]
    if isinstance(config, str):
        if schema.get(SECRET_URL_KEYWORD) and config:  # the whole URL is a token: only its scheme is shown
            return mask_secret_url(config)
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


def order_journal_mode(config: Mapping[str, Any]) -> str:
    """``storage.writer.order_journal``; unset: ``fsync`` when ``storage.csv.fsync`` asks for power-loss safety,
    else ``os`` (docs/LIVE.md, "Durability")."""
    storage = config.get("storage") or {}
    mode = (storage.get("writer") or {}).get("order_journal")
    if mode is None:
        return "fsync" if (storage.get("csv") or {}).get("fsync") else "os"
    return str(mode)


def fx_source_name(config: Mapping[str, Any]) -> str:
    """The FX driver ``fx.source`` selects; ``auto`` (the default) is ``static`` in mock mode and in backtests (no
    network; a replay reads the recorded rate) and the forex quotation (``forex``, plugin arbframe-fx-forex) when
    quoting real markets."""
    name = str((config.get("fx") or {}).get("source", "auto"))
    if name == "auto":
        return "static" if config.get("mock_mode", False) or config.get("mode") == "backtest" else "forex"
    return name


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
        "fx": [(fx_source_name(config), "fx.source")],
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
