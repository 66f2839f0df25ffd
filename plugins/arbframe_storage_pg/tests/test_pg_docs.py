"""docs/DB_SCHEMA.md documents every column of every table, with the type the plugin creates."""

from __future__ import annotations

import re
from pathlib import Path

from arbframe_storage_pg.tables import SPECS

DOC = Path(__file__).resolve().parents[3] / "docs" / "DB_SCHEMA.md"


def test_every_column_is_documented_with_its_type() -> None:
    text = DOC.read_text(encoding="utf-8")
    for table, spec in SPECS.items():
        section = re.search(rf"^## {table}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
        assert section, f"no section for {table}"
        rows = dict(re.findall(r"^\| `(\w+)` \| (\w+) \|", section.group(1), re.M))
        assert list(rows) == list(spec.names), table
        for col in spec.columns:
            assert rows[col.name] == col.pg_type, (table, col.name)
