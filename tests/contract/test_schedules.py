"""The store contract for periodic schedules: CRUD, the due probe, the compare-and-set that
moves a schedule past a tick, and the schedules file's reconcile."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from fleetq_server import errors
from fleetq_server.store.records import InsertOutcome, ScheduleSpec
from fleetq_server.submission import SubmitRequest, prepare_step
from tests.contract.conftest import Backend

SPEC = ScheduleSpec(
    name="nightly",
    step_type="hello_world",
    cron="0 3 * * *",
    timezone="Europe/Berlin",
    args={"n": 1},
    metadata={"team": "a"},
    priority=5,
    max_retries=1,
    overlap="skip",
    catch_up="once",
)
LATER = datetime(2030, 1, 1, 2, tzinfo=UTC)


async def test_create_get_list_replace_and_delete(backend: Backend) -> None:
    store = backend.store
    created = await store.schedule_create(SPEC, LATER)
    assert created.spec == SPEC
    assert (created.source, created.next_fire_ts, created.last_fire_ts) == ("api", LATER, None)
    with pytest.raises(errors.ConflictError):
        await store.schedule_create(replace(SPEC, cron="1 * * * *"), LATER)
    other = replace(SPEC, name="a-first", cron=None, interval_seconds=60, paused=True)
    await store.schedule_create(other, None)
    assert [r.spec.name for r in await store.schedule_list()] == ["a-first", "nightly"]

    replaced = await store.schedule_replace(replace(SPEC, args={"n": 2}), LATER + timedelta(1))
    assert replaced.spec.args == {"n": 2}
    assert (await store.schedule_get("nightly")).next_fire_ts == LATER + timedelta(1)

    await store.schedule_delete("nightly")
    for call in (
        store.schedule_get("nightly"),
        store.schedule_delete("nightly"),
        store.schedule_replace(SPEC, LATER),
    ):
        with pytest.raises(errors.NotFoundError):
            await call


async def test_due_schedules_and_the_compare_and_set(backend: Backend) -> None:
    store = backend.store
    past = datetime.now(UTC) - timedelta(seconds=5)
    await store.schedule_create(SPEC, past)
    await store.schedule_create(replace(SPEC, name="future"), LATER)
    await store.schedule_create(replace(SPEC, name="paused", paused=True), None)

    now, due = await store.schedule_list_due(10)
    assert [r.spec.name for r in due] == ["nightly"]
    assert now >= past
    until = await store.schedule_next_due()
    assert until is not None and until < 0

    step = prepare_step(
        SubmitRequest("hello_world", {}, None, 0, None, idempotency_key="schedule:nightly:x")
    )
    [outcome] = await store.step_insert_many([step])
    assert isinstance(outcome, InsertOutcome)
    assert await store.schedule_advance("nightly", past, LATER, (past, outcome.step_id))
    # A second pod that read the same due schedule loses the compare-and-set.
    assert not await store.schedule_advance("nightly", past, LATER, None)
    record = await store.schedule_get("nightly")
    assert (record.next_fire_ts, record.last_fire_ts) == (LATER, past)
    assert (record.last_step_id, record.last_step_status) == (outcome.step_id, "pending")
    assert (await store.schedule_list_due(10))[1] == []


async def test_reconcile_makes_file_schedules_what_the_file_declares(backend: Backend) -> None:
    store = backend.store
    await store.schedule_create(replace(SPEC, name="from-api"), LATER)
    first = LATER + timedelta(hours=1)
    assert await store.schedule_reconcile([(SPEC, LATER), (replace(SPEC, name="old"), LATER)]) == []
    # Same timing: the next tick is kept; a changed template is applied.
    gone = await store.schedule_reconcile([(replace(SPEC, args={"n": 9}), first)])
    assert gone == ["old"]
    kept = await store.schedule_get("nightly")
    assert (kept.source, kept.spec.args, kept.next_fire_ts) == ("file", {"n": 9}, LATER)
    # Changed timing: the new next tick.
    await store.schedule_reconcile([(replace(SPEC, cron="0 4 * * *"), first)])
    assert (await store.schedule_get("nightly")).next_fire_ts == first
    assert (await store.schedule_get("from-api")).source == "api"
