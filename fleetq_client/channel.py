"""Connection settings the sync and asyncio clients share."""

from dataclasses import dataclass
from typing import Any

import grpc

DEFAULT_TARGET = "localhost:50051"
DEFAULT_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class ChannelSettings:
    """Where to connect, the admin token, the per-call deadline and TLS roots (None:
    plaintext)."""

    target: str
    token: str | None
    timeout: float
    root_certificates: bytes | None

    def credentials(self) -> grpc.ChannelCredentials | None:
        """TLS credentials, or None for a plaintext channel."""
        if self.root_certificates is None:
            return None
        return grpc.ssl_channel_credentials(root_certificates=self.root_certificates)

    def call_options(self) -> dict[str, Any]:
        """Keyword arguments of every call: deadline, and the bearer token when set."""
        metadata = (("authorization", f"Bearer {self.token}"),) if self.token else ()
        return {"timeout": self.timeout, "metadata": metadata}
