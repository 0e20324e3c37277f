"""Test-only SQL that makes rows look older: the database clock itself cannot be moved."""

from fleetq_server.store import Store


async def age_heartbeat(store: Store, pod_id: str, seconds: float) -> None:
    """Make a pod look silent for `seconds`."""
    async with store._connection() as connection:
        await connection.execute(
            "UPDATE fleetq_pods SET last_heartbeat_ts = now() - make_interval(secs => $2)"
            " WHERE pod_id = $1",
            pod_id,
            seconds,
        )
