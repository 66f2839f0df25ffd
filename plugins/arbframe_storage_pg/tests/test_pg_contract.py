"""The storage contract kit, run against PostgresStorage on the throwaway server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from arbframe import Storage
from arbframe.testing.postgres_server import PostgresServer
from arbframe.testing.storage_kit import StorageContract

pytestmark = pytest.mark.postgres


PLANTED = "planted-pg-password-7f3a"


class TestPostgresStorageContract(StorageContract):
    idempotent_ids = True
    planted_secret = PLANTED

    @pytest.fixture
    def make_storage(self, pg: PostgresServer, schema: str, tmp_path: Path, make_context: Callable[..., Any],
                     read_table: Callable[..., list[Any]]) -> Iterator[Callable[[], Storage]]:
        from arbframe_storage_pg.storage import PostgresStorage

        self._read = lambda table: read_table(pg, schema, table)
        # the throwaway server trusts local connections, so a password in the DSN is accepted and unused
        dsn = pg.dsn.replace("://postgres@", f"://postgres:{PLANTED}@", 1)
        assert PLANTED in dsn
        section = {"dsn": dsn, "schema": schema, "spool_dir": str(tmp_path / "spool")}
        opened: list[PostgresStorage] = []

        def make() -> Storage:
            storage = PostgresStorage(section, make_context())
            opened.append(storage)
            return storage

        yield make
        for storage in opened:
            storage.close()

    def read_back(self, storage: Storage, table: str) -> list[Any]:
        storage.flush()
        return self._read(table)
