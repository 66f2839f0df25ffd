"""Kernel sub-commands, one module each, imported only when run."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from arbframe.kernel.plugin_host import Kernel


def load_kernel(args: argparse.Namespace, **kernel_kwargs: Any) -> Kernel:
    """Effective config (both validation passes) and a fresh kernel for a command."""
    from arbframe.kernel.config import load_config
    from arbframe.kernel.plugin_host import Kernel, validate_selected

    config = load_config(getattr(args, "configs", None) or [])
    kernel = Kernel(config, **kernel_kwargs)
    validate_selected(kernel)
    return kernel
