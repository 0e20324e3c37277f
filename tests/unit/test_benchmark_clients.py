"""The benchmark's reading of h2load's report, and the gRPC framing it sends."""

import struct

import pytest
from fleetq.v1 import fleetq_pb2 as pb

from benchmarks.clients import grpc_frame, h2load_elapsed_s, step_request

REPORT = """
finished in {elapsed}, 4842.52 req/s, 929.22KB/s
requests: {total} total, {total} started, {total} done, {succeeded} succeeded, 0 failed, 0 errored, 0 timeout
status codes: {succeeded} 2xx, 0 3xx, 0 4xx, 0 5xx
"""  # noqa: E501  (h2load's own line)


@pytest.mark.parametrize(
    ("elapsed", "seconds"), [("4.13s", 4.13), ("20.00ms", 0.02), ("950.50us", 0.0009505)]
)
def test_elapsed_time_is_read_in_any_unit_h2load_prints(elapsed: str, seconds: float) -> None:
    output = REPORT.format(elapsed=elapsed, total=32, succeeded=32)

    assert h2load_elapsed_s(output, 32) == pytest.approx(seconds)


def test_a_run_where_some_requests_failed_is_refused() -> None:
    output = REPORT.format(elapsed="1.00s", total=32, succeeded=31)

    with pytest.raises(RuntimeError, match="31 of 32"):
        h2load_elapsed_s(output, 32)


def test_output_without_a_report_is_refused() -> None:
    with pytest.raises(RuntimeError, match="no report"):
        h2load_elapsed_s("connect to 127.0.0.1 port 1 failed: Connection refused", 32)


def test_the_request_body_is_one_uncompressed_grpc_message() -> None:
    message = step_request("bench.noop", {"n": 1}).SerializeToString()

    frame = grpc_frame(message)

    compressed, length = struct.unpack(">BI", frame[:5])
    assert (compressed, length) == (0, len(message))
    assert pb.SubmitStepRequest.FromString(frame[5:]).type == "bench.noop"
