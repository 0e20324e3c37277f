"""TLS: with FLEETQ_TLS_CERT / FLEETQ_TLS_KEY both ports speak only TLS with that certificate;
an unusable certificate or key stops start-up with a message naming the variables."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fleetq.v1 import fleetq_pb2 as pb
from fleetq.v1 import fleetq_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import ServerFactory
from tests.support.healthcheck import run_healthcheck
from tests.support.server_process import ServerProcess
from tests.support.waiting import wait_until


def write_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return key


def write_self_signed_certificate(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """A certificate for localhost and 127.0.0.1, valid for a day."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(cert.pem, key.pem), generated for this test run."""
    directory = tmp_path_factory.mktemp("tls")
    key = write_key(directory / "key.pem")
    write_self_signed_certificate(directory / "cert.pem", key)
    return directory / "cert.pem", directory / "key.pem"


def tls_env(cert: Path, key: Path) -> dict[str, str]:
    return {"FLEETQ_TLS_CERT": str(cert), "FLEETQ_TLS_KEY": str(key)}


@pytest.fixture(scope="module")
def tls_pod(module_server_factory: ServerFactory, certificate: tuple[Path, Path]) -> ServerProcess:
    cert, key = certificate
    pod = module_server_factory(env=tls_env(cert, key), wait=False)
    trust = ssl.create_default_context(cafile=str(cert))

    def healthy_over_https() -> bool:
        assert pod.returncode is None, f"the pod exited with {pod.returncode}\n{pod.log_tail()}"
        try:
            response = httpx.get(f"https://127.0.0.1:{pod.http_port}/health", verify=trust)
        except httpx.TransportError:
            return False
        return response.status_code == 200

    wait_until(healthy_over_https, timeout=30, description="/health over HTTPS")
    return pod


@pytest.fixture(scope="module")
def secure_channel(
    tls_pod: ServerProcess, certificate: tuple[Path, Path]
) -> Iterator[grpc.Channel]:
    credentials = grpc.ssl_channel_credentials(root_certificates=certificate[0].read_bytes())
    with grpc.secure_channel(tls_pod.grpc_target, credentials) as channel:
        yield channel


def test_both_ports_serve_tls_with_the_configured_certificate(
    tls_pod: ServerProcess, certificate: tuple[Path, Path], secure_channel: grpc.Channel
) -> None:
    trust = ssl.create_default_context(cafile=str(certificate[0]))
    base_url = f"https://127.0.0.1:{tls_pod.http_port}"
    with httpx.Client(base_url=base_url, verify=trust, timeout=10) as client:
        submitted = client.post("/submit", json={"type": "hello_world", "args": {"message": "x"}})
        assert submitted.status_code == 201, submitted.text
        assert client.get(f"/status/{submitted.json()['step_id']}").status_code == 200

    stub = fleetq_pb2_grpc.FleetQServiceStub(secure_channel)
    assert stub.GetHealth(pb.GetHealthRequest(), timeout=10).status == "healthy"
    health = health_pb2_grpc.HealthStub(secure_channel).Check(health_pb2.HealthCheckRequest())
    assert health.status == health_pb2.HealthCheckResponse.SERVING

    # The container HEALTHCHECK finds TLS on from the pod's own settings and trusts its cert.
    checked = run_healthcheck(tls_pod, **tls_env(*certificate))
    assert checked.returncode == 0, checked.stderr


def test_plain_text_and_untrusted_connections_fail(
    tls_pod: ServerProcess, secure_channel: grpc.Channel
) -> None:
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{tls_pod.http_port}/health", timeout=10)
    # TLS with the system's trust store: our self-signed certificate is not accepted.
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"https://127.0.0.1:{tls_pod.http_port}/health", timeout=10)

    with grpc.insecure_channel(tls_pod.grpc_target) as channel:
        stub = fleetq_pb2_grpc.FleetQServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.GetHealth(pb.GetHealthRequest(), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    # Without TLS the healthcheck reports the pod unhealthy rather than hanging.
    assert run_healthcheck(tls_pod).returncode == 1

    # The secure channel still works: the failures above were the plain-text clients'.
    stub = fleetq_pb2_grpc.FleetQServiceStub(secure_channel)
    assert stub.GetHealth(pb.GetHealthRequest(), timeout=10).status == "healthy"


@pytest.mark.parametrize("problem", ["key of another certificate", "missing key file"])
def test_an_unusable_certificate_or_key_stops_start_up(
    server_factory: ServerFactory, certificate: tuple[Path, Path], tmp_path: Path, problem: str
) -> None:
    cert, _ = certificate
    if problem == "missing key file":
        key = tmp_path / "absent.pem"
        expected = f"FLEETQ_TLS_KEY='{key}' cannot be read"
    else:
        key = tmp_path / "other-key.pem"
        write_key(key)
        expected = "FLEETQ_TLS_CERT and FLEETQ_TLS_KEY must be a PEM certificate chain"
    pod = server_factory(env=tls_env(cert, key), wait=False)
    assert pod.wait_for_exit(timeout=30) == 2
    log = pod.log_text()
    assert f"fleetq: configuration error: {expected}" in log, log
    assert "Traceback" not in log
