"""``get_storage``: the storage the config selects, or CSV when that backend cannot start (seed D1 §4)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from arbframe.errors import DriverLoadError, DriverNotInstalled
from arbframe.secrets import mask_url

if TYPE_CHECKING:
    from arbframe.interfaces import Storage
    from arbframe.plugins import Kernel

log = logging.getLogger("arbframe.storage")


def get_storage(kernel: Kernel) -> Storage:
    """Build the storage selected by ``storage.backend``.

    ``csv`` always works. ``hybrid`` is CSV storage plus the Redis cache (the cache is chosen by
    :func:`arbframe.plugins.cache_backend`). Any other backend is a plugin; when its library is missing or it
    cannot connect, one WARNING names the cause and the service carries on with CSV.
    """
    storage_cfg = kernel.config.get("storage", {}) or {}
    backend = str(storage_cfg.get("backend", "csv"))
    if backend in ("csv", "hybrid"):
        return kernel.build_driver("storage", "csv", storage_cfg.get("csv", {}), "storage.backend")
    try:
        return kernel.build_driver("storage", backend, storage_cfg.get(backend, {}), "storage.backend")
    except DriverNotInstalled:
        raise
    except Exception as error:
        exc = error.__cause__ if isinstance(error, DriverLoadError) and error.__cause__ is not None else error
        reason = mask_url(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        csv_dir = (storage_cfg.get("csv") or {}).get("data_dir", "data")
        log.warning(
            "storage backend %r unavailable (%s: %s); falling back to CSV storage at %s",
            backend, type(exc).__name__, reason, csv_dir,
        )
        storage = kernel.build_driver("storage", "csv", storage_cfg.get("csv", {}), "storage.backend")
        kernel.notify("arbframe_on_storage_fallback", backend=backend, fallback="csv",
                      reason=f"{type(exc).__name__}: {reason}")
        return storage
