"""Kernel sub-commands, one module each, imported only when run."""

from __future__ import annotations

import argparse
from typing import Any

from arbframe.plugins import Kernel, validate_selected


def load_kernel(args: argparse.Namespace, **kernel_kwargs: Any) -> Kernel:
    """Effective config (both validation passes) and a fresh kernel for a command."""
    from arbframe.config import load_config

    config = load_config(getattr(args, "configs", None) or [])
    kernel = Kernel(config, **kernel_kwargs)
    validate_selected(kernel)
    return kernel
