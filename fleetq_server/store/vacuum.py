"""The leader's VACUUM of fleetq_steps, and the statistics that say when it is due.

Every claim and every outcome leaves a dead row version, and the claim's entry in the
pending-only claim index stays until a VACUUM (or an index page's own clean-up) removes it:
claims start at the head of that index, so each walks past the entries left since, and the
drain slows as it goes. Autovacuum visits a database once per autovacuum_naptime (a minute
by default) and by default waits for a fifth of the table to be dead; a fast drain outruns
both.
"""

from typing import Any, Protocol

from fleetq_server.store.connection import PoolHolder

# A VACUUM of a large table legitimately runs for minutes: far past the pool's
# COMMAND_TIMEOUT_S, which would cancel it and waste the work done.
VACUUM_TIMEOUT_S = 3600.0

# Dead row versions by the cumulative statistics (they lag commits by a second or more:
# sessions report their counts at intervals, an idle one within about ten seconds on
# PostgreSQL 15+; a crash resets them), and
# whether this role may vacuum the table: its owner (or a member), the database's owner, or
# on PostgreSQL 17+ a holder of MAINTAIN (pg_maintain). VACUUM without the privilege only
# warns and skips, so the loop asks first. The CASE keeps 'MAINTAIN' from older servers,
# which reject the word.
_DEAD_ROWS = """
    SELECT s.n_dead_tup AS dead,
           pg_has_role(c.relowner, 'USAGE')
           OR pg_has_role((SELECT datdba FROM pg_database
                           WHERE datname = current_database()), 'USAGE')
           OR CASE WHEN current_setting('server_version_num')::int >= 170000
                   THEN has_table_privilege(c.oid, 'MAINTAIN') ELSE false END AS permitted
    FROM pg_class AS c JOIN pg_stat_user_tables AS s ON s.relid = c.oid
    WHERE c.oid = 'fleetq_steps'::regclass
"""

# INDEX_CLEANUP ON: with dead rows on under 2% of its pages VACUUM would otherwise skip the
# indexes, leaving exactly the claim index entries this is for. SKIP_LOCKED: a VACUUM
# already running (autovacuum's) is doing the work; PostgreSQL then only warns, with
# _LOCK_NOT_AVAILABLE, and the step says it skipped. TRUNCATE false: giving back the
# table's empty tail takes an ACCESS EXCLUSIVE lock that would stall every claim, and the
# next steps would grow it again. Not in a transaction (VACUUM refuses one), so it runs
# as is behind PgBouncer in transaction mode too.
_VACUUM = "VACUUM (INDEX_CLEANUP ON, SKIP_LOCKED, TRUNCATE false) fleetq_steps"
_LOCK_NOT_AVAILABLE = "55P03"


class VacuumPort(Protocol):
    """The leader's vacuum loop's (runtime/vacuum.py)."""

    async def step_dead_rows(self) -> tuple[int, bool]:
        """Dead row versions in fleetq_steps, and whether this role may vacuum it."""

    async def step_vacuum(self) -> bool:
        """VACUUM fleetq_steps; False when skipped, its lock held (by another VACUUM)."""


class VacuumQueries(PoolHolder):
    """Statistics and VACUUM of fleetq_steps."""

    async def step_dead_rows(self) -> tuple[int, bool]:
        """Dead row versions in fleetq_steps since its last vacuum, by the statistics, and
        whether this role may vacuum the table."""
        async with self._connection() as connection:
            row = await connection.fetchrow(_DEAD_ROWS)
        return int(row["dead"]), bool(row["permitted"])

    async def step_vacuum(self) -> bool:
        """VACUUM fleetq_steps and True, or False when it was skipped: another VACUUM
        (autovacuum's), an ANALYZE or a schema change held a conflicting lock."""
        skipped = False

        def on_notice(_connection: Any, message: Any) -> None:
            nonlocal skipped  # asyncpg calls this before the statement's answer is awaited
            skipped = skipped or getattr(message, "sqlstate", None) == _LOCK_NOT_AVAILABLE

        async with self._connection() as connection:
            connection.add_log_listener(on_notice)
            try:
                await connection.execute(_VACUUM, timeout=VACUUM_TIMEOUT_S)
            finally:
                connection.remove_log_listener(on_notice)
        return not skipped
