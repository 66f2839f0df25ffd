# syntax=docker/dockerfile:1
# The arbframe service image: the kernel and every plugin distribution under plugins/, on
# python:3.11.9-slim-bookworm (pinned by version: a rebuild gets the same Python and Debian), running as a
# non-root user. Built by infra/docker-compose.yml (service arbframe-app) or by hand:
#   docker build -t arbitrage-app .
#   docker run --rm arbitrage-app arbframe health
#   docker run --rm -p 127.0.0.1:8000:8000 arbitrage-app arbframe run --mock
FROM python:3.11.9-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    APP_ENV=docker

# libpq5: the PostgreSQL client library (psycopg2); tini: a PID 1 that forwards SIGTERM to `arbframe run`
# (which then finishes its tick, flushes storage and exits 0) and reaps the health-check processes.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq5 tini \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# 1) dependencies only: this layer is rebuilt when a pyproject.toml changes, not when the source does
#    (one COPY per plugin distribution; tests/test_infra_static.py checks every plugins/*/pyproject.toml is here)
COPY pyproject.toml README.md ./
COPY infra/requirements_from_pyproject.py ./infra/
COPY plugins/arbframe_cache_redis/pyproject.toml ./plugins/arbframe_cache_redis/
COPY plugins/arbframe_exchange_binance/pyproject.toml ./plugins/arbframe_exchange_binance/
COPY plugins/arbframe_exchange_upbit/pyproject.toml ./plugins/arbframe_exchange_upbit/
COPY plugins/arbframe_fx_forex/pyproject.toml ./plugins/arbframe_fx_forex/
COPY plugins/arbframe_notify/pyproject.toml ./plugins/arbframe_notify/
COPY plugins/arbframe_optimize/pyproject.toml ./plugins/arbframe_optimize/
COPY plugins/arbframe_storage_csv/pyproject.toml ./plugins/arbframe_storage_csv/
COPY plugins/arbframe_storage_pg/pyproject.toml ./plugins/arbframe_storage_pg/
RUN python infra/requirements_from_pyproject.py "pyproject.toml[server]" plugins/*/pyproject.toml > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt

# 2) the source: the kernel (with the aiohttp metrics server) and every plugin, without touching the dependencies
COPY arbframe ./arbframe
COPY plugins ./plugins
RUN pip install --no-deps ".[server]" $(for p in plugins/*/; do [ -f "$p/pyproject.toml" ] && printf './%s ' "$p"; done) \
 && pip check \
 && arbframe --version \
 && arbframe plugins

COPY config ./config
COPY infra/app.yml ./infra/app.yml

RUN groupadd --system --gid 10001 arbframe \
 && useradd --system --uid 10001 --gid arbframe --home-dir /home/arbframe --create-home \
        --shell /usr/sbin/nologin arbframe \
 && mkdir -p /app/data /app/logs \
 && chown -R arbframe:arbframe /app/data /app/logs
USER arbframe

VOLUME ["/app/data", "/app/logs"]
# /metrics /health /ready when metrics_server.enabled (infra/app.yml binds 0.0.0.0:8000)
EXPOSE 8000

# liveness, as /health answers it: the loop of `arbframe run` (CMD below: the embedded defaults, data in /app/data)
# completed a tick within max(3 x interval, 10 s), read from its heartbeat file
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 CMD ["arbframe", "health", "--live"]

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["arbframe", "run"]
