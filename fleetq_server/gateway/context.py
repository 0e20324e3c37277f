"""An in-process stand-in for `grpc.aio.ServicerContext`, so REST calls reach the servicer
exactly as gRPC calls do.

It records what the servicer does (status, details, response metadata) for the gateway to
translate into HTTP afterwards. Request metadata comes from the HTTP headers, named as
gRPC would name them (lowercase); `abort` raises `grpc.aio.AbortError` like the real one.
"""

import base64
import binascii
import functools
import ipaddress
import logging
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, NoReturn

import grpc
import grpc.aio
from google.protobuf.message import Message

MetadataPairs = tuple[tuple[str, str | bytes], ...]

# The response-metadata key through which a servicer asks for a non-200 success status
# (grpc-gateway's idiom). The gateway consumes it and never forwards it.
HTTP_CODE_KEY = "x-http-code"
# grpc-gateway's prefix for headers that carry arbitrary metadata; it is stripped.
_METADATA_HEADER_PREFIX = "grpc-metadata-"
_VALID_KEY = re.compile(r"[0-9a-z_.\-]+")
_VALID_VALUE = re.compile(r"[\x20-\x7e]*")
_LOGGER = logging.getLogger(__name__)


class InvalidHeaderError(ValueError):
    """A header the service reads holds bytes that gRPC metadata cannot carry."""


def metadata_from_headers(
    headers: Iterable[tuple[bytes, bytes]], strict: Collection[str] = ()
) -> MetadataPairs:
    """Request metadata from ASGI headers, as a gRPC server would present it.

    Names are lowercased; `Grpc-Metadata-Foo` becomes `foo`; other `grpc-` names are
    reserved by gRPC and dropped; values that are not printable ASCII are skipped, and
    `-bin` values are base64-decoded to bytes (skipped if they do not decode). Values of
    the `strict` names are not skipped but refused with InvalidHeaderError: dropping a
    header the service acts on (an idempotency key) would silently change the request.
    """
    pairs: list[tuple[str, str | bytes]] = []
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1").lower()
        if name.startswith(_METADATA_HEADER_PREFIX):
            name = name[len(_METADATA_HEADER_PREFIX) :]
        elif name.startswith("grpc-"):
            continue
        if not _VALID_KEY.fullmatch(name):
            continue
        value = raw_value.decode("latin-1")
        if not _VALID_VALUE.fullmatch(value):
            if name in strict:
                display = "-".join(part.capitalize() for part in name.split("-"))
                raise InvalidHeaderError(
                    f"{display} header: must hold printable ASCII characters only"
                )
            continue
        if name.endswith("-bin"):
            try:
                padded = value.rstrip("=") + "=" * (-len(value.rstrip("=")) % 4)
                pairs.append((name, base64.b64decode(padded, altchars=b"-_", validate=True)))
            except (binascii.Error, ValueError):
                continue
        else:
            pairs.append((name, value))
    return tuple(pairs)


def peer_from_client(client: Sequence[Any] | None) -> str:
    """The ASGI `client` (host, port) in gRPC's peer notation, e.g. `ipv4:10.0.0.1:5000`."""
    if not client or len(client) < 2:
        return "unknown"
    return f"{_peer_host(str(client[0]))}:{client[1]}"


