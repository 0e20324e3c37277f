"""SQL about a server's sessions (pg_stat_activity): who else is connected.

The embedded server's last pod stops it only when no other client is connected, and
`fleetq db status` reports the clients; both ask here.
"""

import asyncpg

_CLIENTS_BY_APPLICATION = """
    SELECT application_name, count(*)::int AS n FROM pg_stat_activity
    WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
    GROUP BY application_name
"""


async def activity_clients_by_application(connection: asyncpg.Connection) -> dict[str, int]:
    """Client sessions other than the caller's, counted by application_name ('' when unset)."""
    rows = await connection.fetch(_CLIENTS_BY_APPLICATION)
    return {row["application_name"]: row["n"] for row in rows}
