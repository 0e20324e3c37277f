"""The client's copies of the pod's request limits. fleetq_client may not import
fleetq_server (.importlinter), so it states them again: these fail when the two drift."""

from fleetq_client import calls
from fleetq_server import submission
from fleetq_server.config import Settings
from fleetq_server.server import grpc_server_options


def test_the_clients_request_size_limit_is_the_one_the_pod_reads_up_to() -> None:
    # Coalesced submits are packed up to this size: a larger limit than the pod's would
    # turn whole batches into RESOURCE_EXHAUSTED, a smaller one split them for nothing.
    pod_limit = dict(grpc_server_options(Settings()))["grpc.max_receive_message_length"]
    assert pod_limit == calls.MAX_REQUEST_BYTES


def test_the_clients_batch_step_limit_is_the_pods() -> None:
    assert calls.MAX_BATCH_STEPS == submission.MAX_BATCH_STEPS
