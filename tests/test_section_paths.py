"""One rule for drivers' config sections (issue 19): a driver's section is named after the driver, inside its kind's
namespace (top level for exchanges and caches, ``storage.`` and ``fx.``)."""

from __future__ import annotations

from arbframe.kernel.config import SECTION_NAMESPACES, driver_section, driver_section_path


def test_one_rule_for_every_kind() -> None:
    assert SECTION_NAMESPACES == {"exchange": "", "cache": "", "storage": "storage.", "fx": "fx."}
    assert [driver_section_path(kind, name) for kind, name in (
        ("exchange", "upbit"), ("cache", "redis"), ("cache", "memcached"), ("storage", "postgres"),
        ("fx", "forex"))] == ["upbit", "redis", "memcached", "storage.postgres", "fx.forex"]


def test_sections_are_read_at_their_path() -> None:
    config = {"upbit": {"a": 1}, "redis": {"url": "redis://x"}, "memcached": {"host": "m"},
              "cache": {"backend": "memcached"}, "storage": {"backend": "postgres", "postgres": {"dsn": "d"}}}
    assert driver_section(config, "exchange", "upbit") == {"a": 1}
    assert driver_section(config, "cache", "memcached") == {"host": "m"}  # not the shared `cache` selector section
    assert driver_section(config, "cache", "redis") == {"url": "redis://x"}
    assert driver_section(config, "storage", "postgres") == {"dsn": "d"}
    assert driver_section(config, "storage", "csv") == {} and driver_section(config, "exchange", "x") == {}


def test_an_fx_source_sees_its_own_keys_over_the_shared_ones() -> None:
    """Own keys (``fx.<name>``) win; the kernel's shared ``fx`` keys stay visible beside them, so an FX plugin
    written before the rule, reading the whole ``fx`` mapping, keeps working."""
    config = {"fx": {"source": "forex", "static_rate": 1350.0, "timeout_seconds": 9,
                     "forex": {"timeout_seconds": 2}}}
    section = driver_section(config, "fx", "forex")
    assert section["timeout_seconds"] == 2 and section["static_rate"] == 1350.0 and section["source"] == "forex"
    assert driver_section({"fx": {"static_rate": 1400}}, "fx", "static") == {"static_rate": 1400}
