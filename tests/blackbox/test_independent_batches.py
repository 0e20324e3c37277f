"""Independent batches: each step accepted or refused on its own, over gRPC and REST, and the
asyncio client coalescing concurrent submits into them."""

from __future__ import annotations

import asyncio
import secrets

import httpx
import pytest
from fleetq.v1 import fleetq_pb2 as pb
from fleetq.v1 import fleetq_pb2_grpc

from fleetq_client import AsyncFleetQClient, Conflict, InvalidArgument
from tests.blackbox.contract import FAST_POD_ENV
from tests.conftest import ServerFactory
from tests.support.server_process import ServerProcess

UNHANDLED_TYPE = "blackbox.unhandled"  # no pod runs it: steps stay pending


@pytest.fixture(scope="module")
def pod(module_server_factory: ServerFactory) -> ServerProcess:
    return module_server_factory(env=FAST_POD_ENV)


def test_an_independent_batch_refuses_only_the_conflicting_steps_over_grpc(
    stub: fleetq_pb2_grpc.FleetQServiceStub,
) -> None:
    key = f"indep-{secrets.token_hex(4)}"
    stub.SubmitStep(pb.SubmitStepRequest(type=UNHANDLED_TYPE, args={"n": 0}, idempotency_key=key))
    request = pb.SubmitBatchRequest(independent=True)
    request.steps.add(type=UNHANDLED_TYPE, args={"n": 1})
    request.steps.add(type=UNHANDLED_TYPE, args={"n": 2}, idempotency_key=key)  # other payload
    request.steps.add(type=UNHANDLED_TYPE, args={"n": 0}, idempotency_key=key)  # a repeat
    request.steps.add(type=UNHANDLED_TYPE, args={"n": 3})

    response = stub.SubmitBatch(request)

    outcomes = [item.WhichOneof("outcome") for item in response.items]
    assert outcomes == ["accepted", "refused", "accepted", "accepted"]
    assert response.items[1].refused.code == "ALREADY_EXISTS"
    assert "different payload" in response.items[1].refused.message
    assert response.created_count == 2
    assert [s.step_id for s in response.steps] == [
        item.accepted.step_id for item in response.items if item.HasField("accepted")
    ]
    first = stub.GetStepStatus(pb.GetStepStatusRequest(step_id=response.steps[0].step_id))
    assert first.payload.args["n"] == 1


def test_an_independent_batch_over_rest_reports_each_step(client: httpx.Client) -> None:
    key = f"indep-rest-{secrets.token_hex(4)}"
    steps = [
        {"type": UNHANDLED_TYPE, "args": {"n": 1}, "idempotency_key": key},
        {"type": UNHANDLED_TYPE, "args": {"n": 2}, "idempotency_key": key},
    ]
    response = client.post("/submit/batch", json={"independent": True, "steps": steps})
    assert response.status_code == 201
    body = response.json()
    accepted, refused = body["items"]
    assert accepted["accepted"]["step_id"] == body["steps"][0]["step_id"]
    assert refused["refused"]["code"] == "ALREADY_EXISTS"
    assert body["created_count"] == 1
    # Only refusals: 200, each one reported.
    again = client.post("/submit/batch", json={"independent": True, "steps": steps[1:]})
    assert again.status_code == 200
    assert again.json()["items"][0]["refused"]["code"] == "ALREADY_EXISTS"


@pytest.mark.parametrize("independent", [False, True])
def test_a_batch_breaking_the_rules_is_refused_whole(
    client: httpx.Client, independent: bool
) -> None:
    steps = [{"type": UNHANDLED_TYPE, "args": {"n": 1}}, {"type": "not a type!", "args": {}}]
    body = {"independent": independent, "steps": steps}
    response = client.post("/submit/batch", json=body)
    assert response.status_code == 400
    assert response.json()["detail"].startswith("steps[1].type:")


async def test_concurrent_client_submits_share_calls_and_keep_their_own_outcomes(
    pod: ServerProcess,
) -> None:
    tag = secrets.token_hex(4)
    key = f"coalesced-{tag}"
    async with AsyncFleetQClient(pod.grpc_target) as client:
        await client.submit(UNHANDLED_TYPE, {"taken": True}, idempotency_key=key)
        submits = [client.submit(UNHANDLED_TYPE, {"tag": tag, "i": i}) for i in range(40)]
        submits.append(client.submit("not a type!", {}))
        submits.append(client.submit(UNHANDLED_TYPE, {"other": 1}, idempotency_key=key))
        # The invalid one fails its shared call: each submit of it is then sent alone.
        outcomes = await asyncio.gather(*submits, return_exceptions=True)

        *results, invalid, conflict = outcomes
        assert isinstance(invalid, InvalidArgument) and invalid.message.startswith("type:")
        assert isinstance(conflict, Conflict)
        stored = [await client.status(r.step_id) for r in results]  # type: ignore[union-attr]
        assert [s.args for s in stored] == [{"tag": tag, "i": i} for i in range(40)]
        with pytest.raises(InvalidArgument):  # a lone submit goes out as itself
            await client.submit("", {})


def _grpc_calls(client: httpx.Client, method: str) -> float:
    """fleetq_grpc_server_requests_total of `method`, summed over codes, from /metrics."""
    total = 0.0
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("fleetq_grpc_server_requests_total{") and f'/{method}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_coalescing_puts_concurrent_submits_into_few_calls(
    pod: ServerProcess, client: httpx.Client
) -> None:
    before = {m: _grpc_calls(client, m) for m in ("SubmitStep", "SubmitBatch")}
    async with AsyncFleetQClient(pod.grpc_target) as fleetq:
        await asyncio.gather(*(fleetq.submit(UNHANDLED_TYPE, {"i": i}) for i in range(100)))
    made = {m: _grpc_calls(client, m) - before[m] for m in before}
    assert made["SubmitBatch"] >= 1
    assert made["SubmitStep"] + made["SubmitBatch"] < 10  # not one call per submit


async def test_without_coalescing_each_submit_is_its_own_call(
    pod: ServerProcess, client: httpx.Client
) -> None:
    before = _grpc_calls(client, "SubmitStep")
    async with AsyncFleetQClient(pod.grpc_target, coalesce_submits=False) as fleetq:
        await asyncio.gather(*(fleetq.submit(UNHANDLED_TYPE, {"i": i}) for i in range(20)))
    assert _grpc_calls(client, "SubmitStep") - before == 20
