"""One gRPC connection cannot hold unbounded streams, nor stay open for ever."""

from __future__ import annotations

import contextlib

import psutil
import pytest

from tests.conftest import ServerFactory
from tests.hostile.h2_raw import (
    GOAWAY,
    REFUSED_STREAM,
    RST_STREAM,
    SETTINGS_MAX_CONCURRENT_STREAMS,
    raw_h2,
)
from tests.support.server_process import ServerProcess

SUBMIT = "/fleetq.v1.FleetQService/SubmitStep"
MAX_STREAMS = 100  # the default of FLEETQ_GRPC_MAX_STREAMS
CONNECTIONS = 5
STREAMS_PER_CONNECTION = 1000
# What 500 waiting calls may cost; 5,000 accepted ones (no limit) cost several times more.
RSS_GROWTH_LIMIT = 64 << 20


def test_streams_beyond_the_limit_are_refused_and_memory_stays_bounded(
    server_factory: ServerFactory,
) -> None:
    pod = server_factory()
    process = psutil.Process(pod.pid)
    rss_before = process.memory_info().rss
    with contextlib.ExitStack() as connections:
        for _ in range(CONNECTIONS):
            connection = connections.enter_context(raw_h2("127.0.0.1", pod.grpc_port))
            settings = connection.handshake().settings()
            assert settings.get(SETTINGS_MAX_CONCURRENT_STREAMS) == MAX_STREAMS
            connection.open_streams(SUBMIT, STREAMS_PER_CONNECTION)
            refused = 0
            while refused < STREAMS_PER_CONNECTION - MAX_STREAMS:  # socket timeout: fails
                frame = connection.read_frame()
                assert frame.type != GOAWAY, frame
                if frame.type == RST_STREAM:
                    assert frame.error_code() == REFUSED_STREAM
                    assert frame.stream_id > 2 * MAX_STREAMS  # the first 100 were accepted
                    refused += 1
        growth = process.memory_info().rss - rss_before
        assert pod.health_status() == 200
    assert growth < RSS_GROWTH_LIMIT, f"RSS grew by {growth >> 20} MiB"


@pytest.mark.parametrize(
    ("env", "open_streams"),
    [
        pytest.param({"FLEETQ_GRPC_MAX_CONNECTION_IDLE": "1"}, 0, id="idle"),
        pytest.param(
            {"FLEETQ_GRPC_MAX_CONNECTION_AGE": "1", "FLEETQ_GRPC_MAX_CONNECTION_IDLE": "0"},
            1,
            id="age-with-a-call-open",
        ),
    ],
)
def test_a_connection_past_its_idle_time_or_age_is_sent_away(
    server_factory: ServerFactory, env: dict[str, str], open_streams: int
) -> None:
    pod: ServerProcess = server_factory(env=env)
    with raw_h2("127.0.0.1", pod.grpc_port) as connection:
        connection.handshake()
        if open_streams:
            connection.open_streams(SUBMIT, open_streams)
        while connection.read_frame().type != GOAWAY:  # socket timeout (20 s): fails
            pass
