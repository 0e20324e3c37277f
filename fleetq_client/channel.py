"""The connection both clients share: settings, channel and stub. The sync and asyncio
clients differ only in the grpc module that opens the channel (`grpc` or `grpc.aio`)."""

from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar

import grpc
from fleetq.v1 import fleetq_pb2_grpc

from fleetq_client.json_text import PodReadsJsonText

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

    def open(self, channels: ModuleType) -> Any:
        """A channel from `channels` (`grpc` or `grpc.aio`), with TLS when roots are set."""
        if self.root_certificates is None:
            return channels.insecure_channel(self.target)
        credentials = grpc.ssl_channel_credentials(root_certificates=self.root_certificates)
        return channels.secure_channel(self.target, credentials)

    def call_options(self, wait: float = 0.0) -> dict[str, Any]:
        """Keyword arguments of every call: deadline (`wait` seconds later for a call
        that waits by design, a long poll), and the bearer token when set."""
        metadata = (("authorization", f"Bearer {self.token}"),) if self.token else ()
        return {"timeout": self.timeout + wait, "metadata": metadata}


class Connection:
    """Base of both clients: opens the channel and stub to one pod (any pod answers every
    call). `token` is the bearer token sent with every call: the pod's FLEETQ_API_TOKEN,
    or its FLEETQ_ADMIN_TOKEN, which admin calls need when it has one and which also opens
    every other call; `timeout` bounds each call; `root_certificates` (PEM) turns TLS on."""

    _channels: ClassVar[ModuleType]

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        root_certificates: bytes | None = None,
    ) -> None:
        self._settings = ChannelSettings(target, token, timeout, root_certificates)
        self._channel = self._settings.open(self._channels)
        self._stub = fleetq_pb2_grpc.FleetQServiceStub(self._channel)
        self._json_text = PodReadsJsonText()