@functools.lru_cache(maxsize=1024)
def _peer_host(host: str) -> str:
    """A host as gRPC's peer notation writes it. Cached: parsing the address cost every
    request more than the rest of its context, and clients keep coming from few hosts."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    return f"ipv6:[{host}]" if address.version == 6 else f"ipv4:{host}"


class GatewayServicerContext(grpc.aio.ServicerContext[Message, Message]):
    """What a unary servicer method sees when called through the HTTP gateway."""

    def __init__(self, invocation_metadata: MetadataPairs = (), peer: str = "unknown") -> None:
        self._invocation_metadata = invocation_metadata
        self._peer = peer
        self._initial_metadata: MetadataPairs = ()
        self._initial_metadata_sent = False
        self._trailing_metadata: MetadataPairs = ()
        self._code: grpc.StatusCode | None = None
        self._details: str | None = None
        self._aborted = False
        self._done = False
        self._done_callbacks: list[Callable[[Any], None]] = []

    # -- what the servicer reads

    def invocation_metadata(self) -> MetadataPairs:  # type: ignore[override]
        """Request metadata, a tuple of (key, value) pairs like grpc.aio's server."""
        return self._invocation_metadata

    def peer(self) -> str:
        return self._peer

    def peer_identities(self) -> Iterable[bytes] | None:
        return None

    def peer_identity_key(self) -> str | None:
        return None

    def auth_context(self) -> Mapping[str, Iterable[bytes]]:
        return {}

    def time_remaining(self) -> float | None:  # type: ignore[override]
        """REST requests carry no deadline."""
        return None

    def cancelled(self) -> bool:
        return False

    def done(self) -> bool:
        return self._done

    # -- what the servicer sets

    async def send_initial_metadata(self, initial_metadata: Any) -> None:
        if self._initial_metadata_sent:
            raise grpc.aio.UsageError("Send initial metadata failed: already sent")
        self._initial_metadata = _pairs(initial_metadata)
        self._initial_metadata_sent = True

    def set_trailing_metadata(self, trailing_metadata: Any) -> None:
        self._trailing_metadata = _pairs(trailing_metadata)

    def trailing_metadata(self) -> MetadataPairs:  # type: ignore[override]
        return self._trailing_metadata

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def code(self) -> grpc.StatusCode | None:  # type: ignore[override]
        """The status set by set_code/abort; None while nothing was set (grpc.aio's too)."""
        return self._code

    def details(self) -> str | None:  # type: ignore[override]
        return self._details

    async def abort(
        self,
        code: grpc.StatusCode,
        details: str = "",
        trailing_metadata: Any = (),
    ) -> NoReturn:
        """Record the status and raise AbortError, which the gateway turns into HTTP."""
        if self._aborted:
            raise grpc.aio.UsageError("Abort was already called!")
        self._aborted = True
        self._code = code
        self._details = details
        if trailing_metadata:
            self._trailing_metadata = _pairs(trailing_metadata)
        raise grpc.aio.AbortError("Locally aborted.")

    async def abort_with_status(self, status: grpc.Status) -> NoReturn:
        await self.abort(status.code, status.details, status.trailing_metadata)

    def set_compression(self, compression: grpc.Compression) -> None:
        """Compression means nothing in process."""

    def disable_next_message_compression(self) -> None:
        """Compression means nothing in process."""

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        self._done_callbacks.append(callback)

    # -- no client streams; server streams are what a behaviour yields

    async def read(self) -> Message:
        raise grpc.aio.UsageError("the HTTP gateway serves no client-streaming RPCs")

    async def write(self, message: Message) -> None:
        raise grpc.aio.UsageError("over the HTTP gateway a streaming behaviour must yield")

    # -- for the gateway

    @property
    def aborted(self) -> bool:
        """Whether the servicer called abort (even if it then swallowed AbortError)."""
        return self._aborted

    def response_metadata(self) -> MetadataPairs:
        """Initial then trailing metadata the servicer sent."""
        return self._initial_metadata + self._trailing_metadata

    def http_status_override(self) -> str | None:
        """The raw `x-http-code` value the servicer set, if any (initial metadata first)."""
        for key, value in self.response_metadata():
            if key.lower() == HTTP_CODE_KEY:
                return value.decode("ascii", "replace") if isinstance(value, bytes) else value
        return None

    def finish(self) -> None:
        """Mark the RPC done and run done-callbacks, as grpc.aio does at the end of a call."""
        self._done = True
        callbacks, self._done_callbacks = self._done_callbacks, []
        for callback in callbacks:
            try:
                callback(self)
            except Exception:
                _LOGGER.exception("done-callback of a gateway call failed")


def _pairs(metadata: Any) -> MetadataPairs:
    """Metadata as given (tuples, lists or grpc.aio.Metadata) as a tuple of pairs."""
    if metadata is None:
        return ()
    return tuple((str(key), value) for key, value in metadata)
