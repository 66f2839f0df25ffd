"""arbframe Redis cache plugin: ``RedisCache`` (entry point ``arbframe.cache: redis``) and the REDIS health check."""

ARBFRAME_API_VERSION = 1
