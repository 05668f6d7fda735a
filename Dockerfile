# wizd worker daemon.
#
#   docker build -t wizd .                                   # --build-arg WIZD_EXTRAS=postgres for PostgreSQL
#   docker run -d --name wizd-researcher --init --stop-timeout 45 \
#     -v wizd-data:/var/lib/wizd -v "$PWD/wizd.toml:/etc/wizd/wizd.toml:ro" \
#     -p 127.0.0.1:9464:9464 wizd --agent researcher
#
# The HTTP API (build with WIZD_EXTRAS=http, or http,postgres), on the same volume; beyond
# loopback it needs a token in the database (`wizd token create`) or it refuses to start:
#   docker run -d --name wizd-api -v wizd-data:/var/lib/wizd -p 127.0.0.1:8464:8464 \
#     wizd serve --host 0.0.0.0
#
# --init reaps the orphans that command processors leave behind; --stop-timeout must exceed
# shutdown_grace (30 s) so running jobs can finish on `docker stop`.
# The base image is pinned to an exact Python release; add @sha256:… to pin its bytes too.

FROM python:3.11.17-slim-bookworm AS build

ARG WIZD_EXTRAS=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/wizd
WORKDIR /src
COPY pyproject.toml README.md ./
COPY wizd ./wizd
RUN /opt/wizd/bin/pip install --no-cache-dir ".${WIZD_EXTRAS:+[$WIZD_EXTRAS]}"


FROM python:3.11.17-slim-bookworm

LABEL org.opencontainers.image.title="wizd" \
      org.opencontainers.image.description="Durable job queue and worker daemon for AI agents"

# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can check it and bind mounts can be
# chowned to it (chown 10001:10001 DIR).
RUN groupadd --system --gid 10001 wizd \
 && useradd --system --uid 10001 --gid wizd --home-dir /var/lib/wizd --no-create-home \
        --shell /usr/sbin/nologin wizd \
 && mkdir -p /var/lib/wizd /etc/wizd \
 && chown wizd:wizd /var/lib/wizd \
 && chmod 0750 /var/lib/wizd

COPY --from=build /opt/wizd /opt/wizd

ENV PATH=/opt/wizd/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    WIZD_DATABASE=/var/lib/wizd/wizd.db \
    WIZD_METRICS_HOST=0.0.0.0

# The database (and the daemon's home): keep it on a volume. wizd creates the database file
# 0600 whatever the umask (-wal and -shm follow it); WIZD_FILE_MODE=0640 shares it with a group.
VOLUME ["/var/lib/wizd"]
WORKDIR /var/lib/wizd
USER 10001:10001

EXPOSE 9464 8464

# Healthy when /healthz answers 2xx; follows WIZD_METRICS_PORT if you move the port (with
# metrics_port = 0 there is nothing to check: run with --no-healthcheck).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('WIZD_METRICS_PORT', '9464') + '/healthz', timeout=4)"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["wizd"]
CMD ["--help"]
