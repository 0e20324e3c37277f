"""Step handlers for the pod-runtime tests, loaded into real pods with FLEETQ_HANDLERS.

Handlers wrapped in `recorded` insert one row per execution into `test_executions` of the
test's own database (the pod's FLEETQ_DATABASE_URL); the test creates the tables first with
`SCHEMA`. Each row carries `running`: how many recorded handlers this pod process was
executing at that moment, this one included. The peak of `running` over a pod's rows is the
most steps it ever ran at once, because the last of k overlapping executions to start sees
all k running.
"""

import asyncio
import functools
import os
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from fleetq_server.handlers import HandlerRegistry, StepContext

SCHEMA = """
CREATE TABLE test_executions (
    seq         bigserial   PRIMARY KEY,  -- order in which executions started
    step_id     text        NOT NULL,
    step_type   text        NOT NULL,
    pid         integer     NOT NULL,     -- the pod process that ran it
    attempt     integer     NOT NULL,
    retry_count integer     NOT NULL,
    running     integer     NOT NULL,
    started_ts  timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- A `gated` step finishes once the test inserts its gate's name here.
CREATE TABLE test_gates (name text PRIMARY KEY);
"""

# The per-type timeout of `too_slow`, in seconds.
TOO_SLOW_TIMEOUT_S = 0.3
_GATE_POLL_S = 0.02

AsyncHandler = Callable[[dict[str, Any], StepContext], Awaitable[Any]]

_running = 0
_pool: "asyncio.Future[asyncpg.Pool] | None" = None


async def _database() -> asyncpg.Pool:
    """One small pool per pod process, opened by the first execution that needs it."""
    global _pool
    if _pool is None:
        url = os.environ["FLEETQ_DATABASE_URL"]
        _pool = asyncio.ensure_future(asyncpg.create_pool(url, min_size=1, max_size=4))
    # Shielded: a cancelled execution must not cancel the pool other executions wait for.
    return await asyncio.shield(_pool)


def recorded(handler: AsyncHandler) -> AsyncHandler:
    """Record each execution of `handler` (see the module docstring) before running it."""

    @functools.wraps(handler)
    async def run(args: dict[str, Any], context: StepContext) -> Any:
        global _running
        _running += 1
        try:
            pool = await _database()
            await pool.execute(
                "INSERT INTO test_executions"
                " (step_id, step_type, pid, attempt, retry_count, running)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                context.step_id,
                context.step_type,
                os.getpid(),
                context.attempt,
                context.retry_count,
                _running,
            )
            return await handler(args, context)
        finally:
            _running -= 1

    return run


@recorded
async def record(args: dict[str, Any], context: StepContext) -> None:
    """Do nothing but be recorded."""


@recorded
async def gated(args: dict[str, Any], context: StepContext) -> dict[str, str]:
    """Run until the test opens the gate named `args.gate`."""
    pool = await _database()
    # Polled: the gate is a row the test process inserts, no event this process could await.
    while not await pool.fetchval(  # noqa: ASYNC110
        "SELECT EXISTS (SELECT 1 FROM test_gates WHERE name = $1)", args["gate"]
    ):
        await asyncio.sleep(_GATE_POLL_S)
    return {"gate": args["gate"]}


@recorded
async def always_fail(args: dict[str, Any], context: StepContext) -> None:
    """Fail every execution, naming the retry it was."""
    raise ValueError(f"always fails (retry_count={context.retry_count})")


@recorded
async def too_slow(args: dict[str, Any], context: StepContext) -> None:
    """Outlast the type's timeout."""
    await asyncio.sleep(60)


@recorded
async def raise_timeout_error(args: dict[str, Any], context: StepContext) -> None:
    """Fail with the handler's own TimeoutError (no per-type timeout is set)."""
    raise TimeoutError("upstream did not answer")


# Text PostgreSQL's jsonb refuses, as a handler might produce it (e.g. from binary data).
UNSTORABLE_VALUES: dict[str, Any] = {
    "nan": float("nan"),
    "nul": "nul\x00byte",
    "surrogate": "undecodable \udcff byte",
}


async def return_unstorable(args: dict[str, Any], context: StepContext) -> dict[str, Any]:
    """Return a value the database cannot store, chosen by `args.kind`."""
    return {"value": UNSTORABLE_VALUES[args["kind"]]}


async def raise_unstorable(args: dict[str, Any], context: StepContext) -> None:
    """Fail with a message the database cannot store as it is."""
    raise ValueError(UNSTORABLE_VALUES["nul"])


def fail_then_succeed(args: dict[str, Any], context: StepContext) -> dict[str, Any]:
    """A blocking handler (so it runs in a thread) failing its first `args.failures` runs."""
    time.sleep(0.01)
    if context.retry_count < args["failures"]:
        raise RuntimeError(f"failure {context.retry_count + 1} of {args['failures']}")
    return {
        "attempt": context.attempt,
        "retry_count": context.retry_count,
        "thread": threading.current_thread().name,
    }


def register(registry: HandlerRegistry) -> None:
    """Add the test step types."""
    registry.add("record", record)
    registry.add("gated", gated)
    registry.add("always_fail", always_fail)
    registry.add("too_slow", too_slow, timeout=TOO_SLOW_TIMEOUT_S)
    registry.add("raise_timeout_error", raise_timeout_error)
    registry.add("fail_then_succeed", fail_then_succeed)
    registry.add("return_unstorable", return_unstorable)
    registry.add("raise_unstorable", raise_unstorable)
