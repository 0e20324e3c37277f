"""Throwaway PostgreSQL databases for tests, through asyncpg, callable from sync fixtures."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from fleetq_server.store import Store, open_store
from fleetq_server.store.migrations import migration_files

T = TypeVar("T")

TEST_DATABASE_PREFIX = "fleetq_test_"
CONNECT_TIMEOUT = 10.0


def run_sync(make_coroutine: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine on a private event loop in a worker thread and return its result.

    A thread keeps fixtures independent of pytest-asyncio: nothing here needs a session-scoped
    loop, and ``asyncio.run`` never touches (or closes) the loop a test runs on.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fleetq-test-db") as pool:
        return pool.submit(lambda: asyncio.run(make_coroutine())).result()


def with_database(url: str, database: str) -> str:
    """The same server URL pointing at another database (TCP and Unix-socket URLs alike)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


def database_name(url: str) -> str:
    """The database a URL names (``postgres`` when it names none, like libpq's default)."""
    return urlsplit(url).path.lstrip("/") or "postgres"


def new_database_name() -> str:
    """A unique, valid, lower-case identifier: ``fleetq_test_`` and 48 random bits."""
    return TEST_DATABASE_PREFIX + secrets.token_hex(6)


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def server_version(url: str) -> int:
    """``server_version_num`` (e.g. 150004), proving the URL is connectable."""
    conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT)
    try:
        return int(await conn.fetchval("SHOW server_version_num"))
    finally:
        await conn.close()


async def stop_fsync(admin_url: str) -> None:
    """A test server of ours no longer fsyncs: every DROP DATABASE waits for a checkpoint,
    every commit for its WAL flush, and on a machine busy writing (benchmarks alongside)
    each fsync costs up to seconds. Its data dies with the session, and only a crash of
    the machine (not of PostgreSQL) loses what was written but not fsynced."""
    await _admin_execute(admin_url, "ALTER SYSTEM SET fsync = off")
    await _admin_execute(admin_url, "SELECT pg_reload_conf()")


async def create_database(admin_url: str, name: str) -> None:
    """CREATE DATABASE ``name`` (empty, from template1) on the admin URL's server."""
    await _admin_execute(admin_url, f"CREATE DATABASE {_quote_ident(name)}")


async def drop_database(admin_url: str, name: str) -> None:
    """DROP DATABASE ... WITH (FORCE): also ends connections a test or a killed pod left open."""
    await _admin_execute(admin_url, f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")


async def _admin_execute(admin_url: str, statement: str) -> None:
    conn = await asyncpg.connect(admin_url, timeout=CONNECT_TIMEOUT)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def opened_store(url: str, pool_size: int = 4) -> AsyncIterator[Store]:
    """A migrated Store on `url`, closed afterwards."""
    store = await open_store(url, pool_size=pool_size)
    try:
        yield store
    finally:
        await store.close()


async def migrate_before(connection: asyncpg.Connection, version: int) -> None:
    """Apply the migrations older than `version`, as a database of that time has them."""
    await connection.execute(
        "CREATE TABLE fleetq_schema_migrations (version integer PRIMARY KEY,"
        " name text NOT NULL, applied_ts timestamptz NOT NULL DEFAULT now())"
    )
    for number, name, sql in migration_files():
        if number < version:
            await connection.execute(sql)
            await connection.execute(
                "INSERT INTO fleetq_schema_migrations (version, name) VALUES ($1, $2)",
                number,
                name,
            )
