"""RemoteClaims and LeaseExpiryLoop on the in-memory store: a long poll sleeps until a
notification names its types, a claim whose caller leaves gives its steps back, a
deadline cuts the wait short, and the leader expires ended leases."""

import asyncio
import time

from fleetq_server.runtime.lease_expiry import LeaseExpiryLoop
from fleetq_server.runtime.remote_claims import ClaimRequest, RemoteClaims
from fleetq_server.runtime.state import PodState
from fleetq_server.store.records import LeasedStep
from tests.support.memory_store import MemoryStore
from tests.support.waiting import until
from tests.unit.runtime.helpers import submit

POLL_S = 60.0


def request(wait_s: float = 0.0, step_type: str = "echo") -> ClaimRequest:
    return ClaimRequest("w1", [step_type], max_steps=10, wait_s=wait_s, lease_s=30)


async def remote_claims(store: MemoryStore, state: PodState) -> RemoteClaims:
    """RemoteClaims woken by the store's submit notifications, as the pod wires it."""
    claims: RemoteClaims
    subscription = store.submit_subscription(
        [], on_submit=lambda: None, on_counts=lambda counts: claims.notify(counts)
    )
    await subscription.ensure()
    claims = RemoteClaims(store, state, POLL_S, listening=lambda: subscription.connected)
    return claims


def no_deadline() -> float | None:
    return None


async def test_a_long_poll_sleeps_until_a_submit_of_its_type(
    store: MemoryStore, state: PodState
) -> None:
    claims = await remote_claims(store, state)
    waiting = asyncio.create_task(claims.claim(request(wait_s=30), no_deadline))
    await until(lambda: claims.waiters.waiting == 1, description="the poll to wait")
    await submit(store, type="other")  # not its type: it sleeps on
    await asyncio.sleep(0)
    assert not waiting.done()

    step_id = await submit(store)

    [leased] = await asyncio.wait_for(waiting, 5)
    assert (leased.step_id, leased.attempt) == (step_id, 1)
    assert claims.waiters.waiting == 0


async def test_a_step_falling_due_while_the_claim_runs_is_leased_without_waiting_longer(
    store: MemoryStore, state: PodState
) -> None:
    claims = await remote_claims(store, state)
    step_id = await submit(store, delay_s=0.3)
    claim = store.step_lease_claim

    async def slow_claim(*args: object, **kwargs: object) -> list[LeasedStep]:
        leased = await claim(*args, **kwargs)  # type: ignore[arg-type]
        await asyncio.sleep(0.4)  # its answer arrives after the step fell due
        return leased

    store.step_lease_claim = slow_claim  # type: ignore[method-assign]

    # No submit notification comes: only the step's due time can end this 30 s wait early.
    [leased] = await asyncio.wait_for(claims.claim(request(wait_s=30), no_deadline), 5)
    assert leased.step_id == step_id


async def test_a_wait_ends_empty_before_the_callers_deadline(
    store: MemoryStore, state: PodState
) -> None:
    claims = await remote_claims(store, state)
    ends = time.monotonic() + 0.7

    started = time.monotonic()
    steps = await claims.claim(request(wait_s=30), lambda: ends - time.monotonic())

    assert steps == []
    assert time.monotonic() - started < 0.6  # the margin before the deadline


class CountedClaims(MemoryStore):
    """Counts leased claim statements."""

    def __init__(self) -> None:
        super().__init__()
        self.statements = 0

    async def step_lease_claim(
        self, pod_id: str, worker_id: str, step_types: list[str], limit: int, lease_s: float
    ) -> list[LeasedStep]:
        self.statements += 1
        return await super().step_lease_claim(pod_id, worker_id, step_types, limit, lease_s)


async def test_a_submit_wakes_only_as_many_long_polls_as_it_has_steps(state: PodState) -> None:
    store = CountedClaims()
    await store.pod_register("pod-a", 4)
    claims = await remote_claims(store, state)
    polls = [asyncio.create_task(claims.claim(request(wait_s=30), no_deadline)) for _ in range(5)]
    await until(lambda: claims.waiters.waiting == 5, description="the polls to wait")
    before = store.statements  # one empty claim each

    await submit(store)

    [answered] = await next(asyncio.as_completed(polls, timeout=5))
    assert answered.attempt == 1
    for _ in range(10):  # a poll woken too would claim (and find nothing) within these turns
        await asyncio.sleep(0)
    assert store.statements == before + 1
    assert claims.waiters.waiting == 4
    for poll in polls:
        poll.cancel()
    await asyncio.gather(*polls, return_exceptions=True)


