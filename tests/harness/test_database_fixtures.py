"""The database fixtures: every test gets a distinct, empty, connectable database of its own."""

from __future__ import annotations

import os
import subprocess
import sys

import asyncpg
import pytest

from tests.conftest import TEST_DATABASE_URL_ENV
from tests.support.databases import (
    TEST_DATABASE_PREFIX,
    create_database,
    database_name,
    drop_database,
    new_database_name,
    run_sync,
    with_database,
)
from tests.support.waiting import wait_until

# Names handed out in this module, in test order: later tests check they were all distinct and
# that each was dropped after its test.
_seen: list[str] = []

_USER_TABLES = (
    "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
)


async def _use_database(url: str) -> str:
    """Check the database is empty, leave a table behind, and return its name."""
    conn = await asyncpg.connect(url)
    try:
        name: str = await conn.fetchval("SELECT current_database()")
        assert await conn.fetchval(_USER_TABLES) == 0, "a test database must start empty"
        await conn.execute("CREATE TABLE leftover (id int)")  # the next test must not see it
        return name
    finally:
        await conn.close()


@pytest.mark.parametrize("round_", range(3))
def test_sync_test_gets_a_fresh_empty_database(database_url: str, round_: int) -> None:
    name = run_sync(lambda: _use_database(database_url))
    assert name == database_name(database_url)
    assert name.startswith(TEST_DATABASE_PREFIX)
    assert name not in _seen
    _seen.append(name)


async def test_async_test_gets_a_fresh_empty_database(database_url: str) -> None:
    name = await _use_database(database_url)  # on the test's own event loop
    assert name not in _seen
    _seen.append(name)


async def test_databases_of_earlier_tests_were_dropped(postgres_admin_url: str) -> None:
    assert len(_seen) == 4, "runs after the tests above (run the whole module)"
    conn = await asyncpg.connect(postgres_admin_url)
    try:
        left = await conn.fetchval(
            "SELECT count(*) FROM pg_database WHERE datname = ANY($1::text[])", _seen
        )
    finally:
        await conn.close()
    assert left == 0


def test_drop_ends_connections_left_open(postgres_admin_url: str) -> None:
    """A pod killed mid-test leaves connections; the teardown's DROP ... WITH (FORCE) copes."""
    name = new_database_name()
    run_sync(lambda: create_database(postgres_admin_url, name))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import asyncio, asyncpg, sys\n"
            "async def main():\n"
            "    conn = await asyncpg.connect(sys.argv[1])\n"
            "    print('connected', flush=True)\n"
            "    await asyncio.sleep(60)\n"
            "asyncio.run(main())\n",
            with_database(postgres_admin_url, name),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "connected"
        run_sync(lambda: drop_database(postgres_admin_url, name))
        assert run_sync(lambda: _exists(postgres_admin_url, name)) is False
    finally:
        holder.kill()
        holder.wait()


async def _exists(admin_url: str, name: str) -> bool:
    conn = await asyncpg.connect(admin_url)
    try:
        return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql://postgres@127.0.0.1:5432/postgres",
            "postgresql://postgres@127.0.0.1:5432/fleetq_test_x",
        ),
        (
            "postgresql://postgres@/postgres?host=%2Ftmp%2Fpg&port=5432",
            "postgresql://postgres@/fleetq_test_x?host=%2Ftmp%2Fpg&port=5432",
        ),
        (
            "postgresql://u:p@db/?sslmode=disable",
            "postgresql://u:p@db/fleetq_test_x?sslmode=disable",
        ),
    ],
)
def test_with_database_keeps_everything_but_the_name(url: str, expected: str) -> None:
    assert with_database(url, "fleetq_test_x") == expected


def test_wait_until_returns_as_soon_as_the_condition_holds() -> None:
    calls: list[int] = []

    def third_time() -> int | None:
        calls.append(1)
        return len(calls) if len(calls) >= 3 else None

    assert wait_until(third_time, timeout=5, interval=0.001) == 3
    with pytest.raises(AssertionError, match="never"):
        wait_until(lambda: None, timeout=0.05, interval=0.01, description="never")


@pytest.mark.skipif(
    bool(os.environ.get(TEST_DATABASE_URL_ENV)), reason="a server named by URL keeps its settings"
)
async def test_the_embedded_test_server_does_not_fsync(postgres_admin_url: str) -> None:
    conn = await asyncpg.connect(postgres_admin_url)
    try:
        assert await conn.fetchval("SHOW fsync") == "off"
    finally:
        await conn.close()
