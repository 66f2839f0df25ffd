# syntax=docker/dockerfile:1
# The arbframe service image: the kernel and every plugin distribution under plugins/, on python:3.11-slim,
# running as a non-root user. Built by infra/docker-compose.yml (service arbframe-app) or by hand:
#   docker build -t arbitrage-app .
#   docker run --rm arbitrage-app arbframe health
#   docker run --rm -p 127.0.0.1:8000:8000 arbitrage-app arbframe run --mock
FROM python:3.11-slim

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

# the kernel (with the aiohttp metrics server) and every plugin, in one resolver run
COPY pyproject.toml README.md ./
COPY arbframe ./arbframe
COPY plugins ./plugins
RUN pip install ".[server]" $(for p in plugins/*/; do [ -f "$p/pyproject.toml" ] && printf './%s ' "$p"; done) \
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
