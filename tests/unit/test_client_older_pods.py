"""The clients against a pod that predates JSON text (`args_json`): the first submit it
refuses is sent again as Structs, and every later one goes as Structs from the start. A
pod of the older release cannot run inside the suite; a gRPC server that reads requests as
it did (no text fields, args required) stands in for it."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from fleetq.v1 import fleetq_pb2 as pb
from fleetq.v1 import fleetq_pb2_grpc

from fleetq_client import AsyncFleetQClient, FleetQClient, InvalidArgument
from fleetq_common.json_values import struct_to_dict


class _Pod(fleetq_pb2_grpc.FleetQServiceServicer):
    """Answers submits as a pod does; an older one (`reads_text` off) never looks at the
    text fields, so a submit carrying them has no args. Priorities past 1000 are refused."""

    def __init__(self, reads_text: bool) -> None:
        self.reads_text = reads_text
        self.received: list[pb.SubmitStepRequest] = []  # every step of every request

    def _accept(self, step: pb.SubmitStepRequest, context: grpc.ServicerContext) -> str:
        self.received.append(step)
        if not step.HasField("args") and not (self.reads_text and step.args_json):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "args: is required")
        if step.priority > 1000:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "priority: too high")
        return f"step-{len(self.received)}"

    def SubmitStep(
        self, request: pb.SubmitStepRequest, context: grpc.ServicerContext
    ) -> pb.SubmitStepResponse:
        return pb.SubmitStepResponse(step_id=self._accept(request, context), status="submitted")

    def SubmitBatch(
        self, request: pb.SubmitBatchRequest, context: grpc.ServicerContext
    ) -> pb.SubmitBatchResponse:
        ids = [self._accept(step, context) for step in request.steps]
        steps = [pb.SubmitStepResponse(step_id=i, status="submitted") for i in ids]
        return pb.SubmitBatchResponse(steps=steps, created_count=len(steps))

    def forms(self) -> list[str]:
        """How each step arrived, in order: "text" or "struct"."""
        return ["text" if step.args_json else "struct" for step in self.received]


def _serve(pod: _Pod) -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    fleetq_pb2_grpc.add_FleetQServiceServicer_to_server(pod, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


@pytest.fixture
def older_pod() -> Iterator[tuple[_Pod, str]]:
    pod = _Pod(reads_text=False)
    for target in _serve(pod):
        yield pod, target


@pytest.fixture
def newer_pod() -> Iterator[tuple[_Pod, str]]:
    pod = _Pod(reads_text=True)
    for target in _serve(pod):
        yield pod, target


def test_a_submit_an_older_pod_refuses_is_sent_again_as_structs_and_so_are_later_ones(
    older_pod: tuple[_Pod, str],
) -> None:
    pod, target = older_pod
    with FleetQClient(target) as client:
        first = client.submit("t", {"n": 1}, metadata={"m": 2})
        second = client.submit_batch([{"type": "t", "args": {"n": 2}}])

    assert (first.step_id, second.steps[0].step_id) == ("step-2", "step-3")
    assert pod.forms() == ["text", "struct", "struct"]
    assert struct_to_dict(pod.received[1].args) == {"n": 1}
    assert struct_to_dict(pod.received[1].metadata) == {"m": 2}


async def test_submit_many_learns_from_its_first_chunk_and_pipelines_the_rest_as_structs(
    older_pod: tuple[_Pod, str],
) -> None:
    pod, target = older_pod
    async with AsyncFleetQClient(target) as client:
        results = await client.submit_many(
            ({"type": "t", "args": {"n": n}} for n in range(25)), chunk_size=10
        )

    assert len(results) == 25
    assert pod.forms() == ["text"] + ["struct"] * 25  # the first chunk stopped at its first
    # The chunks after the first are under way together: the pod may take them in any order.
    assert sorted(struct_to_dict(step.args)["n"] for step in pod.received[1:]) == list(range(25))


async def test_an_invalid_submit_leaves_a_newer_pod_sent_json_text(
    newer_pod: tuple[_Pod, str],
) -> None:
    pod, target = newer_pod
    async with AsyncFleetQClient(target, coalesce_submits=False) as client:
        with pytest.raises(InvalidArgument, match="priority"):
            await client.submit("t", {"n": 1}, priority=5000)
        await client.submit("t", {"n": 2})
        await client.submit("t", {"n": 3})

    # Refused as text and again as Structs: the pod's answer, not the form; text after it.
    assert pod.forms() == ["text", "struct", "text", "text"]
