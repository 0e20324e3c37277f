"""SQL for retention: delete finished steps, recovery records, down pods and remote
workers unseen past an age.

Each call deletes one bounded batch in its own short transaction, oldest first, so a large
backlog is worked off in many small statements instead of one that holds locks for long.
Only finished rows qualify and locked rows are skipped, so claims (which touch only pending
rows) never wait on retention. Ages are judged by the database clock.
"""

from fleetq_server.store.connection import PoolHolder

# The oldest rows matching `finished` come from the index on `since` (for steps, the
# partial index whose predicate `finished` repeats; pods are few); the subselect locks
# them, so their ctids stay valid for the DELETE, which is then a TID scan.
_DELETE_OLDEST = """
    DELETE FROM {table} WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM {table}
        WHERE {finished} AND {since} < now() - make_interval(secs => $1)
        ORDER BY {since}
        LIMIT $2
        FOR UPDATE SKIP LOCKED
    ))
"""
# A step's attempt rows go in the same statement (they have no foreign key to cascade).
_DELETE_OLD_STEPS = f"""
    WITH gone AS (
        {
    _DELETE_OLDEST.format(
        table="fleetq_steps",
        finished="status IN ('completed', 'failed', 'cancelled')",
        since="finished_ts",
    )
}
        RETURNING step_id
    ), attempts AS (
        DELETE FROM fleetq_step_attempts AS a USING gone WHERE a.step_id = gone.step_id
    )
    SELECT count(*) FROM gone
"""
_DELETE_OLD_RECOVERY_RECORDS = _DELETE_OLDEST.format(
    table="fleetq_recovery_cycles", finished="TRUE", since="finished_ts"
)
# A pod row marked down is history only: every process start adds one. Steps still naming
# it are recovery's orphans whether or not the row exists, and a pod that finds its row gone
# re-registers under a new id, as it does when it finds it marked down.
_DELETE_OLD_DOWN_PODS = _DELETE_OLDEST.format(
    table="fleetq_pods", finished="status = 'down'", since="last_heartbeat_ts"
)
# A remote worker's row (migration 0009) says what /admin/queue shows of it; one holding a
# lease stays, however long since it was seen, until its leases end (the steps it holds
# name it; fleetq_steps_claimed_by_idx finds them). A worker that claims again gets its row
# back from the claim's upsert.
_DELETE_UNSEEN_WORKERS = _DELETE_OLDEST.format(
    table="fleetq_workers",
    finished="""NOT EXISTS (
        SELECT 1 FROM fleetq_steps AS s
        WHERE s.status = 'claimed' AND s.claimed_by = fleetq_workers.worker_id
          AND s.lease_expires_at IS NOT NULL)""",
    since="last_seen_ts",
)


class RetentionQueries(PoolHolder):
    """Bounded deletes of old finished work and of pods long gone."""

    async def step_delete_finished_before(self, age_s: float, limit: int) -> int:
        """Delete up to `limit` finished (completed, failed or cancelled) steps that finished
        more than `age_s` seconds ago, with their attempts; returns how many were deleted."""
        async with self._connection() as connection:
            deleted: int = await connection.fetchval(_DELETE_OLD_STEPS, age_s, limit)
        return deleted

    async def recovery_record_delete_before(self, age_s: float, limit: int) -> int:
        """Delete up to `limit` recovery-cycle records that finished more than `age_s`
        seconds ago; returns how many were deleted."""
        return await self._delete_batch(_DELETE_OLD_RECOVERY_RECORDS, age_s, limit)

    async def pod_delete_down_before(self, age_s: float, limit: int) -> int:
        """Delete up to `limit` pods marked down whose last heartbeat is more than `age_s`
        seconds old; returns how many were deleted."""
        return await self._delete_batch(_DELETE_OLD_DOWN_PODS, age_s, limit)

    async def worker_delete_unseen_before(self, age_s: float, limit: int) -> int:
        """Delete up to `limit` remote workers last seen more than `age_s` seconds ago
        that hold no lease; returns how many were deleted."""
        return await self._delete_batch(_DELETE_UNSEEN_WORKERS, age_s, limit)

    async def _delete_batch(self, statement: str, age_s: float, limit: int) -> int:
        async with self._connection() as connection:
            status = await connection.execute(statement, age_s, limit)
        return int(status.split()[-1])
