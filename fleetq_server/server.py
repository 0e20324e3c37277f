"""Assembles one pod process: database, pod runtime, gRPC server and HTTP gateway,
all on one asyncio loop, and runs it until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Iterator
from typing import TYPE_CHECKING

import grpc
import uvicorn
from fleetq.v1 import fleetq_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer as AsyncHealthServicer
from grpc_reflection.v1alpha import reflection

from fleetq_server import __version__, embedded_db
from fleetq_server.api.auth import (
    BearerTokenInterceptor,
    admin_methods,
    open_methods,
    worker_methods,
)
from fleetq_server.api.interceptors import (
    ErrorTranslationInterceptor,
    UnaryInterceptor,
    wrap_handlers,
)
from fleetq_server.api.method_handlers import generic_handler, unary_handlers
from fleetq_server.api.metrics_endpoint import MetricsEndpoint
from fleetq_server.api.offload import EXECUTOR
from fleetq_server.api.probes import ProbeRoutes
from fleetq_server.api.proto_options import openapi_options
from fleetq_server.api.request_metrics import GrpcMetricsInterceptor, HttpMetricsMiddleware
from fleetq_server.api.servicer import IDEMPOTENCY_KEY_HEADER, FleetQServicer
from fleetq_server.api.tracing import TracingInterceptor
from fleetq_server.config import MAX_REQUEST_BYTES, Settings
from fleetq_server.dashboard import dashboard_mounts
from fleetq_server.gateway import Gateway
from fleetq_server.gateway.asgi import ASGIApp
from fleetq_server.gateway.cors import with_cors
from fleetq_server.gateway.openapi import openapi_document, openapi_endpoint
from fleetq_server.handlers import load_registry
from fleetq_server.handlers.push import PushTargets
from fleetq_server.http_server import (
    HttpLimits,
    connection_cap,
    protocol_class,
    raise_open_file_limit,
)
from fleetq_server.interpreter import tune_for_serving
from fleetq_server.runtime.pod import Pod
from fleetq_server.runtime.state import PodState
from fleetq_server.store import open_store
from fleetq_server.store.ports import StatsPort
from fleetq_server.submission import MAX_BATCH_STEPS
from fleetq_server.telemetry import tracing_from_environment
from fleetq_server.tls import TLS12_CIPHERS, TlsIdentity, load_tls_identity

if TYPE_CHECKING:
    from fleetq_server.api.interceptors import MethodHandler

log = logging.getLogger(__name__)

SERVICE = fleetq_pb2.DESCRIPTOR.services_by_name["FleetQService"]
# JSON values of a REST body outside args and metadata: a full batch's steps and fields.
BODY_FIELD_VALUES = 8 * MAX_BATCH_STEPS + 8
# How long in-flight RPCs get to finish once the pod has drained.
RPC_DRAIN_S = 2.0
# A grpc.health.v1 service name that is SERVING for as long as the process answers: the
# liveness probe's. "" (the whole pod) follows the database too, which is right for
# readiness, but restarting pods cannot end a database outage.
LIVENESS_SERVICE = "liveness"


# Time in-flight RPCs get when a connection reaches its maximum age.
MAX_CONNECTION_AGE_GRACE_S = 30.0
# Keepalive pings a client may send: no closer than this while no call is open. More than
# MAX_PING_STRIKES bad pings close the connection (GOAWAY ENHANCE_YOUR_CALM).
MIN_CLIENT_PING_INTERVAL_S = 10.0
MAX_PING_STRIKES = 2


def _ms(seconds: float) -> int:
    """A duration as gRPC's millisecond channel argument; 0 (no limit) as gRPC's "never"."""
    return round(seconds * 1000) if seconds > 0 else 2**31 - 1


def grpc_server_options(settings: Settings) -> list[tuple[str, int]]:
    """Channel arguments bounding what one client connection may hold open: streams,
    idle time, lifetime and keepalive pings (gRPC core's defaults bound none of these)."""
    return [
        ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
        ("grpc.so_reuseport", 0),
        ("grpc.max_concurrent_streams", settings.grpc_max_streams),
        ("grpc.max_connection_idle_ms", _ms(settings.grpc_max_connection_idle)),
        ("grpc.max_connection_age_ms", _ms(settings.grpc_max_connection_age)),
        ("grpc.max_connection_age_grace_ms", _ms(MAX_CONNECTION_AGE_GRACE_S)),
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", _ms(MIN_CLIENT_PING_INTERVAL_S)),
        ("grpc.http2.max_ping_strikes", MAX_PING_STRIKES),
        # Pings the pod itself may send with no data in between (it sends keepalive pings
        # only if grpc.keepalive_time_ms is set): gRPC's default, stated with the rest.
        ("grpc.http2.max_pings_without_data", MAX_PING_STRIKES),
    ]


class _QuietUvicornServer(uvicorn.Server):
    """uvicorn without its own signal handling: this module owns shutdown order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def build_handlers(settings: Settings, pod: Pod) -> tuple[dict[str, MethodHandler], frozenset[str]]:
    """The service's wrapped method handlers, one set serving gRPC and REST alike, and the
    methods that need a token."""
    interceptors: list[UnaryInterceptor] = [ErrorTranslationInterceptor()]
    if pod.tracing is not None:  # outermost: the span sees the final status
        interceptors.insert(0, TracingInterceptor(pod.tracing))
    protected: frozenset[str] = frozenset()
    tokens = (settings.admin_token, settings.api_token, settings.worker_token)
    if any(token is not None for token in tokens):
        auth = BearerTokenInterceptor(
            admin_token=settings.admin_token,
            api_token=settings.api_token,
            admin_methods=admin_methods(SERVICE),
            open_methods=open_methods(SERVICE),
            worker_token=settings.worker_token,
            worker_methods=worker_methods(SERVICE),
        )
        protected = auth.protected_methods(
            f"/{SERVICE.full_name}/{method.name}" for method in SERVICE.methods
        )
        # After error translation, which turns its refusals into UNAUTHENTICATED.
        interceptors.append(auth)
    handlers = wrap_handlers(unary_handlers(SERVICE, FleetQServicer(pod)), interceptors)
    return handlers, protected


def build_grpc_server(
    settings: Settings,
    handlers: dict[str, MethodHandler],
    health_servicer: AsyncHealthServicer,
) -> grpc.aio.Server:
    """The gRPC server with the service, grpc.health.v1 and reflection; no port yet."""
    # Request metrics on the gRPC side only: REST calls are counted by route in the
    # HTTP middleware, once. Outermost, to see the final status code.
    grpc_handlers = wrap_handlers(handlers, [GrpcMetricsInterceptor()])
    server = grpc.aio.server(options=grpc_server_options(settings))
    server.add_generic_rpc_handlers((generic_handler(SERVICE, grpc_handlers),))
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE.full_name, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    return server


def build_http_app(
    settings: Settings,
    handlers: dict[str, MethodHandler],
    store: StatsPort,
    protected: frozenset[str],
) -> ASGIApp:
    """The REST/JSON app: the gateway over the same handlers, /metrics, /openapi.json, the
    dashboard (/ui) and the probes, CORS and request metrics around them."""
    api_document = openapi_document(
        SERVICE,
        title="FLEET-Q",
        version=__version__,
        protected_methods=protected,
        **openapi_options(SERVICE),
    )
    mounts: dict[str, ASGIApp] = {
        "/metrics": MetricsEndpoint(store, settings.dead_pod_threshold),
        "/openapi.json": openapi_endpoint(api_document),
        **dashboard_mounts(),
    }
    gateway = Gateway(
        SERVICE,
        handlers,
        mounts=mounts,
        max_body_bytes=MAX_REQUEST_BYTES,
        # The servicer counts args and metadata exactly, naming the field; this cheap
        # count of the whole body stops far larger ones before they are parsed, with
        # room for a full batch's own fields.
        max_json_values=settings.max_json_values + BODY_FIELD_VALUES,
        executor=EXECUTOR,
        max_body_bytes_in_flight=settings.max_body_bytes_in_flight,
        strict_headers=(IDEMPOTENCY_KEY_HEADER,),
    )
    return HttpMetricsMiddleware(with_cors(ProbeRoutes(gateway), settings.cors_origins))


def http_server_config(
    settings: Settings, app: ASGIApp, tls: TlsIdentity | None, open_files: int
) -> uvicorn.Config:
    """uvicorn's settings for the REST port: our protocol limits, no lifespan, no logs of
    its own."""
    limits = HttpLimits.from_settings(
        settings, connection_cap(settings.http_max_connections, open_files)
    )
    return uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        http=protocol_class(limits),
        ws="none",
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,  # names the implementation, and nobody needs it
        ssl_certfile=tls.cert_file if tls else None,
        ssl_keyfile=tls.key_file if tls else None,
        ssl_ciphers=TLS12_CIPHERS,
    )


def _add_grpc_port(server: grpc.aio.Server, settings: Settings, tls: TlsIdentity | None) -> str:
    """Bind the gRPC port (gRPC binds here, not at start); returns its address."""
    address = f"{settings.grpc_host}:{settings.grpc_port}"
    if tls is None:
        server.add_insecure_port(address)
    else:
        credentials = grpc.ssl_server_credentials([(tls.key_pem, tls.cert_pem)])
        server.add_secure_port(address, credentials)
    return address


async def _serve_http(server: uvicorn.Server) -> None:
    try:
        await server.serve()
    except SystemExit as exc:
        # uvicorn exits the process when it cannot bind its port. A SystemExit escaping a
        # task would stop the event loop itself, before anything could be undone.
        config = server.config
        raise OSError(f"cannot serve HTTP on {config.host}:{config.port}") from exc


async def _start_http(server: uvicorn.Server) -> asyncio.Task[None]:
    """Serve HTTP in a task; returns once the port is open, or raises why it could not."""
    task = asyncio.create_task(_serve_http(server), name="http")
    while not server.started:
        if task.done():
            await task  # re-raises why it could not start (port in use, ...)
            raise RuntimeError("HTTP server exited during start-up")
        await asyncio.sleep(0.01)
    return task


async def _stop_http(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    server.should_exit = True
    await task


def _publish_health(servicer: AsyncHealthServicer, state: PodState) -> None:
    """Mirror the pod's health into grpc.health.v1 for "" and the FleetQ service."""
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if state.healthy
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for service in ("", SERVICE.full_name):
        asyncio.get_running_loop().create_task(servicer.set(service, status))


class PodProcess:
    """Everything one `fleetq serve` runs, with start and graceful stop.

    Each part's stop is registered on an exit stack right after the part starts, so a
    start that fails midway undoes exactly what had started, in reverse order.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.health = AsyncHealthServicer()
        self._started = contextlib.AsyncExitStack()

    async def start(self) -> None:
        """Connect, start the pod, then open both ports."""
        settings = self.settings
        # Fail fast, before any I/O.
        registry = load_registry(settings.handlers, demo_handlers=settings.demo_handlers)
        push_targets = PushTargets(settings.push_targets) if settings.push_targets else None
        if push_targets is not None:
            push_targets.register(registry)
        tls = load_tls_identity(settings)
        open_files = raise_open_file_limit()
        tracing = tracing_from_environment(os.environ, __version__)
        async with contextlib.AsyncExitStack() as stack:
            if tracing is not None:  # last out: exports the spans of everything else's stop
                stack.push_async_callback(asyncio.to_thread, tracing.shutdown)
            if push_targets is not None:  # closed after the pod has drained
                stack.push_async_callback(push_targets.aclose)
            database_url = settings.database_url
            if database_url is None:
                data_dir = settings.data_dir or embedded_db.default_data_dir()
                release = (
                    embedded_db.Release.KEEP
                    if settings.embedded_db_keep_running
                    else embedded_db.Release.STOP_WHEN_UNUSED
                )
                embedded = await asyncio.to_thread(
                    embedded_db.start_embedded_postgres, data_dir, release=release
                )
                # The last pod out stops the server.
                stack.push_async_callback(asyncio.to_thread, embedded.stop)
                database_url = embedded.url
                log.info("using embedded PostgreSQL in %s", data_dir)
            store = await open_store(
                database_url,
                settings.database_pool_size,
                pooler=settings.database_pooler,
                listen_dsn=settings.listen_database_url,
                query_logger=tracing.query_logger() if tracing is not None else None,
                durable_claims=settings.durable_claims,
            )
            stack.push_async_callback(store.close)
            if store.polls_only:
                log.warning(
                    "no LISTEN behind %s without FLEETQ_LISTEN_DATABASE_URL: pods find new "
                    "steps by polling every %gs (FLEETQ_POLL_INTERVAL)",
                    settings.database_pooler,
                    settings.poll_interval,
                )
            pod = Pod(
                settings,
                store,
                registry,
                on_health_change=lambda: _publish_health(self.health, pod.state),
                tracing=tracing,
            )
            await pod.start()
            stack.push_async_callback(pod.shutdown, settings.shutdown_grace)

            handlers, protected = build_handlers(settings, pod)
            grpc_server = build_grpc_server(settings, handlers, self.health)
            await self.health.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)
            grpc_address = _add_grpc_port(grpc_server, settings, tls)
            stack.push_async_callback(grpc_server.stop, RPC_DRAIN_S)
            await grpc_server.start()

            app = build_http_app(settings, handlers, store, protected)
            http_server = _QuietUvicornServer(http_server_config(settings, app, tls, open_files))
            http_task = await _start_http(http_server)
            stack.push_async_callback(_stop_http, http_server, http_task)
            # A graceful stop drains the pod first, while both ports still answer (health
            # turns 503, status queries work); the pod's entry above then has nothing to do.
            stack.push_async_callback(pod.shutdown, settings.shutdown_grace)
            self._started = stack.pop_all()
        log.info(
            "serving gRPC on %s and HTTP on %s:%d (%s)",
            grpc_address,
            settings.http_host,
            settings.http_port,
            "TLS" if tls else "plain text",
        )

    async def stop(self) -> None:
        """Drain the pod, then close the ports, the store and our database handle: what
        `start` started, in reverse."""
        await self._started.aclose()


async def serve(settings: Settings) -> int:
    """Run a pod until SIGTERM or SIGINT; returns the process exit code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    process = PodProcess(settings)
    try:
        await process.start()
        tune_for_serving()
        await stop.wait()
        log.info("shutdown requested")
    finally:
        await process.stop()
    log.info("pod stopped")
    return 0
