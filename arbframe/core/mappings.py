"""Tolerant reads of nested config mappings: a missing or non-mapping section reads as empty.

Validation reports a malformed section with its key path; code that runs before (or without) validation uses
this instead of repeating ``x if isinstance(x, Mapping) else {}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["section"]

_EMPTY: Mapping[str, Any] = {}


def section(config: Mapping[str, Any] | None, *path: str) -> Mapping[str, Any]:
    """The mapping at ``config[path[0]][path[1]]...``, or an empty mapping where any step is not a mapping."""
    value: Any = config
    for key in path:
        if not isinstance(value, Mapping):
            return _EMPTY
        value = value.get(key)
    return value if isinstance(value, Mapping) else _EMPTY
