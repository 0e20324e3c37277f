"""A bare HTTP/2 client over a socket: enough frames to open header-only gRPC streams and
watch what the server answers, which no gRPC library lets a test do (they obey the
server's stream limit themselves)."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY = 0x0, 0x1, 0x3, 0x4, 0x6, 0x7
END_HEADERS, ACK = 0x4, 0x1
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
REFUSED_STREAM = 0x7


@dataclass(frozen=True)
class Frame:
    type: int
    flags: int
    stream_id: int
    payload: bytes

    def settings(self) -> dict[int, int]:
        """A SETTINGS frame's parameters."""
        return dict(
            struct.unpack(">HI", self.payload[i : i + 6]) for i in range(0, len(self.payload), 6)
        )

    def error_code(self) -> int:
        """An RST_STREAM's error code, or a GOAWAY's."""
        return struct.unpack(
            ">I", self.payload[-4:] if self.type == RST_STREAM else self.payload[4:8]
        )[0]


def _hpack_int(value: int, prefix_bits: int = 7) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([value])
    out = [limit]
    value -= limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def _literal(name: bytes, value: bytes) -> bytes:
    """A header as "literal without indexing, new name", no Huffman: no table to keep."""
    return b"\x00" + _hpack_int(len(name)) + name + _hpack_int(len(value)) + value


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([kind, flags])
        + struct.pack(">I", stream_id)
        + payload
    )


class RawH2:
    """One HTTP/2 connection, frames in and out by hand."""

    def __init__(self, sock: socket.socket, authority: str) -> None:
        self._sock = sock
        self._authority = authority.encode()
        self._buffer = b""

    def handshake(self) -> Frame:
        """Send the preface, read and acknowledge the server's SETTINGS; returns them."""
        self._sock.sendall(PREFACE + frame(SETTINGS, 0, 0))
        while True:
            received = self.read_frame()
            if received.type == SETTINGS and not received.flags & ACK:
                self._sock.sendall(frame(SETTINGS, ACK, 0))
                return received

    def open_streams(self, path: str, count: int, first_id: int = 1) -> list[int]:
        """Open `count` gRPC streams with headers only (no message, no END_STREAM)."""
        block = b"".join(
            _literal(name, value)
            for name, value in (
                (b":method", b"POST"),
                (b":scheme", b"http"),
                (b":path", path.encode()),
                (b":authority", self._authority),
                (b"content-type", b"application/grpc"),
                (b"te", b"trailers"),
            )
        )
        ids = list(range(first_id, first_id + 2 * count, 2))
        self._sock.sendall(b"".join(frame(HEADERS, END_HEADERS, i, block) for i in ids))
        return ids

    def read_frame(self) -> Frame:
        """The next frame; socket.timeout if none comes in time, EOFError once closed."""
        while True:
            if len(self._buffer) >= 9:
                length = int.from_bytes(self._buffer[:3], "big")
                if len(self._buffer) >= 9 + length:
                    head, self._buffer = self._buffer[:9], self._buffer[9:]
                    payload, self._buffer = self._buffer[:length], self._buffer[length:]
                    stream_id = struct.unpack(">I", head[5:9])[0] & 0x7FFFFFFF
                    received = Frame(head[3], head[4], stream_id, payload)
                    if received.type == PING and not received.flags & ACK:
                        self._sock.sendall(frame(PING, ACK, 0, payload))
                    return received
            chunk = self._sock.recv(65536)
            if not chunk:
                raise EOFError("the server closed the connection")
            self._buffer += chunk


@contextmanager
def raw_h2(host: str, port: int, timeout: float = 20.0) -> Iterator[RawH2]:
    """A connected RawH2, closed on exit."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        yield RawH2(sock, f"{host}:{port}")
