"""`python -m fleetq_server.healthcheck`: exit 0 when the local pod's gRPC health is SERVING.

For container HEALTHCHECKs (Docker has no native gRPC probe). It reads the pod's own FLEETQ_*
settings to find the gRPC port and, with TLS on, trusts the pod's certificate, which must
then name `localhost` (or pass --server-name). Any failure exits 1, as Docker expects.
"""

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fleetq_server.config import ConfigError, load_settings

UNHEALTHY = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fleetq_server.healthcheck",
        description="check this pod through grpc.health.v1 on its gRPC port",
    )
    parser.add_argument("--host", default="127.0.0.1", help="where the pod listens")
    parser.add_argument("--service", default="", help='service to check ("" = the whole pod)')
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for an answer")
    parser.add_argument(
        "--server-name", default="localhost", help="name the TLS certificate must carry"
    )
    return parser


def _channel(target: str, cert_pem: bytes | None, server_name: str) -> grpc.Channel:
    if cert_pem is None:
        return grpc.insecure_channel(target)
    credentials = grpc.ssl_channel_credentials(root_certificates=cert_pem)
    return grpc.secure_channel(
        target, credentials, options=[("grpc.ssl_target_name_override", server_name)]
    )


def main(argv: list[str] | None = None) -> int:
    """Print the pod's health status; 0 when SERVING, 1 otherwise."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        cert_pem = settings.tls_cert.read_bytes() if settings.tls_cert else None
    except (ConfigError, OSError) as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return UNHEALTHY
    target = f"{args.host}:{settings.grpc_port}"
    request = health_pb2.HealthCheckRequest(service=args.service)
    try:
        with _channel(target, cert_pem, args.server_name) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(request, timeout=args.timeout)
    except grpc.RpcError as exc:
        print(f"unhealthy: {target}: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return UNHEALTHY
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"{target}: {status}")
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else UNHEALTHY


if __name__ == "__main__":
    sys.exit(main())
