"""Test-only SQL that makes rows look older: the database clock itself cannot be moved."""

from fleetq_server.store import Store


async def age_heartbeat(store: Store, pod_id: str, seconds: float) -> None:
    """Make a pod look silent for `seconds`: its last heartbeat and its lease move back
    together (the SET's right-hand sides read the row as it was)."""
    async with store._connection() as connection:
        await connection.execute(
            "UPDATE fleetq_pods SET last_heartbeat_ts = now() - make_interval(secs => $2),"
            " expires_at = expires_at - (last_heartbeat_ts - now() + make_interval(secs => $2))"
            " WHERE pod_id = $1",
            pod_id,
            seconds,
        )


async def age_step(store: Store, step_id: str, seconds: float) -> None:
    """Make a step look created (its schedule with it) and finished `seconds` earlier."""
    async with store._connection() as connection:
        await connection.execute(
            """
            UPDATE fleetq_steps
            SET created_ts = created_ts - make_interval(secs => $2),
                not_before_ts = not_before_ts - make_interval(secs => $2),
                finished_ts = finished_ts - make_interval(secs => $2)
            WHERE step_id = $1
            """,
            step_id,
            seconds,
        )


async def age_recovery_records(store: Store, count: int, seconds: float) -> None:
    """Make `count` recovery-cycle records look finished `seconds` ago."""
    async with store._connection() as connection:
        await connection.execute(
            "UPDATE fleetq_recovery_cycles SET finished_ts = now() - make_interval(secs => $2)"
            " WHERE cycle_id IN (SELECT cycle_id FROM fleetq_recovery_cycles LIMIT $1)",
            count,
            seconds,
        )


async def age_worker(store: Store, worker_id: str, seconds: float) -> None:
    """Make a remote worker look last seen `seconds` earlier."""
    async with store._connection() as connection:
        await connection.execute(
            "UPDATE fleetq_workers SET last_seen_ts = last_seen_ts - make_interval(secs => $2)"
            " WHERE worker_id = $1",
            worker_id,
            seconds,
        )
