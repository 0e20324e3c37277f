"""The asyncpg pool and the one place asyncpg errors become our exception types."""

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import asyncpg
import orjson

from fleetq_server import errors

log = logging.getLogger(__name__)

# How long a request waits for a pooled connection before failing with database_error:
# a bounded wait keeps clients from hanging while the database is down or saturated.
POOL_ACQUIRE_TIMEOUT_S = 5.0
# Longest any statement may run before asyncpg cancels it and the caller gets
# database_error: a hung (not down) database cannot hold requests or loops forever.
COMMAND_TIMEOUT_S = 30.0
# Connection errors that mean "the database is unreachable or failing", not "bad request".
_UNAVAILABLE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
)

# SQLSTATE classes of errors caused by the data sent, not by the database's state: data
# exception, integrity constraint violation, program limit exceeded (e.g. a jsonb value
# over 256 MB). Retrying the same statement cannot succeed.
_DATA_REJECTED_CLASSES = frozenset({"22", "23", "54"})


# A run of 19 digits: an integer orjson may not read exactly (it reads those beyond 64 bits
# as doubles), or a number long enough that the standard library should read it.
_LONG_NUMBER = re.compile(r"\d{19}")


def _decode_json(text: str) -> Any:
    """A jsonb value as plain Python: orjson (a step's args took 1.7 us with the standard
    library, 0.2-1 with the check and orjson), except for text with a long digit run, where
    the standard library keeps any integer exact (results may hold them)."""
    return json.loads(text) if _LONG_NUMBER.search(text) else orjson.loads(text)


