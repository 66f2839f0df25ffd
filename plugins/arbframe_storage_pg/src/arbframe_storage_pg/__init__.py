"""PostgreSQL / TimescaleDB storage for arbframe (distribution ``arbframe-storage-pg``).

Entry points: ``arbframe.storage: postgres`` (:class:`arbframe_storage_pg.storage.PostgresStorage`),
``arbframe.plugins: postgres`` (health check and config schema, :mod:`arbframe_storage_pg.hooks`) and
``arbframe.commands: migrate`` (``arbframe migrate csv-to-postgres``, :mod:`arbframe_storage_pg.migrate`).
Importing this package imports neither psycopg2 nor the driver.
"""

from __future__ import annotations

ARBFRAME_API_VERSION = 1
__version__ = "0.1.0"
