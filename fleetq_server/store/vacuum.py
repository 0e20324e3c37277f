"""The leader's VACUUM of fleetq_steps, and the statistics that say when it is due.

Every claim and every outcome leaves a dead row version, and the claim's entry in the
pending-only claim index stays until a VACUUM removes it: claims start at the head of that
index, so each walks every entry left since the last one, and the drain slows as it goes.
Autovacuum looks at most once a minute (autovacuum_naptime, a server-wide setting) and by
default waits for a fifth of the table to be dead; a fast drain outruns both.
"""

from typing import Protocol

from fleetq_server.store.connection import PoolHolder

# A VACUUM of a large table legitimately runs for minutes: far past the pool's
# COMMAND_TIMEOUT_S, which would cancel it and waste the work done.
VACUUM_TIMEOUT_S = 3600.0

# Dead row versions by the cumulative statistics (they lag commits by up to a second), and
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
# already running (autovacuum's) is doing the work. TRUNCATE false: giving back the
# table's empty tail takes an ACCESS EXCLUSIVE lock that would stall every claim, and the
# next steps would grow it again. Not in a transaction (VACUUM refuses one), so it runs
# as is behind PgBouncer in transaction mode too.
_VACUUM = "VACUUM (INDEX_CLEANUP ON, SKIP_LOCKED, TRUNCATE false) fleetq_steps"


class VacuumPort(Protocol):
    """The leader's vacuum loop's (runtime/vacuum.py)."""

    async def step_dead_rows(self) -> tuple[int, bool]:
        """Dead row versions in fleetq_steps, and whether this role may vacuum it."""

    async def step_vacuum(self) -> None:
        """VACUUM fleetq_steps (a no-op while another VACUUM holds it)."""


class VacuumQueries(PoolHolder):
    """Statistics and VACUUM of fleetq_steps."""

    async def step_dead_rows(self) -> tuple[int, bool]:
        """Dead row versions in fleetq_steps since its last vacuum, by the statistics, and
        whether this role may vacuum the table."""
        async with self._connection() as connection:
            row = await connection.fetchrow(_DEAD_ROWS)
        return int(row["dead"]), bool(row["permitted"])

    async def step_vacuum(self) -> None:
        """VACUUM fleetq_steps, skipped while another VACUUM (autovacuum) holds it."""
        async with self._connection() as connection:
            await connection.execute(_VACUUM, timeout=VACUUM_TIMEOUT_S)
