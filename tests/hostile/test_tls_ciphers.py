"""With TLS on, both ports refuse CBC cipher suites on TLS 1.2 and accept AEAD ones."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest

from tests.blackbox.test_tls import tls_env, write_key, write_self_signed_certificate
from tests.conftest import ServerFactory
from tests.support.server_process import ServerProcess
from tests.support.waiting import wait_until


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tls")
    write_self_signed_certificate(directory / "cert.pem", write_key(directory / "key.pem"))
    return directory


@pytest.fixture(scope="module")
def tls_pod(module_server_factory: ServerFactory, certificate: Path) -> ServerProcess:
    pod = module_server_factory(
        env=tls_env(certificate / "cert.pem", certificate / "key.pem"), wait=False
    )
    wait_until(
        lambda: negotiate(pod.http_port, certificate, "ECDHE-ECDSA-AES128-GCM-SHA256"),
        timeout=30,
        description="TLS on the REST port",
    )
    return pod


def negotiate(port: int, certificate: Path, cipher: str) -> str | None:
    """The suite a TLS 1.2 handshake offering only `cipher` agrees on; None if refused."""
    context = ssl.create_default_context(cafile=str(certificate / "cert.pem"))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(f"{cipher}:@SECLEVEL=0")
    context.set_alpn_protocols(["h2", "http/1.1"])
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            negotiated = tls.cipher()
    except (ssl.SSLError, ConnectionError):
        return None
    return negotiated[0] if negotiated else None


@pytest.mark.parametrize("port", ["http", "grpc"])
@pytest.mark.parametrize("cipher", ["ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384"])
def test_cbc_suites_are_refused_on_tls_1_2(
    tls_pod: ServerProcess, certificate: Path, port: str, cipher: str
) -> None:
    number = tls_pod.http_port if port == "http" else tls_pod.grpc_port
    assert negotiate(number, certificate, cipher) is None


@pytest.mark.parametrize("port", ["http", "grpc"])
@pytest.mark.parametrize(
    "cipher", ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"]
)
def test_aead_suites_are_accepted_on_tls_1_2(
    tls_pod: ServerProcess, certificate: Path, port: str, cipher: str
) -> None:
    number = tls_pod.http_port if port == "http" else tls_pod.grpc_port
    assert negotiate(number, certificate, cipher) == cipher
