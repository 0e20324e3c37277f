"""Schema migrations against a real PostgreSQL."""

import asyncio

from fleetq_server.store import open_store
from fleetq_server.store.migrations import migration_files


async def test_migrations_are_idempotent_across_concurrent_starts(database_url: str) -> None:
    stores = await asyncio.gather(*(open_store(database_url, pool_size=1) for _ in range(4)))
    for store in stores:
        await store.ping()
    # Each migration applied exactly once, whichever pod took the lock first.
    async with stores[0]._connection() as connection:
        versions = await connection.fetch(
            "SELECT version FROM fleetq_schema_migrations ORDER BY version"
        )
    assert [row["version"] for row in versions] == [v for v, _, _ in migration_files()]
    for store in stores:
        await store.close()