async def test_a_woken_long_poll_whose_caller_left_passes_the_step_to_another(
    store: MemoryStore, state: PodState
) -> None:
    claims = await remote_claims(store, state)
    first = asyncio.create_task(claims.claim(request(wait_s=30), no_deadline))
    await until(lambda: claims.waiters.waiting == 1, description="the first poll to wait")
    second = asyncio.create_task(claims.claim(request(wait_s=30), no_deadline))
    await until(lambda: claims.waiters.waiting == 2, description="the second poll to wait")

    step_id = await submit(store)
    await asyncio.sleep(0)  # the notification wakes the first poll (it takes 10)...
    first.cancel()  # ...whose caller leaves before it claims

    [leased] = await asyncio.wait_for(second, 5)
    assert (leased.step_id, leased.attempt) == (step_id, 1)
    assert first.cancelled()


async def test_a_woken_long_poll_out_of_time_answers_empty_and_passes_the_step_on(
    store: MemoryStore, state: PodState
) -> None:
    claims = await remote_claims(store, state)
    time_left = [60.0]
    late = asyncio.create_task(claims.claim(request(wait_s=30), lambda: time_left[0]))
    await until(lambda: claims.waiters.waiting == 1, description="the first poll to wait")
    other = asyncio.create_task(claims.claim(request(wait_s=30), no_deadline))
    await until(lambda: claims.waiters.waiting == 2, description="the second poll to wait")

    step_id = await submit(store)
    time_left[0] = 0.1  # the first call's deadline is upon it as the wake arrives

    assert await asyncio.wait_for(late, 5) == []
    [leased] = await asyncio.wait_for(other, 5)
    assert leased.step_id == step_id


class SlowClaims(MemoryStore):
    """Holds each leased claim until `proceed` is set, as a slow statement would."""

    def __init__(self) -> None:
        super().__init__()
        self.claiming = asyncio.Event()
        self.proceed = asyncio.Event()

    async def step_lease_claim(
        self, pod_id: str, worker_id: str, step_types: list[str], limit: int, lease_s: float
    ) -> list[LeasedStep]:
        self.claiming.set()
        await self.proceed.wait()
        return await super().step_lease_claim(pod_id, worker_id, step_types, limit, lease_s)


async def test_a_claim_whose_caller_left_gives_its_steps_back(state: PodState) -> None:
    store = SlowClaims()
    await store.pod_register("pod-a", 4)
    step_id = await submit(store)
    claims = await remote_claims(store, state)
    call = asyncio.create_task(claims.claim(request(), no_deadline))
    await store.claiming.wait()

    call.cancel()  # the client left while the statement ran; the statement still commits
    await asyncio.sleep(0)
    store.proceed.set()

    await until(lambda: call.done(), description="the cancelled call to end")
    assert call.cancelled()
    record = await store.step_get(step_id)
    assert (record.status, record.attempt, record.retry_count) == ("pending", 1, 0)


async def test_the_leader_expires_ended_leases(store: MemoryStore, state: PodState) -> None:
    step_id = await submit(store)
    await store.step_lease_claim("pod-a", "w1", ["echo"], 1, 0.5)
    loop = LeaseExpiryLoop(store, state, interval=POLL_S)

    await loop.run_once()  # not the leader: nothing happens
    assert (await store.step_get(step_id)).status == "claimed"
    state.is_leader = True
    await loop.run_once()
    assert 0 < loop.next_wait() <= 0.6  # wakes as the lease ends
    store.advance(1)
    await loop.run_once()

    record = await store.step_get(step_id)
    assert (record.status, record.retry_count) == ("pending", 1)
    assert record.error is not None and record.error["type"] == "lease_expired"
    assert loop.next_wait() == POLL_S
