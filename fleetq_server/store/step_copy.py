"""Large batches of plain new steps inserted by COPY rather than by INSERT ... SELECT.

A plain step (no client key, not scheduled, no pending expiry) needs nothing computed per
row and nothing can conflict: the column defaults (status, created_ts, not_before_ts ...)
are all it takes. COPY's text format hands PostgreSQL the rows as they are, where the
INSERT had it parse the batch as one jsonb document and take it apart again (a third of
its CPU there). Measured on PostgreSQL 15, 40 interleaved batches of 1,000 steps into one
table, backend CPU from /proc/<pid>/schedstat: 25.8 us per step by the INSERT, 18.5 by
COPY, with the same Python CPU on our side (about 5.5 us per step, under load).

PostgreSQL inserts the rows as they arrive (migration 0018 makes a column default volatile,
which turns COPY's multi-insert buffering off): buffered, a few hundred rows waited for the
end of the COPY, 4-6 ms of work after the last part with nothing left to overlap.

Only large all-or-nothing SubmitBatches come this way (api/batch_parts.py): COPY takes
more round trips (BEGIN, the copy, the NOTIFY, COMMIT), which the coalesced single
submits, waiting on their insert, keep the INSERT's one for.
"""

import collections
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import Any, Protocol

from fleetq_server.store.notifications import NOTIFY_SUBMITTED_COUNTS
from fleetq_server.store.records import NewStep

# From this many steps a batch goes by COPY (when all of them are plain).
COPY_MIN_STEPS = 64
_COLUMNS = (
    "step_id", "type", "args", "metadata", "priority", "max_retries",
    "idempotency_key", "payload_hash", "traceparent",
)  # fmt: skip


class StepCopyPort(Protocol):
    """Large batches of plain steps, stored while they are still being prepared (the API)."""

    async def step_copy_parts(self, parts: AsyncIterable[Sequence[NewStep]]) -> int | None:
        """New plain steps, all or none, each part stored while the next is prepared: how
        many were stored (every one of them new), or None when a part held a step that was
        not plain (nothing stored: they need the INSERT)."""


def is_plain(step: NewStep) -> bool:
    """Nothing to compute from the database clock, nothing to de-duplicate."""
    return (
        step.client_key is None
        and step.run_at is None
        and step.delay_s is None
        and step.pending_expiry_s is None
    )


class _NotPlain(Exception):
    """A part of the steps to copy holds a step that is not plain: COPY is abandoned."""


async def step_copy_parts(connection: Any, parts: AsyncIterable[Sequence[NewStep]]) -> int | None:
    """Insert the steps of `parts` with one NOTIFY, in one transaction: all of them or
    none, durable before this returns, the NOTIFY sent at the commit; how many.

    Each part is sent as it arrives, so PostgreSQL inserts one while the caller prepares
    the next. An error raised by `parts` rolls everything back and propagates; a part
    holding a step that is not plain (see `is_plain`) rolls back too, and this returns
    None: those steps need the INSERT.
    """
    copied: list[NewStep] = []
    failed: list[Exception] = []
    counts: collections.Counter[str] = collections.Counter()

    async def rows() -> AsyncIterator[bytes]:
        # An error of `parts` ends the data cleanly and is raised again inside the
        # transaction, which rolls back: aborting the COPY itself would have asyncpg send
        # a cancel request on a connection of its own.
        try:
            async for part in parts:
                if not all(map(is_plain, part)):
                    raise _NotPlain
                copied.extend(part)
                yield _rows(part)
            # The last part is on its way: the NOTIFY's counts are worked out while
            # PostgreSQL inserts it, not after.
            counts.update(step.type for step in copied)
        except Exception as exc:
            failed.append(exc)

    try:
        async with connection.transaction():
            await connection.copy_to_table("fleetq_steps", source=rows(), columns=_COLUMNS)
            if failed:
                raise failed[0]
            await connection.execute(NOTIFY_SUBMITTED_COUNTS, list(counts), list(counts.values()))
    except _NotPlain:
        return None
    return len(copied)


def _rows(steps: Sequence[NewStep]) -> bytes:
    """`steps` as rows of COPY's text format, in the order of _COLUMNS."""
    return b"".join(
        b"%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n"
        % (
            step.step_id.encode(),
            step.type.encode(),
            _copy_json(step.args_json),
            _copy_json(step.metadata_json),
            step.priority,
            step.max_retries,
            step.idempotency_key.encode(),
            step.payload_hash.encode(),
            step.traceparent.encode() if step.traceparent is not None else b"\\N",
        )
        for step in steps
    )


def _copy_json(text: bytes) -> bytes:
    """A validated JSON object's text as a field of COPY's text format.

    JSON writes every control character escaped, so no tab, newline or carriage return
    can occur raw; its backslashes are doubled, as the format asks. Every other column
    holds what cannot need escaping: ids and keys made of hex digits, types matching
    their pattern, traceparents (hex digits and dashes), numbers.
    """
    return text.replace(b"\\", b"\\\\") if b"\\" in text else text
