"""SQL for orphaned claims: steps a live pod holds in the database but is not running.

A claim can commit while its answer is lost (the connection dies between the commit and
the reply, as when a primary crashes and its synchronous standby is promoted). The step is
then claimed by a pod that is alive, so recovery, which takes back only what dead pods
hold, never requeues it. The claimer gives such steps back once it is connected again.
"""

from collections.abc import Collection

from fleetq_server.store.connection import PoolHolder
from fleetq_server.store.steps import release_statement


class StepOrphanQueries(PoolHolder):
    """The claimer's release of its own claims that it never launched."""

    async def step_release_orphans(
        self, pod_id: str, running_step_ids: Collection[str]
    ) -> list[tuple[str, str]]:
        """Give back to pending, without spending a retry, every step claimed by `pod_id`
        outside `running_step_ids` (what the pod is executing or still recording); returns
        (step id, type) of each released.

        Fenced by the pod's own id and its running set: call it only while no claim of
        this pod is in flight, or a claim committing meanwhile would be released under its
        executor. The handler never started, so no retry is spent (as at shutdown); the
        attempt the lost claim counted stays counted, so its token cannot come back.
        """
        async with self._connection() as connection:
            rows = await connection.fetch(
                release_statement("s.claimed_by = $1 AND s.step_id <> ALL($2::text[])", "$1"),
                pod_id,
                list(running_step_ids),
            )
        return [(row["step_id"], row["type"]) for row in rows]
