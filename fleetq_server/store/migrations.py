"""Versioned schema migrations, applied at start-up under an advisory lock.

Files in `migrations/` are named `NNNN_description.sql` and applied in order, all pending
ones in one transaction (so a failed file leaves none applied). A transaction-scoped advisory
lock serialises pods that start together: the second pod waits, then finds nothing left to
apply. Transaction-scoped because behind PgBouncer in transaction mode a session lock would
stay on whichever server connection took it, and its unlock could run on another.
"""

from __future__ import annotations

import itertools
import logging
import re
from importlib import resources

import asyncpg

from fleetq_server.store.connection import DIRECT, connect_options

log = logging.getLogger(__name__)

# Arbitrary but fixed: identifies "FLEET-Q schema migration" among advisory locks.
MIGRATION_LOCK_KEY = 0x466C_5130_0001
_FILE_PATTERN = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every migration shipped with the package, in order."""
    found = []
    for entry in resources.files("fleetq_server.store").joinpath("migrations").iterdir():
        match = _FILE_PATTERN.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    for (version, first, _), (next_version, second, _) in itertools.pairwise(found):
        if version == next_version:
            raise RuntimeError(f"migrations {first} and {second} share version {version}")
    return found


async def apply_migrations(dsn: str, pooler: str = DIRECT) -> list[str]:
    """Apply every pending migration; returns the names applied.

    A dedicated connection without the pool's command timeout: waiting for another pod's
    migrations, or a long data migration, is not a hung request.
    """
    connection = await asyncpg.connect(dsn, command_timeout=None, **connect_options(pooler))
    try:
        async with connection.transaction():
            applied = await _apply_locked(connection)
    finally:
        await connection.close()
    for name in applied:
        log.info("applied migration %s", name)
    return applied


async def _apply_locked(connection: asyncpg.Connection) -> list[str]:
    """Inside the caller's transaction, which the lock lasts for."""
    applied: list[str] = []
    await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
    await connection.execute(
        """
        CREATE TABLE IF NOT EXISTS fleetq_schema_migrations (
            version    integer     PRIMARY KEY,
            name       text        NOT NULL,
            applied_ts timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    done = {
        row["version"]
        for row in await connection.fetch("SELECT version FROM fleetq_schema_migrations")
    }
    for version, name, sql in migration_files():
        if version in done:
            continue
        await connection.execute(sql)
        await connection.execute(
            "INSERT INTO fleetq_schema_migrations (version, name) VALUES ($1, $2)",
            version,
            name,
        )
        applied.append(name)
    return applied
