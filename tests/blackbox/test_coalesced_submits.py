"""A submit that AsyncFleetQClient coalesces with others meets exactly the outcome it would
meet alone: the same result, or the same error (class, status code and message), whatever
its neighbours in the shared call carry."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import Any

import pytest

from fleetq_client import AsyncFleetQClient, FleetQClientError, SubmitResult
from fleetq_client.calls import MAX_REQUEST_BYTES
from tests.blackbox.contract import FAST_POD_ENV
from tests.conftest import ServerFactory
from tests.support.server_process import ServerProcess

UNHANDLED_TYPE = "blackbox.unhandled"  # no pod runs it: steps stay pending
NEIGHBOURS = 31  # with the submit under test: the 32 coroutines of the benchmarks
# Each fits alone; a few of them exceed one request, and a few dozen the pod's budget of
# JSON values per request (FLEETQ_MAX_JSON_VALUES, 10,000 by default).
LARGE_TEXT = "x" * (MAX_REQUEST_BYTES // 4)
MANY_VALUES = list(range(600))

Submit = tuple[str, dict[str, Any], dict[str, Any]]


@pytest.fixture(scope="module")
def pod(module_server_factory: ServerFactory) -> ServerProcess:
    return module_server_factory(env=FAST_POD_ENV)


def _described(outcome: SubmitResult | BaseException) -> tuple[Any, ...]:
    """What a caller sees of an error: its class, code and message."""
    assert isinstance(outcome, FleetQClientError), outcome
    return type(outcome), outcome.code, outcome.message


async def _alone(pod: ServerProcess, submit: Submit) -> tuple[Any, ...]:
    step_type, args, options = submit
    async with AsyncFleetQClient(pod.grpc_target, coalesce_submits=False) as client:
        try:
            result = await client.submit(step_type, args, **options)
        except FleetQClientError as error:
            return _described(error)
    raise AssertionError(f"the submit alone was accepted: {result}")


async def _among_neighbours(
    pod: ServerProcess, submit: Submit, neighbour_args: Callable[[int], dict[str, Any]]
) -> tuple[SubmitResult | BaseException, list[SubmitResult | BaseException]]:
    """`submit` in the middle of NEIGHBOURS valid concurrent submits on one coalescing
    client; its outcome, and theirs."""
    step_type, args, options = submit
    async with AsyncFleetQClient(pod.grpc_target) as client:
        calls = [client.submit(UNHANDLED_TYPE, neighbour_args(i)) for i in range(NEIGHBOURS)]
        calls.insert(NEIGHBOURS // 2, client.submit(step_type, args, **options))
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
    mine = outcomes.pop(NEIGHBOURS // 2)
    return mine, outcomes


def _small(i: int) -> dict[str, Any]:
    return {"i": i}


def _taken_key() -> str:
    return f"coalesced-taken-{secrets.token_hex(4)}"


@pytest.mark.parametrize(
    "make_submit",
    [
        pytest.param(lambda key: ("not a type!", {}, {}), id="invalid type"),
        pytest.param(lambda key: (UNHANDLED_TYPE, {}, {"priority": 10**6}), id="bad priority"),
        pytest.param(lambda key: (UNHANDLED_TYPE, {"n": 2**60}, {}), id="inexact number"),
        pytest.param(
            lambda key: (UNHANDLED_TYPE, {"other": True}, {"idempotency_key": key}),
            id="idempotency conflict",
        ),
        pytest.param(
            lambda key: (UNHANDLED_TYPE, {"text": "x" * MAX_REQUEST_BYTES}, {}),
            id="over the request size",
        ),
        pytest.param(
            lambda key: (UNHANDLED_TYPE, {"values": list(range(20_000))}, {}),
            id="over the value budget",
        ),
    ],
)
async def test_a_refused_submit_meets_the_error_it_meets_alone_and_spares_its_neighbours(
    pod: ServerProcess, make_submit: Callable[[str], Submit]
) -> None:
    key = _taken_key()
    async with AsyncFleetQClient(pod.grpc_target, coalesce_submits=False) as client:
        await client.submit(UNHANDLED_TYPE, {"first": True}, idempotency_key=key)
    submit = make_submit(key)

    alone = await _alone(pod, submit)
    mine, neighbours = await _among_neighbours(pod, submit, _small)

    assert _described(mine) == alone
    assert all(isinstance(outcome, SubmitResult) for outcome in neighbours), neighbours


@pytest.mark.parametrize(
    "neighbour_args",
    [
        pytest.param(lambda i: {"i": i, "text": LARGE_TEXT}, id="together over the request size"),
        pytest.param(lambda i: {"i": i, "values": MANY_VALUES}, id="together over the budget"),
    ],
)
async def test_submits_that_fit_alone_are_accepted_together(
    pod: ServerProcess, neighbour_args: Callable[[int], dict[str, Any]]
) -> None:
    tag = secrets.token_hex(4)
    submit = (UNHANDLED_TYPE, {"tag": tag}, {})

    mine, neighbours = await _among_neighbours(pod, submit, neighbour_args)

    assert isinstance(mine, SubmitResult)
    assert all(isinstance(outcome, SubmitResult) for outcome in neighbours), neighbours
    async with AsyncFleetQClient(pod.grpc_target) as client:
        stored = [await client.status(r.step_id) for r in neighbours]  # type: ignore[union-attr]
        assert [s.args["i"] for s in stored] == list(range(NEIGHBOURS))
        assert (await client.status(mine.step_id)).args == {"tag": tag}


async def test_a_repeated_key_among_neighbours_answers_the_original_step(
    pod: ServerProcess,
) -> None:
    key = _taken_key()
    async with AsyncFleetQClient(pod.grpc_target, coalesce_submits=False) as client:
        original = await client.submit(UNHANDLED_TYPE, {"first": True}, idempotency_key=key)

    mine, _ = await _among_neighbours(
        pod, (UNHANDLED_TYPE, {"first": True}, {"idempotency_key": key}), _small
    )

    assert isinstance(mine, SubmitResult)
    assert mine.step_id == original.step_id
    assert "already submitted" in mine.message
