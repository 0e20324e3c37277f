"""Assembles one pod process: database, pod runtime, gRPC server and HTTP gateway,
all on one asyncio loop, and runs it until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator

import grpc
import uvicorn
from fleetq.v1 import fleetq_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from fleetq_server import __version__, embedded_db
from fleetq_server.api.auth import BearerTokenInterceptor, admin_methods, open_methods
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
from fleetq_server.config import MAX_REQUEST_BYTES, Settings
from fleetq_server.gateway import Gateway
from fleetq_server.gateway.asgi import ASGIApp
from fleetq_server.gateway.cors import with_cors
from fleetq_server.gateway.openapi import openapi_document, openapi_endpoint
from fleetq_server.handlers import load_registry
from fleetq_server.http_server import (
    HttpLimits,
    connection_cap,
    protocol_class,
    raise_open_file_limit,
)
from fleetq_server.runtime.pod import Pod
from fleetq_server.store import Store, open_store
from fleetq_server.submission import MAX_BATCH_STEPS
from fleetq_server.tls import TLS12_CIPHERS, load_tls_identity

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


class PodProcess:
    """Everything one `fleetq serve` runs, with start and graceful stop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._embedded: embedded_db.EmbeddedPostgres | None = None
        self._store: Store | None = None
        self._grpc: grpc.aio.Server | None = None
        self._http: _QuietUvicornServer | None = None
        self._http_task: asyncio.Task[None] | None = None
        self.pod: Pod | None = None
        self.health = health.aio.HealthServicer()  # type: ignore[attr-defined]

    async def start(self) -> None:
        """Connect, start the pod, then open both ports."""
        settings = self.settings
        # Fail fast, before any I/O.
        registry = load_registry(settings.handlers, demo_handlers=settings.demo_handlers)
        tls = load_tls_identity(settings)
        open_files = raise_open_file_limit()
        database_url = settings.database_url
        if database_url is None:
            data_dir = settings.data_dir or embedded_db.default_data_dir()
            release = (
                embedded_db.Release.KEEP
                if settings.embedded_db_keep_running
                else embedded_db.Release.STOP_WHEN_UNUSED
            )
            self._embedded = await asyncio.to_thread(
                embedded_db.start_embedded_postgres, data_dir, release=release
            )
            database_url = self._embedded.url
            log.info("using embedded PostgreSQL in %s", data_dir)
        self._store = await open_store(
            database_url,
            settings.database_pool_size,
            pooler=settings.database_pooler,
            listen_dsn=settings.listen_database_url,
        )
        if self._store.polls_only:
            log.warning(
                "no LISTEN behind %s without FLEETQ_LISTEN_DATABASE_URL: pods find new "
                "steps by polling every %gs (FLEETQ_POLL_INTERVAL)",
                settings.database_pooler,
                settings.poll_interval,
            )
        self.pod = Pod(
            settings,
            self._store,
            registry,
            on_health_change=self._publish_health,
        )
        await self.pod.start()

        interceptors: list[UnaryInterceptor] = [ErrorTranslationInterceptor()]
        protected: frozenset[str] = frozenset()
        if settings.admin_token is not None or settings.api_token is not None:
            auth = BearerTokenInterceptor(
                admin_token=settings.admin_token,
                api_token=settings.api_token,
                admin_methods=admin_methods(SERVICE),
                open_methods=open_methods(SERVICE),
            )
            protected = auth.protected_methods(
                f"/{SERVICE.full_name}/{method.name}" for method in SERVICE.methods
            )
            # After error translation, which turns its refusals into UNAUTHENTICATED.
            interceptors.append(auth)
        # One set of handler objects serves gRPC and REST alike.
        handlers = wrap_handlers(unary_handlers(SERVICE, FleetQServicer(self.pod)), interceptors)
        # Request metrics on the gRPC side only: REST calls are counted by route in the
        # HTTP middleware, once. Outermost, to see the final status code.
        grpc_handlers = wrap_handlers(handlers, [GrpcMetricsInterceptor()])
        self._grpc = grpc.aio.server(options=grpc_server_options(settings))
        self._grpc.add_generic_rpc_handlers((generic_handler(SERVICE, grpc_handlers),))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._grpc)
        await self.health.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        reflection.enable_server_reflection(
            (SERVICE.full_name, health.SERVICE_NAME, reflection.SERVICE_NAME), self._grpc
        )
        grpc_address = f"{settings.grpc_host}:{settings.grpc_port}"
        if tls is None:
            self._grpc.add_insecure_port(grpc_address)
        else:
            credentials = grpc.ssl_server_credentials([(tls.key_pem, tls.cert_pem)])
            self._grpc.add_secure_port(grpc_address, credentials)
        await self._grpc.start()

        api_document = openapi_document(
            SERVICE,
            title="FLEET-Q",
            version=__version__,
            protected_methods=protected,
            **openapi_options(SERVICE),
        )
        mounts: dict[str, ASGIApp] = {
            "/metrics": MetricsEndpoint(self.pod.store, settings.dead_pod_threshold),
            "/openapi.json": openapi_endpoint(api_document),
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
        limits = HttpLimits.from_settings(
            settings, connection_cap(settings.http_max_connections, open_files)
        )
        config = uvicorn.Config(
            HttpMetricsMiddleware(with_cors(ProbeRoutes(gateway), settings.cors_origins)),
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
        self._http = _QuietUvicornServer(config)
        self._http_task = asyncio.create_task(self._http.serve(), name="http")
        while not self._http.started:
            if self._http_task.done():
                await self._http_task  # re-raises why it could not start (port in use, ...)
                raise RuntimeError("HTTP server exited during start-up")
            await asyncio.sleep(0.01)
        log.info(
            "serving gRPC on %s and HTTP on %s:%d (%s)",
            grpc_address,
            settings.http_host,
            settings.http_port,
            "TLS" if tls else "plain text",
        )

    def _publish_health(self) -> None:
        """Mirror the pod's health into grpc.health.v1 for "" and the FleetQ service."""
        if self.pod is None:
            return
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if self.pod.state.healthy
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in ("", SERVICE.full_name):
            asyncio.get_running_loop().create_task(self.health.set(service, status))

    async def stop(self) -> None:
        """Drain the pod, then close the ports, the store and our database handle."""
        if self.pod is not None:
            await self.pod.shutdown(self.settings.shutdown_grace)
        if self._http is not None and self._http_task is not None:
            self._http.should_exit = True
            await self._http_task
        if self._grpc is not None:
            await self._grpc.stop(RPC_DRAIN_S)
        if self._store is not None:
            await self._store.close()
        if self._embedded is not None:
            await asyncio.to_thread(self._embedded.stop)  # the last pod out stops the server


async def serve(settings: Settings) -> int:
    """Run a pod until SIGTERM or SIGINT; returns the process exit code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    process = PodProcess(settings)
    try:
        await process.start()
        await stop.wait()
        log.info("shutdown requested")
    finally:
        await process.stop()
    log.info("pod stopped")
    return 0
