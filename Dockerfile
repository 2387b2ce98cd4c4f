# slawatch worker image: `docker build -t slawatch .`, then `docker run slawatch slawatch worker`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies and the package first, the example catalog last: editing the catalog
# does not reinstall anything.
COPY requirements.lock pyproject.toml setup.py README.md LICENSE ./
COPY streams ./streams
COPY agents ./agents
# gcc only for the build of the engine's C loops (streams/_native.c), then gone;
# the check fails the build rather than ship an image that runs the slower Python loops.
# Every dependency (and the setuptools that builds slawatch) comes pinned with its hash
# from requirements.lock (`make lock`): a tampered or substituted package fails the build.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install --require-hashes -r requirements.lock \
    && pip install --no-deps --no-build-isolation . \
    && apt-get purge -y gcc libc6-dev && apt-get autoremove -y && rm -rf /var/lib/apt/lists/* \
    && (cd / && python -c "from streams import native; assert native.native, native.describe()") \
    && useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin slawatch \
    && mkdir -p /data \
    && chown slawatch:slawatch /data
COPY config ./config

USER slawatch

ENV SLAWATCH_CATALOG=/app/config/services.yaml \
    SLAWATCH_DATA_DIR=/data \
    SLAWATCH_WEB_HOST=0.0.0.0 \
    SLAWATCH_WEB_PORT=6066

VOLUME ["/data"]
EXPOSE 6066

# /healthz answers without credentials (over TLS when --web-config-file turns it on).
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-m", "agents.cli.healthcheck"]

CMD ["slawatch", "worker"]
