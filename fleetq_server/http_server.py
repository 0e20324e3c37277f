"""The REST port's HTTP/1.1 defences: uvicorn's httptools protocol with a cap on the request
head, deadlines for reading the head and the body, a cap on open connections and a
lingering close.

uvicorn's httptools mode has none of these: it buffers a request line and headers of any
size, and waits for ever on a client that stops half way. Everything here happens before a
request reaches the ASGI gateway, or instead of it, so the gateway stays server-agnostic.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, cast

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from fleetq_server.config import Settings
from fleetq_server.gateway.http_errors import (
    BAD_HTTP_REQUEST,
    HEADERS_TOO_LARGE,
    REQUEST_TIMEOUT,
    TOO_MANY_CONNECTIONS,
    URI_TOO_LONG,
    HttpError,
    error_body,
)
from fleetq_server.gateway.response_encoding import dumps

log = logging.getLogger(__name__)

# A lingering close (as nginx's) reads and drops what a client still sends after its answer,
# for at most this long and this many bytes: closing a socket with unread input makes the
# kernel send a reset, and the client's kernel then discards the answer before it is read.
LINGER_SECONDS = 5.0
LINGER_BYTES = 16 << 20
# The most of a refused URL an error body's `path` repeats.
_PATH_ECHO_CHARS = 128


@dataclass(frozen=True)
class HttpLimits:
    """What one HTTP connection may cost the pod."""

    max_header_bytes: int
    header_timeout: float
    body_timeout: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings, max_connections: int) -> HttpLimits:
        return cls(
            max_header_bytes=settings.http_max_header_bytes,
            header_timeout=settings.http_header_timeout,
            body_timeout=settings.http_body_timeout,
            max_connections=max_connections,
        )


def protocol_class(limits: HttpLimits) -> type[GuardedHttpProtocol]:
    """The protocol class to pass to uvicorn (`Config(http=...)`), bound to `limits`."""
    return type("FleetQHttpProtocol", (GuardedHttpProtocol,), {"limits": limits})


def raise_open_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the soft limit now in force.

    The soft default (often 1,024) is far below what the kernel allows the process, and
    every connection, database session and log file needs a descriptor.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, hard, exc)
    return soft


def connection_cap(requested: int, open_file_limit: int) -> int:
    """FLEETQ_HTTP_MAX_CONNECTIONS, lowered to half the open-file limit if need be, so that
    HTTP clients can never take the descriptors gRPC and the database need."""
    cap = max(1, min(requested, open_file_limit // 2))
    if cap < requested:
        log.warning(
            "FLEETQ_HTTP_MAX_CONNECTIONS=%d lowered to %d: half the open-file limit (%d)",
            requested,
            cap,
            open_file_limit,
        )
    return cap


class _LingeringTransport:
    """The connection's transport as uvicorn sees it, with close() made a lingering close."""

    def __init__(self, transport: asyncio.Transport, protocol: GuardedHttpProtocol) -> None:
        self._transport = transport
        self._protocol = protocol

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def write(self, data: bytes) -> None:
        self._transport.write(data)

    def is_closing(self) -> bool:
        return self._protocol.lingering or self._transport.is_closing()

    def close(self) -> None:
        self._protocol.close_connection(linger=True)


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, bounded: see the module docstring. One per connection."""

    limits: ClassVar[HttpLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._raw: asyncio.Transport | None = None
        # One deadline at a time (head, body or linger): when it passes, _on_deadline runs.
        # Arming only records it; the one timer per connection checks it when it fires and
        # re-arms itself if the deadline has moved on, so a request costs no timer calls.
        self._deadline_at = 0.0
        self._on_deadline: Callable[[], None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        # The head being received: open until the parser has seen all of its headers.
        self._head_open = True
        self._head_bytes = 0
        self._heads_done = 0
        self._request_line_done = False
        self._body_open = False  # head complete, body not yet
        self._discarded = 0  # body bytes dropped after an early answer
        self.lingering = False
        self._lingered = 0

    # -- connection ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._raw = transport
        super().connection_made(cast(asyncio.Transport, _LingeringTransport(transport, self)))
        if len(self.connections) > self.limits.max_connections:
            self._answer(TOO_MANY_CONNECTIONS, "too many open connections; retry later", "")
            return
        self._arm(self.limits.header_timeout, self._header_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def eof_received(self) -> None:
        if self.lingering:  # the client has sent all it will: nothing left to drain
            self.close_connection(linger=False)

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            self._lingered += len(data)
            if self._lingered > LINGER_BYTES:
                self.close_connection(linger=False)
            return
        if not self._head_open:
            super().data_received(data)
            return
        # Feed the parser no more of a head than the cap allows: what it has not seen, it
        # cannot buffer (uvicorn keeps the URL and headers whole until the head ends).
        room = self.limits.max_header_bytes - self._head_bytes
        head = data if len(data) <= room else data[:room]
        heads_done = self._heads_done
        self._head_bytes += len(head)
        if not self._request_line_done and b"\n" in head:
            self._request_line_done = True
        super().data_received(head)
        if head is data or self.transport.is_closing():
            return
        if self._heads_done == heads_done:
            self._refuse_head()
        else:  # the head ended within the cap; the rest is its body (or the next request)
            self.data_received(data[room:])

    # -- parser callbacks (uvicorn's, extended) ----------------------------------------

    def on_headers_complete(self) -> None:
        self._heads_done += 1
        self._head_open = False
        self._head_bytes = 0
        self._request_line_done = False
        self._body_open = True
        self._discarded = 0
        self._arm(self.limits.body_timeout, self._body_timed_out)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self.cycle.response_complete:
            # Answered early (e.g. 400 "too large") on a kept-alive connection: uvicorn
            # drops the rest of the body as it comes; bound how much of it we read.
            self._discarded += len(body)
            if self._discarded > LINGER_BYTES:
                self.close_connection(linger=False)
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._body_open = False
        self._head_open = True
        self._disarm()
        super().on_message_complete()
        if self.cycle.response_complete and not self.transport.is_closing():
            self._arm(self.limits.header_timeout, self._header_timed_out)  # answered early

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing() or self._body_open:
            return
        if self.cycle.response_complete:  # no pipelined request is waiting: the next head
            self._arm(self.limits.header_timeout, self._header_timed_out)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes that are not HTTP/1.1, in the contract's error body."""
        self._answer(BAD_HTTP_REQUEST, "the request is not valid HTTP/1.1", self._path())

    # -- limits -------------------------------------------------------------------------

    def _refuse_head(self) -> None:
        if self.cycle is not None and not self.cycle.response_complete:
            # An earlier pipelined request is still being answered: there is no room for
            # another answer on this connection, only for closing it.
            self.close_connection(linger=False)
            return
        cap = self.limits.max_header_bytes
        if self._request_line_done:
            error, detail = HEADERS_TOO_LARGE, f"request line and headers exceed {cap} bytes"
        else:
            error, detail = URI_TOO_LONG, f"request line exceeds {cap} bytes"
        self._answer(error, detail, self._path())

    def _header_timed_out(self) -> None:
        if self._head_bytes == 0:  # an idle connection: nobody is waiting for an answer
            self.close_connection(linger=False)
            return
        detail = f"request headers not received within {self.limits.header_timeout:g} s"
        self._answer(REQUEST_TIMEOUT, detail, self._path(), linger=False)

    def _body_timed_out(self) -> None:
        cycle = self.cycle
        if cycle is None or cycle.response_started:
            self.close_connection(linger=False)
            return
        # The application waits in receive(): tell it the client is gone, and answer here.
        cycle.disconnected = True
        cycle.message_event.set()
        detail = f"request body not received within {self.limits.body_timeout:g} s"
        self._answer(REQUEST_TIMEOUT, detail, str(self.scope.get("path", "")), linger=False)

    def _path(self) -> str:
        """The path of the request being refused, from what has arrived of its URL."""
        url: bytes = getattr(self, "url", b"")  # set by uvicorn once a request begins
        path = url.split(b"?", 1)[0][:_PATH_ECHO_CHARS].decode("ascii", "replace")
        return path + "..." if len(url) > _PATH_ECHO_CHARS else path

    def _answer(self, error: HttpError, detail: str, path: str, *, linger: bool = True) -> None:
        """Write an error answer outside any ASGI cycle, then close the connection."""
        body = dumps(error_body(detail, error.error_type, path))
        head = [STATUS_LINE[error.status]]
        for name, value in self.server_state.default_headers:
            head.append(b"%s: %s\r\n" % (name, value))
        head.append(b"content-type: application/json\r\n")
        head.append(b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        assert self._raw is not None
        self._raw.write(b"".join(head) + body)
        self.close_connection(linger=linger)

    # -- closing ------------------------------------------------------------------------

    def close_connection(self, *, linger: bool) -> None:
        """Close now, or, while the client is still sending its request, linger first."""
        raw = self._raw
        assert raw is not None
        request_unfinished = self._body_open or (self._head_open and self._head_bytes > 0)
        if linger and request_unfinished and not self.lingering and not raw.is_closing():
            self._linger(raw)
            return
        self._disarm()
        raw.close()

    def _linger(self, raw: asyncio.Transport) -> None:
        self.lingering = True
        self._arm(LINGER_SECONDS, lambda: self.close_connection(linger=False))
        if raw.can_write_eof():  # plain TCP: a FIN tells the client the answer is complete
            raw.write_eof()
        self.flow.resume_reading()

    def _arm(self, delay: float, callback: Callable[[], None]) -> None:
        self._deadline_at = self.loop.time() + delay
        self._on_deadline = callback
        if self._timer is None or self._timer_at > self._deadline_at:
            self._schedule(self._deadline_at)

    def _disarm(self) -> None:
        self._on_deadline = None  # the timer, if any, finds nothing to do

    def _schedule(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self.loop.call_at(when, self._deadline_check)

    def _deadline_check(self) -> None:
        self._timer = None
        if self._on_deadline is None:
            return
        if self.loop.time() < self._deadline_at:
            self._schedule(self._deadline_at)
            return
        callback, self._on_deadline = self._on_deadline, None
        callback()
