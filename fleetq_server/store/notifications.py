"""The submit channel: what a submit NOTIFYs on it, and LISTENing on a dedicated connection
(not from the pool: a pooled connection would be handed to other work and its LISTEN lost)."""

import logging
from collections.abc import Callable, Iterable, Mapping

import asyncpg

from fleetq_server.store.connection import translated_errors

log = logging.getLogger(__name__)

# NOTIFY channel idle pods LISTEN on. A submit's payload names the new steps' types,
# comma-separated (types hold neither commas nor colons), so pods that run none of them
# stay asleep, and says how many: an item is one step of its type ("a") or n more
# ("a:n"), and a type of n > 1 steps is written "a,a:(n-1)", so a pod that reads the
# payload as a bare list of types (the previous version) still sees "a". Long polls
# wake as many waiters as the counts need. Empty means "any type": releases, requeues,
# and batches whose payload would not fit PostgreSQL's 8,000-byte limit.
SUBMIT_CHANNEL = "fleetq_step_submitted"
MAX_NOTIFY_TYPES_CHARS = 7000


def _notify_submitted(per_type: str) -> str:
    """The one NOTIFY of new steps (the payload above) from `per_type`, rows (type, n);
    none when there are none."""
    return f"""
    SELECT pg_notify('{SUBMIT_CHANNEL}',
        CASE WHEN length(types) <= {MAX_NOTIFY_TYPES_CHARS} THEN types ELSE '' END)
    FROM (
        SELECT string_agg(CASE WHEN n = 1 THEN type
                               ELSE type || ',' || type || ':' || (n - 1) END,
                          ',') AS types
        FROM {per_type}
    ) AS batch
    WHERE types IS NOT NULL
"""


# Over a CTE `inserted` (step_id, type) of the new steps.
NOTIFY_SUBMITTED = _notify_submitted(
    "(SELECT type, count(*) AS n FROM inserted GROUP BY type) AS per_type"
)
# Over steps already counted by type: $1 the types, $2 how many of each (a copied batch:
# expanding the counts to a row per step for NOTIFY_SUBMITTED to count them again cost
# 0.4 ms of a 1,000-step batch).
NOTIFY_SUBMITTED_COUNTS = _notify_submitted("unnest($1::text[], $2::int[]) AS per_type(type, n)")


class ListenConnection:
    """One channel LISTENed on a connection of its own; reconnect with `ensure()`.
    Subclasses name the channel and turn each payload into their callback."""

    channel: str

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._connection: asyncpg.Connection | None = None

    @property
    def connected(self) -> bool:
        """Whether the LISTEN connection is open."""
        return self._connection is not None and not self._connection.is_closed()

    async def ensure(self) -> bool:
        """Open the LISTEN connection if it is not open; True when it was (re)opened.

        A notification missed while disconnected is covered by the caller acting once on
        reconnect and by its slow poll.
        """
        if self.connected:
            return False
        await self.close()
        with translated_errors():
            connection = await asyncpg.connect(self._dsn, timeout=5)
            await connection.add_listener(self.channel, self._notified)
        self._connection = connection
        return True

    async def close(self) -> None:
        """Close the LISTEN connection."""
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            try:
                await connection.close(timeout=2)
            except Exception:  # closing a broken connection: nothing left to save
                connection.terminate()

    def _notified(self, _connection: object, _pid: int, _channel: str, payload: object) -> None:
        self.on_payload(str(payload) if payload else "")

    def on_payload(self, payload: str) -> None:
        """Handle one notification's payload ("" when it had none)."""
        raise NotImplementedError


def submit_counts(payload: str) -> dict[str, int] | None:
    """A submit NOTIFY's payload as new steps per type (see SUBMIT_CHANNEL): each item is
    one step of a type ("a"), or more of it ("a:3"), and they add up. None: any type."""
    if not payload:
        return None
    counts: dict[str, int] = {}
    for item in payload.split(","):
        step_type, _, count = item.partition(":")
        counts[step_type] = counts.get(step_type, 0) + (int(count) if count.isdigit() else 1)
    return counts


class SubmitSubscription(ListenConnection):
    """Calls `on_submit()` whenever any pod inserts, releases or requeues steps that may be
    of `step_types`, and `on_counts(counts)` with every notification's new steps by type
    (None: any type, any number)."""

    channel = SUBMIT_CHANNEL

    def __init__(
        self,
        dsn: str,
        step_types: Iterable[str],
        on_submit: Callable[[], None],
        on_counts: Callable[[Mapping[str, int] | None], None] | None = None,
    ) -> None:
        super().__init__(dsn)
        self._step_types = frozenset(step_types)
        self._on_submit = on_submit
        self._on_counts = on_counts

    def on_payload(self, payload: str) -> None:
        counts = submit_counts(payload)
        if counts is None or not self._step_types.isdisjoint(counts):
            self._on_submit()
        if self._on_counts is not None:
            self._on_counts(counts)


class PollingOnly:
    """No LISTEN at all (behind a pooler with no direct URL for it): the claim loop's
    poll every FLEETQ_POLL_INTERVAL is then the only wake-up besides a pod's own work."""

    @property
    def connected(self) -> bool:
        """Never: no wake-ups are delivered."""
        return False

    async def ensure(self) -> bool:
        """Nothing to connect."""
        return False

    async def close(self) -> None:
        """Nothing to close."""
