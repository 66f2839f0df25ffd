"""arbframe CSV storage plugin."""

ARBFRAME_API_VERSION = 1
__version__ = "0.1.0"
