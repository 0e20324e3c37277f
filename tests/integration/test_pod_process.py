"""PodProcess in process, against a real PostgreSQL: a start that fails midway undoes
exactly what had started."""

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
import pytest

from fleetq_server.config import Settings
from fleetq_server.server import PodProcess
from tests.support.net import free_port


@contextmanager
def port_taken() -> Iterator[int]:
    """A loopback port some other program is listening on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


async def test_a_start_failing_on_a_taken_http_port_stops_what_had_started(
    database_url: str,
) -> None:
    grpc_port = free_port()
    with port_taken() as http_port:
        settings = Settings(
            database_url=database_url,
            pod_id="pod-a",
            grpc_host="127.0.0.1",
            grpc_port=grpc_port,
            http_host="127.0.0.1",
            http_port=http_port,
        )
        process = PodProcess(settings)
        # uvicorn exits (SystemExit) when it cannot bind.
        with pytest.raises((SystemExit, OSError)):
            await process.start()

    connection = await asyncpg.connect(database_url)
    try:
        pods = await connection.fetch("SELECT pod_id, status FROM fleetq_pods")
        # Every connection the store had opened (pool, heartbeat, LISTEN) is closed.
        others = await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await connection.close()
    assert [(row["pod_id"], row["status"]) for row in pods] == [("pod-a", "down")]
    assert others == 0
    assert port_is_free(grpc_port)
    await process.stop()  # nothing left to stop: returns at once
