from pathlib import Path

import pytest
from arbframe_storage_csv.storage import CsvStorage

from arbframe import TABLES, read_csv_table
from arbframe.testing.storage_kit import StorageContract


class TestCsvStorageContract(StorageContract):
    idempotent_ids = False

    @pytest.fixture
    def make_storage(self, tmp_path: Path):
        return lambda: CsvStorage({"data_dir": str(tmp_path / "data")}, None)

    def read_back(self, storage, table):
        storage.flush()
        path = storage.path(table)
        return [record for _line, record in read_csv_table(path, TABLES[table])] if path.exists() else []
