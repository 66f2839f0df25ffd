"""Kernel sub-commands, one module each, imported only when run."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from arbframe.kernel.plugin_host import Kernel


def load_kernel(args: argparse.Namespace, overrides: Mapping[str, Any] | None = None, **kernel_kwargs: Any) -> Kernel:
    """Effective config (both validation passes; ``overrides`` as ``arbframe run`` applies its flags) and a fresh
    kernel for a command."""
    from arbframe.kernel.config import load_config
    from arbframe.kernel.plugin_host import Kernel, validate_selected

    config = load_config(getattr(args, "configs", None) or [], overrides=dict(overrides or {}))
    kernel = Kernel(config, **kernel_kwargs)
    validate_selected(kernel)
    return kernel
