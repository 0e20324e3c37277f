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
COPY fleetq_common ./fleetq_common
COPY generated ./generated
RUN /opt/fleetq/bin/pip install .

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
