"""Helpers for the pod-runtime tests: pod settings, the health body, and the test side of
``tests.handlers.recording`` (its tables, its executions, its gates)."""

from __future__ import annotations

from typing import Any

import asyncpg

from tests.blackbox.contract import FAST_POD_ENV
from tests.handlers import recording
from tests.support.databases import run_sync

# Quick pods that run the recording handlers.
POD_ENV = {**FAST_POD_ENV, "FLEETQ_HANDLERS": recording.__name__}
# The service name grpc.health.v1 reports on besides "".
FLEETQ_SERVICE = "fleetq.v1.FleetQService"


async def _execute(database_url: str, sql: str, *args: Any) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(sql, *args)
    finally:
        await connection.close()


async def _fetch(database_url: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    connection = await asyncpg.connect(database_url)
    try:
        return [dict(row) for row in await connection.fetch(sql, *args)]
    finally:
        await connection.close()


def create_tables(database_url: str) -> None:
    """Create the tables the recording handlers write to (before any pod runs them)."""
    run_sync(lambda: _execute(database_url, recording.SCHEMA))


def executions(database_url: str, step_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """Recorded executions in the order they started, optionally of some steps only."""
    if step_ids is None:
        return run_sync(lambda: _fetch(database_url, "SELECT * FROM test_executions ORDER BY seq"))
    return run_sync(
        lambda: _fetch(
            database_url,
            "SELECT * FROM test_executions WHERE step_id = ANY($1::text[]) ORDER BY seq",
            step_ids,
        )
    )


def open_gate(database_url: str, name: str) -> None:
    """Let every `gated` step waiting on `name` finish."""
    run_sync(lambda: _execute(database_url, "INSERT INTO test_gates VALUES ($1)", name))