async def _init_connection(connection: asyncpg.Connection) -> None:
    """jsonb columns come and go as plain Python values."""
    await connection.set_type_codec(
        "jsonb", encoder=json.dumps, decoder=_decode_json, schema="pg_catalog"
    )


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Skip asyncpg's default reset query on release (advisory unlock, UNLISTEN, RESET
    ALL): a round trip per query, and pool connections never change session state here
    (locks are transaction-scoped; LISTEN has its own connection). asyncpg still rolls
    back a transaction left open before this runs."""


# What sits between the pods and PostgreSQL (FLEETQ_DATABASE_POOLER).
DIRECT = "none"
PGBOUNCER = "pgbouncer"
POOLERS = (DIRECT, PGBOUNCER)

# Planner settings for every session of a direct connection, sent as startup parameters.
SESSION_SETTINGS = {
    # A queue's statistics are stale by nature (the pending set changes faster than
    # autovacuum analyzes); with a low estimate the planner claims through a bitmap scan
    # that sorts every pending row (35 ms at 20k pending) instead of reading the claim
    # index in order up to the limit (under 1 ms). None of our statements needs a bitmap
    # scan. Behind a pooler the claim sets it itself (`PoolHolder._claiming`).
    "enable_bitmapscan": "off",
    # Batch statements take arrays (unnest($1)); a cached generic plan guesses their
    # length and chose a nested loop that made a 500-row outcome write take 93 ms instead
    # of 11 ms. Planning per execution costs far less. Behind a pooler the statement cache
    # is off, and an unnamed statement is planned for its parameters every time anyway.
    "plan_cache_mode": "force_custom_plan",
}


# The claim loop's statements that run under its lock (ClaimLoop.insert_and_claim's
# self-claiming insert, store/self_claim.py, and finish_and_claim's outcome write that
# claims, store/step_outcomes.py) run on a connection of their own that plans each once.
# Planned at every submit, the insert took 0.8-1.0 ms of the server's 1.3-1.4 (load 11);
# the outcome write that claims, 1.3-1.7 ms of its 4-5, and the finished-counts trigger's
# statements, planned again at each call, 0.35 ms more (pg_stat_statements, 20,000 steps at
# capacity 8). A generic plan cannot see the claim's LIMIT: it guessed a tenth of the
# pending steps and, once fleetq_steps was analyzed at 20,000 rows, joined the claimed
# steps by hashing a sequential scan of the whole table (14 ms, where probes take 0.1).
# And a plan made once may be used long after the table grew. So this session plans only
# key lookups, each statement's rows driven by its small inputs (arrays, the claim's
# LIMIT, transition tables): index probes in nested loops, the plans the custom ones are
# for these batches (the outcome write's: capacity 16 at most, claims_ahead.MAX_CAPACITY).
PLANNED_ONCE_SETTINGS = {
    **SESSION_SETTINGS,
    "plan_cache_mode": "force_generic_plan",
    "enable_seqscan": "off",
    "enable_hashjoin": "off",
    "enable_mergejoin": "off",
}


def connect_options(pooler: str, settings: Mapping[str, str] = SESSION_SETTINGS) -> dict[str, Any]:
    """asyncpg connection options for a database reached directly or through `pooler`.

    PgBouncer in transaction mode refuses unknown startup parameters, and hands each
    transaction whichever server connection is free, so neither session settings nor
    named prepared statements survive there (PgBouncer 1.18, Debian 12's, predates its
    prepared-statement support): no startup settings, and asyncpg's statement cache off,
    which makes it use unnamed statements.
    """
    if pooler == PGBOUNCER:
        return {"statement_cache_size": 0}
    return {"server_settings": dict(settings)}


async def create_pool(
    dsn: str,
    max_size: int,
    command_timeout: float = COMMAND_TIMEOUT_S,
    pooler: str = DIRECT,
    query_logger: Callable[[Any], None] | None = None,
    settings: Mapping[str, str] = SESSION_SETTINGS,
) -> asyncpg.Pool:
    """Open the pool; raises DatabaseUnavailableError when PostgreSQL is unreachable.
    `query_logger` is added to every connection (asyncpg calls it after each query)."""

    async def init(connection: asyncpg.Connection) -> None:
        await _init_connection(connection)
        if query_logger is not None:
            connection.add_query_logger(query_logger)

    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=max_size,
            init=init,
            reset=_keep_session,
            timeout=10,  # to connect
            command_timeout=command_timeout,
            **connect_options(pooler, settings),
        )
    except _UNAVAILABLE as exc:
        raise errors.DatabaseUnavailableError(f"cannot connect to PostgreSQL: {exc}") from exc
    assert pool is not None
    return pool


@contextmanager
def translated_errors() -> Iterator[None]:
    """The one place asyncpg errors become `fleetq_server.errors` types: every pooled
    connection and the LISTEN connection are used inside it, so callers see only ours."""
    try:
        yield
    except errors.FleetQError:
        raise
    except _UNAVAILABLE as exc:
        raise errors.DatabaseUnavailableError("database unavailable") from exc
    except asyncpg.PostgresError as exc:
        log.error("database error: %s", exc)
        if (exc.sqlstate or "")[:2] in _DATA_REJECTED_CLASSES:
            raise errors.DataRejectedError(
                "the database refused the data (too large, out of range or against a constraint)"
            ) from exc
        raise errors.DatabaseUnavailableError("database error") from exc


class PoolHolder:
    """Base of the store's query classes: owns the pool and lends connections."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        dsn: str,
        listen_dsn: str | None,
        pooler: str = DIRECT,
        *,
        durable_claims: bool = False,
        command_timeout: float = COMMAND_TIMEOUT_S,
        query_logger: Callable[[Any], None] | None = None,
    ) -> None:
        self._pool = pool
        # What the pool was opened with, for the connections the store opens beside it.
        self._command_timeout, self._query_logger = command_timeout, query_logger
        # For the heartbeat's connection, outside the pool.
        self._dsn = dsn
        # The heartbeat's own connection, opened on its first beat: requests holding every
        # pooled connection must not delay the beat that keeps this pod alive.
        self._heartbeat_pool: asyncpg.Pool | None = None
        # The claim loop's own connection (PLANNED_ONCE_SETTINGS), opened on first use.
        self._planned_once_pool: asyncpg.Pool | None = None
        # For the connection outside the pool that LISTEN needs; None: no LISTEN (polling).
        self._listen_dsn = listen_dsn
        self._pooler = pooler
        # Whether a pod's claim waits for its WAL flush like every other commit (see
        # `claim_statement`'s `unflushed`); FLEETQ_DURABLE_CLAIMS.
        self._durable_claims = durable_claims

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        """A pooled connection, waiting at most POOL_ACQUIRE_TIMEOUT_S for one; errors
        raised while it is used (the caller's too) leave translated."""
        with translated_errors():
            async with self._pool.acquire(timeout=POOL_ACQUIRE_TIMEOUT_S) as connection:
                yield connection

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Any]:
        """A pooled connection inside a transaction."""
        async with self._connection() as connection, connection.transaction():
            yield connection

    @asynccontextmanager
    async def _heartbeat_connection(self) -> AsyncIterator[Any]:
        """The heartbeat's dedicated connection (a pool of one, so it reconnects by itself
        after a database restart); errors leave translated."""
        with translated_errors():
            if self._heartbeat_pool is None:
                self._heartbeat_pool = await create_pool(self._dsn, max_size=1, pooler=self._pooler)
            async with self._heartbeat_pool.acquire(timeout=POOL_ACQUIRE_TIMEOUT_S) as connection:
                yield connection

    @asynccontextmanager
    async def _claiming(self, *, transaction: bool = False) -> AsyncIterator[Any]:
        """A pooled connection whose planner skips bitmap scans (see SESSION_SETTINGS), in
        a transaction when `transaction` is true.

        A direct connection has the setting for its whole session. Behind a pooler the
        session is not ours, so the claim runs in a transaction of its own that sets it
        with SET LOCAL, which ends with that transaction whatever server connection it ran on.
        """
        if self._pooler == DIRECT and not transaction:
            async with self._connection() as connection:
                yield connection
            return
        async with self._transaction() as connection:
            if self._pooler != DIRECT:
                await connection.execute("SET LOCAL enable_bitmapscan = off")
            yield connection

    @asynccontextmanager
    async def _planned_once(self) -> AsyncIterator[Any]:
        """`_claiming()` for the claim loop's statements that plan once: directly connected,
        its own connection (PLANNED_ONCE_SETTINGS), a pool of one, so they run one at a
        time: a second outcome write under way (runtime.claims_ahead.WRITES_IN_FLIGHT)
        waits here, ready, for the first one's answer. Behind a pooler, whose sessions are
        not ours, a pooled one."""
        if self._pooler != DIRECT:
            async with self._claiming() as connection:
                yield connection
            return
        with translated_errors():
            if self._planned_once_pool is None:
                self._planned_once_pool = await create_pool(
                    self._dsn,
                    max_size=1,
                    command_timeout=self._command_timeout,
                    query_logger=self._query_logger,
                    settings=PLANNED_ONCE_SETTINGS,
                )
            pool = self._planned_once_pool
            async with pool.acquire(timeout=POOL_ACQUIRE_TIMEOUT_S) as connection:
                yield connection

    async def close(self) -> None:
        """Close every connection (graceful shutdown)."""
        for own_pool in (self._heartbeat_pool, self._planned_once_pool):
            if own_pool is not None:
                await own_pool.close()
        await self._pool.close()
