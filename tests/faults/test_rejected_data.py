"""Data PostgreSQL refuses for good (here: a test-only CHECK constraint, the way a result over
jsonb's 256 MB limit would be refused) fails only the step or submit that carries it: it is
not retried for ever as if the database were down, and it takes nothing batched with it."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import asyncpg
import httpx

from tests.conftest import ServerFactory
from tests.faults.fleet import (
    HOLD_STEP_TYPE,
    REQUEST_TIMEOUT_S,
    start_pods,
    submit,
    wait_all_finished,
)
from tests.support.databases import run_sync

INNOCENT_STEPS = 8


async def add_constraint(database_url: str, check: str) -> None:
    """Test-only schema change: PostgreSQL itself refuses rows failing `check`."""
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            f"ALTER TABLE fleetq_steps ADD CONSTRAINT test_refuses CHECK ({check}) NOT VALID"
        )
    finally:
        await connection.close()


def test_an_outcome_the_database_refuses_fails_its_step_alone(
    server_factory: ServerFactory, database_url: str
) -> None:
    [pod] = start_pods(server_factory, ["refused-outcome"])
    # Steps whose args carry "refused" may not be given a result (a failure is fine).
    run_sync(lambda: add_constraint(database_url, "result IS NULL OR NOT args ? 'refused'"))

    with ThreadPoolExecutor(INNOCENT_STEPS + 1) as pool:  # at once: their outcomes share writes
        refused = pool.submit(
            submit, pod, HOLD_STEP_TYPE, {"seconds": 0.2, "refused": True}, max_retries=0
        )
        innocent = [
            pool.submit(submit, pod, HOLD_STEP_TYPE, {"seconds": 0.2})
            for _ in range(INNOCENT_STEPS)
        ]
    final = wait_all_finished(pod, [refused.result()] + [f.result() for f in innocent])

    refused_status = final.pop(refused.result())
    assert refused_status["status"] == "failed"
    assert refused_status["error"]["type"] == "OutcomeRejected"
    assert refused_status["result"] is None
    assert {s["status"] for s in final.values()} == {"completed"}
    assert all(s["result"]["pod_id"] == "refused-outcome" for s in final.values())


def test_a_submit_the_database_refuses_is_a_400_and_fails_alone(
    server_factory: ServerFactory, database_url: str
) -> None:
    [pod] = start_pods(server_factory, ["refused-submit"], env={"FLEETQ_HANDLERS": ""})
    run_sync(lambda: add_constraint(database_url, "NOT args ? 'refused'"))

    async def submit_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=pod.http_url, timeout=REQUEST_TIMEOUT_S) as http:
            bodies = [{"type": "t", "args": {"refused": True}}] + [
                {"type": "t", "args": {"n": n}} for n in range(INNOCENT_STEPS)
            ]
            return await asyncio.gather(*(http.post("/submit", json=b) for b in bodies))

    refused, *innocent = asyncio.run(submit_all())

    assert refused.status_code == 400, refused.text
    assert refused.json()["error_type"] == "validation_error"
    assert "refused the data" in refused.json()["detail"]
    assert [r.status_code for r in innocent] == [201] * INNOCENT_STEPS
