"""The storage.postgres config section: schema from the driver, typo'd keys refused, the DSN masked."""

from __future__ import annotations

import json

from arbframe_storage_pg.settings import CONFIG_SCHEMA, Settings
from arbframe_storage_pg.storage import PostgresStorage

SECRET = "C0nfig-Pa55w0rd"


def test_schema_fragment_masks_the_dsn_and_knows_every_setting() -> None:
    schema = PostgresStorage.config_schema()
    assert schema is CONFIG_SCHEMA and schema["properties"]["dsn"]["writeOnly"] is True
    assert set(schema["properties"]) >= {"dsn", "schema", "enable_timescale", "batch_size", "flush_interval_seconds",
                                         "connect_timeout_seconds", "spool_dir"}
    assert schema["additionalProperties"] is False
    defaults = Settings.from_section({})
    assert defaults.schema == "public" and defaults.enable_timescale is False and defaults.batch_size > 0


def test_cli_validate_show_schema(tmp_path, run_arbframe) -> None:
    config = tmp_path / "c.yml"
    config.write_text(f"storage:\n  backend: postgres\n  postgres:\n    dsn: postgresql://u:{SECRET}@localhost:1/db\n"
                      "    batch_sise: 10\n")
    bad = run_arbframe("config", "validate", "--config", str(config))
    assert bad.returncode == 2 and "storage.postgres.batch_sise" in bad.stderr and "batch_size" in bad.stderr
    assert SECRET not in bad.stdout + bad.stderr
    config.write_text(config.read_text().replace("batch_sise", "batch_size"))
    shown = run_arbframe("config", "show", "--config", str(config))
    assert shown.returncode == 0, shown.stderr
    assert SECRET not in shown.stdout and "postgresql://u:***@localhost:1/db" in shown.stdout
    schema = json.loads(run_arbframe("config", "schema").stdout)
    assert schema["properties"]["storage"]["properties"]["postgres"]["properties"]["dsn"]["writeOnly"] is True


def test_migrate_checks_the_section_even_when_postgres_is_not_the_backend(tmp_path, run_arbframe) -> None:
    config = tmp_path / "m.yml"
    config.write_text(f"storage:\n  postgres:\n    dsn: postgresql://u:{SECRET}@localhost:1/db\n"
                      "    enable_timescale: 'yes'\n")
    result = run_arbframe("migrate", "csv-to-postgres", "--config", str(config))
    assert result.returncode == 2 and "storage.postgres.enable_timescale" in result.stderr
    assert SECRET not in result.stdout + result.stderr
