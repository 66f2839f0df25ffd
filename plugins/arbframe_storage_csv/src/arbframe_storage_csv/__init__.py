"""arbframe CSV storage plugin."""

ARBFRAME_API_VERSION = 1
