"""TLS for both ports from FLEETQ_TLS_CERT / FLEETQ_TLS_KEY, checked before the pod starts.

A missing file, a file that is not PEM, or a key that does not belong to the certificate
stops start-up with a message naming the variables, instead of a failed handshake later.
"""

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from fleetq_server.config import ConfigError, Settings, env_name

# TLS 1.2 suites both ports offer: forward-secret AEAD only (no CBC, no static RSA), in
# OpenSSL's names, which BoringSSL (gRPC) shares. TLS 1.3 suites are all AEAD already.
TLS12_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)
# gRPC core reads its TLS 1.2 cipher list from this variable, not from its API.
GRPC_CIPHERS_ENV = "GRPC_SSL_CIPHER_SUITES"


def restrict_grpc_ciphers() -> None:
    """Make gRPC offer TLS12_CIPHERS, unless the operator chose a list in the environment.

    Must run before grpc is first imported (the package's __init__ does it): gRPC core
    reads the variable once, as it loads.
    """
    os.environ.setdefault(GRPC_CIPHERS_ENV, TLS12_CIPHERS)


@dataclass(frozen=True)
class TlsIdentity:
    """The pod's certificate chain and private key: paths (uvicorn) and contents (gRPC)."""

    cert_file: Path
    key_file: Path
    cert_pem: bytes
    key_pem: bytes


def _read(path: Path, setting: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        message = f"{env_name(setting)}={str(path)!r} cannot be read: {exc.strerror}"
        raise ConfigError(message) from None


def load_tls_identity(settings: Settings) -> TlsIdentity | None:
    """The configured identity, verified to be a matching PEM pair; None when TLS is off."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    cert_pem = _read(settings.tls_cert, "tls_cert")
    key_pem = _read(settings.tls_key, "tls_key")
    try:
        # An encrypted key fails here too: neither server could prompt for its password.
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            settings.tls_cert, settings.tls_key, password=b""
        )
    except ssl.SSLError as exc:
        raise ConfigError(
            f"{env_name('tls_cert')} and {env_name('tls_key')} must be a PEM certificate chain "
            f"and its unencrypted PEM private key ({exc.reason or exc})"
        ) from None
    return TlsIdentity(settings.tls_cert, settings.tls_key, cert_pem, key_pem)
