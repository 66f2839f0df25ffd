"""PostgreSQL / TimescaleDB storage for arbframe (distribution ``arbframe-storage-pg``).

Entry points: ``arbframe.storage: postgres`` (:class:`arbframe_storage_pg.storage.PostgresStorage`, which also
contributes the ``postgres`` health check and the ``storage.postgres`` config schema) and
``arbframe.commands: migrate`` (``arbframe migrate csv-to-postgres``, :mod:`arbframe_storage_pg.migrate`).
Nothing is imported unless the config selects the driver or the command runs.
"""

from __future__ import annotations

ARBFRAME_API_VERSION = 1
__version__ = "0.1.0"
