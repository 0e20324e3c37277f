# syntax=docker/dockerfile:1
# Build stage: compile wheels for the package and its dependencies.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY fleetq_server ./fleetq_server
COPY generated ./generated
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# Runtime stage: only the wheels, run as an unprivileged user.
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 fleetq
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER fleetq
ENV FLEETQ_LOG_FORMAT=json
EXPOSE 8000 50051
ENTRYPOINT ["fleetq", "serve"]
