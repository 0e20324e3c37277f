"""SQL for retention: delete finished steps and recovery records past a given age.

Each call deletes one bounded batch in its own short transaction, oldest first, so a large
backlog is worked off in many small statements instead of one that holds locks for long.
Only finished rows qualify and locked rows are skipped, so claims (which touch only pending
rows) never wait on retention. Ages are judged by the database clock.
"""

from fleetq_server.store.connection import PoolHolder, translate_errors

# The oldest rows matching `finished` come from the index on finished_ts (for steps, the
# partial index whose predicate `finished` repeats); the subselect locks them, so their
# ctids stay valid for the DELETE, which is then a TID scan.
_DELETE_OLDEST = """
    DELETE FROM {table} WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM {table}
        WHERE {finished} AND finished_ts < now() - make_interval(secs => $1)
        ORDER BY finished_ts
        LIMIT $2
        FOR UPDATE SKIP LOCKED
    ))
"""
_DELETE_OLD_STEPS = _DELETE_OLDEST.format(
    table="fleetq_steps", finished="status IN ('completed', 'failed')"
)
_DELETE_OLD_RECOVERY_RECORDS = _DELETE_OLDEST.format(
    table="fleetq_recovery_cycles", finished="TRUE"
)


class RetentionQueries(PoolHolder):
    """Bounded deletes of old finished work."""

    @translate_errors
    async def step_delete_finished_before(self, age_s: float, limit: int) -> int:
        """Delete up to `limit` completed or failed steps that finished more than `age_s`
        seconds ago; returns how many were deleted."""
        return await self._delete_batch(_DELETE_OLD_STEPS, age_s, limit)

    @translate_errors
    async def recovery_record_delete_before(self, age_s: float, limit: int) -> int:
        """Delete up to `limit` recovery-cycle records that finished more than `age_s`
        seconds ago; returns how many were deleted."""
        return await self._delete_batch(_DELETE_OLD_RECOVERY_RECORDS, age_s, limit)

    async def _delete_batch(self, statement: str, age_s: float, limit: int) -> int:
        async with self._connection() as connection:
            status = await connection.execute(statement, age_s, limit)
        return int(status.split()[-1])
