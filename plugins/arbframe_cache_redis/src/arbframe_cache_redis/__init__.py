"""arbframe Redis cache plugin: ``RedisCache`` (entry point ``arbframe.cache: redis``) and the REDIS health check."""

ARBFRAME_API_VERSION = 1
__version__ = "0.1.0"
