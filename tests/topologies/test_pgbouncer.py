"""Pods behind PgBouncer in transaction pooling mode: they start, drain, recover and retain
with nothing PgBouncer would refuse or lose (startup parameters, prepared statements, session
locks, LISTEN on a pooled connection)."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from fleetq_server.store import PGBOUNCER, open_store
from tests.conftest import ServerFactory
from tests.support.databases import run_sync
from tests.support.server_process import ServerProcess
from tests.support.topologies import PgBouncer, scratch_dir
from tests.support.waiting import wait_until

STEPS = 2000
BATCH = 1000
DEAD_THRESHOLD_S = 1.5


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


@pytest.fixture
def bouncer(database_url: str) -> Iterator[PgBouncer]:
    base = scratch_dir("fleetq-pgbouncer-")
    try:
        with PgBouncer(database_url, base) as bouncer:
            yield bouncer
    finally:
        shutil.rmtree(base, ignore_errors=True)


def bounced_env(bouncer: PgBouncer, database_url: str, pod_id: str) -> dict[str, str]:
    return {
        "FLEETQ_DATABASE_URL": bouncer.url(database_name(database_url)),
        "FLEETQ_DATABASE_POOLER": "pgbouncer",
        "FLEETQ_LISTEN_DATABASE_URL": database_url,
        "FLEETQ_DATABASE_POOL_SIZE": "4",
        "FLEETQ_POD_ID": pod_id,
        "FLEETQ_HEARTBEAT_INTERVAL": "0.25",
        "FLEETQ_DEAD_POD_THRESHOLD": str(DEAD_THRESHOLD_S),
        "FLEETQ_RECOVERY_INTERVAL": "3600",
        "FLEETQ_RECOVERY_ON_EXPIRY": "false",
        "FLEETQ_POLL_INTERVAL": "0.5",
        "FLEETQ_LOG_FORMAT": "console",
    }


def queue(pod: ServerProcess) -> dict[str, int]:
    stats: dict[str, int] = httpx.get(f"{pod.http_url}/admin/queue", timeout=10).json()
    return stats


async def retention_pass(url: str) -> int:
    """The retention loop's delete, through PgBouncer as a pod would run it."""
    store = await open_store(url, pool_size=2, pooler=PGBOUNCER)
    try:
        return await store.step_delete_finished_before(0, STEPS * 2)
    finally:
        await store.close()


def test_two_pods_behind_pgbouncer_drain_recover_and_retain(
    bouncer: PgBouncer, database_url: str, server_factory: ServerFactory
) -> None:
    first = server_factory(env=bounced_env(bouncer, database_url, "pgb-a"))
    second = server_factory(env=bounced_env(bouncer, database_url, "pgb-b"))

    step_ids: list[str] = []
    with httpx.Client(base_url=first.http_url, timeout=30) as http:
        for _ in range(STEPS // BATCH):
            body = {"steps": [{"type": "hello_world", "args": {"n": n}} for n in range(BATCH)]}
            response = http.post("/submit/batch", json=body)
            assert response.status_code == 201, response.text
            step_ids += [s["step_id"] for s in response.json()["steps"]]
        assert len(set(step_ids)) == STEPS

        wait_until(
            lambda: queue(first)["completed_steps"] == STEPS,
            timeout=120,
            description=f"{STEPS} steps to complete through PgBouncer",
        )
        stats = queue(first)
        assert (stats["pending_steps"], stats["claimed_steps"], stats["failed_steps"]) == (0, 0, 0)

        # A recovery cycle through PgBouncer (its transaction-scoped advisory lock) finds
        # the pod killed here and marks it down.
        second.kill()
        killed = time.monotonic()
        wait_until(
            lambda: time.monotonic() - killed > DEAD_THRESHOLD_S + 0.5,
            timeout=DEAD_THRESHOLD_S + 5,
            description="the killed pod's heartbeat to go stale",
        )
        recovery = http.post("/admin/recovery/run", json={})
        assert recovery.status_code == 200, recovery.text
        assert recovery.json()["recovery_summary"]["dead_pods"] == ["pgb-b"]
        assert queue(first)["active_pods"] == 1

    deleted = run_sync(lambda: retention_pass(bouncer.url(database_name(database_url))))
    assert deleted == STEPS
    assert queue(first)["completed_steps"] == 0
    for pod in (first, second):
        assert "unsupported startup parameter" not in pod.log_text()
        assert "prepared statement" not in pod.log_text()


def test_a_pod_behind_pgbouncer_without_a_listen_url_finds_steps_by_polling(
    bouncer: PgBouncer, database_url: str, server_factory: ServerFactory
) -> None:
    env = bounced_env(bouncer, database_url, "pgb-poll")
    del env["FLEETQ_LISTEN_DATABASE_URL"]
    pod = server_factory(env=env)
    assert "polling every 0.5s" in pod.log_text()
    with httpx.Client(base_url=pod.http_url, timeout=10) as http:
        step_id = http.post("/submit", json={"type": "hello_world", "args": {}}).json()["step_id"]
        wait_until(
            lambda: http.get(f"/status/{step_id}").json()["status"] == "completed",
            timeout=10,
            description="the polled step to complete",
        )


def test_migrations_through_pgbouncer_apply_once_when_pods_start_together(
    bouncer: PgBouncer, database_url: str
) -> None:
    url = bouncer.url(database_name(database_url))

    async def start_four() -> list[int]:
        stores = await asyncio.gather(
            *(open_store(url, pool_size=1, pooler=PGBOUNCER) for _ in range(4))
        )
        for store in stores:
            await store.close()
        connection = await asyncpg.connect(database_url)
        try:
            rows = await connection.fetch("SELECT version FROM fleetq_schema_migrations")
        finally:
            await connection.close()
        return sorted(row["version"] for row in rows)

    versions = run_sync(start_four)
    assert versions == sorted(set(versions)) and versions[0] == 1


def test_the_leaders_vacuum_runs_through_pgbouncer(bouncer: PgBouncer, database_url: str) -> None:
    url = bouncer.url(database_name(database_url))

    async def vacuum() -> tuple[int, bool]:
        store = await open_store(url, pool_size=1, pooler=PGBOUNCER)
        try:
            _, permitted = await store.step_dead_rows()
            await store.step_vacuum()
        finally:
            await store.close()
        connection = await asyncpg.connect(database_url)
        try:
            count = await connection.fetchval(
                "SELECT vacuum_count FROM pg_stat_user_tables"
                " WHERE relid = 'fleetq_steps'::regclass"
            )
        finally:
            await connection.close()
        return count, permitted

    assert run_sync(vacuum) == (1, True)
