"""Loopback ports for servers started by tests."""

from __future__ import annotations

import random
import socket

# Below the kernel's ephemeral range (32768-60999 by default): a port the OS hands out for
# outgoing connections (say, a pod's own database connections) could otherwise take the
# port between our check and the server's bind.
_PORT_RANGE = (20000, 32000)
# Ports this process handed out: servers started without waiting (30 pods at once) would
# otherwise be given the same still-unbound port now and then (60 picks of 12,000 ports
# collide about once in seven runs).
_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago, outside the ephemeral range.

    Random, so parallel runs rarely collide; there is still a window between this check
    and the server binding the port.
    """
    if len(_handed_out) > (_PORT_RANGE[1] - _PORT_RANGE[0]) // 2:
        _handed_out.clear()  # a long session: the oldest servers are long gone
    for _ in range(100):
        port = random.randint(*_PORT_RANGE)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free port on {host} in {_PORT_RANGE}")
