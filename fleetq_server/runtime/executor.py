"""Runs claimed steps: the handler and its timeout, each ending as an outcome that
`completer.OutcomeCompleter` records."""

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from fleetq_server import errors, metrics
from fleetq_server.config import Settings
from fleetq_server.handlers import HandlerRegistry, PermanentFailure, RetryAfter, StepContext
from fleetq_server.handlers.registry import RegisteredHandler
from fleetq_server.runtime.claims_ahead import ClaimsAhead
from fleetq_server.runtime.completer import OutcomeCompleter, OutcomeFlush
from fleetq_server.runtime.retry_policy import RetryPolicy
from fleetq_server.runtime.state import PodState
from fleetq_server.store.ports import OutcomePort, TracePort
from fleetq_server.store.records import ClaimedStep, StepOutcome
from fleetq_server.store.storable import storable_json, storable_text

if TYPE_CHECKING:
    from fleetq_server.telemetry.tracing import Tracing

log = logging.getLogger(__name__)


class _CancelledUnstarted(Exception):
    """A cancel request reached a step claimed ahead, before a slot freed for it."""


class _TypeTimeoutExpired(Exception):
    """The step type's timeout cut the handler short."""


class ExecutorStore(OutcomePort, TracePort, Protocol):
    """What the executor writes (outcomes, give-backs) and, with tracing on, reads
    (traceparents)."""

    async def step_release(self, steps: list[ClaimedStep], pod_id: str) -> list[str]:
        """Give claimed steps back to pending without spending a retry; returns the ids
        of those released."""


@dataclass
class RunningStep:
    """A step executing on this pod, with the pod id its claim was made under."""

    step: ClaimedStep
    claim_pod_id: str
    task: asyncio.Task[None]
    # Set once the handler starts: what a cancel request reaches.
    context: StepContext | None = None
    # Whether a cancel request cancelled the task (an async handler's).
    cancel_sent: bool = False
    # A step claimed ahead of a free slot: resolved when one frees for it. None: it had one.
    gate: "asyncio.Future[None] | None" = None

    @property
    def waiting(self) -> bool:
        """Claimed ahead, its handler not started yet."""
        return self.gate is not None and not self.gate.done()


# The outcome of an execution stopped by CancelStep (the store ends the step cancelled).
CANCELLED_ERROR = {"type": "Cancelled", "message": "the step was cancelled by request"}


class StepExecutor:
    """Starts handlers for claimed steps and records their outcomes."""

    def __init__(
        self,
        store: ExecutorStore,
        registry: HandlerRegistry,
        state: PodState,
        retry_policy: RetryPolicy,
        on_slot_free: Callable[[], None],
        tracing: "Tracing | None" = None,
        prefetch: bool = Settings.prefetch_claims,
        finish: OutcomeFlush | None = None,
        on_requeued: Callable[[], None] | None = None,
    ) -> None:
        """`prefetch`: claims may take steps ahead of free slots (prefetch_room). `finish`
        writes outcomes and claims for the slots they free (`ClaimLoop.finish_and_claim`),
        so a handler's end that leads to an outcome write does not call `on_slot_free`.
        `on_requeued`: a step of ours went back to pending (its backoff), so the claimer
        must learn when it falls due (default: `on_slot_free`)."""
        self._registry = registry
        # OpenTelemetry: a span per attempt, linked to the submit's trace; None: off.
        self._tracing = tracing
        self._traces = store
        self._state = state
        self._retry_policy = retry_policy
        self._completer = OutcomeCompleter(store, retry_policy, finish)
        self._on_slot_free = on_slot_free
        self._claims_with_outcomes = finish is not None
        self._on_requeued = on_requeued or on_slot_free
        self._running: dict[str, RunningStep] = {}
        # Steps whose handler runs now (what capacity counts): monotonic time of its slot.
        self._in_handler: dict[str, float] = {}
        self._ahead = ClaimsAhead(prefetch, state.max_capacity)
        # Blocking handlers get a thread each, up to capacity: the default executor is
        # sized by CPU count and would queue them behind each other.
        self._threads = ThreadPoolExecutor(
            max_workers=state.max_capacity, thread_name_prefix="fleetq-step"
        )

    @property
    def running(self) -> list[RunningStep]:
        """Steps held here: waiting for a slot, executing, or having their outcome written."""
        return list(self._running.values())

    @property
    def prefetch_room(self) -> int:
        """How many steps a claim may take beyond the free slots, to wait for one
        (`claims_ahead.ClaimsAhead.room`)."""
        return self._ahead.room(self._in_handler)

    def launch(self, step: ClaimedStep) -> bool:
        """Start executing `step` in the background; False, starting nothing, when this
        same claim token (step, pod, attempt) runs here already.

        That happens only after a claim was lost (a claim's commit does not wait for its
        WAL flush: store.claims.UNFLUSHED_CTE): the step went back to its previous attempt,
        and this pod claimed it again under the token its running execution holds. That
        execution's outcome ends the new claim, so a second run would only be fenced out.
        """
        pod_id = self._state.pod_id
        running = self._running.get(step.step_id)
        token = (step.attempt, pod_id)
        if running is not None and (running.step.attempt, running.claim_pod_id) == token:
            log.warning(
                "%s claimed again at attempt %d, which runs here already: its claim was lost",
                step.step_id,
                step.attempt,
            )
            return False
        gate: asyncio.Future[None] | None = None
        if len(self._in_handler) < self._state.max_capacity:
            self._in_handler[step.step_id] = time.monotonic()
        else:  # claimed ahead (prefetch_room): it starts when a slot frees
            gate = self._ahead.join(step.step_id)
        task = asyncio.create_task(self._execute(step, pod_id, gate), name=step.step_id)
        self._running[step.step_id] = RunningStep(step, pod_id, task, gate=gate)
        self._state.current_capacity = len(self._in_handler)
        task.add_done_callback(functools.partial(self._finished, step.step_id))
        return True

    def _start_waiting(self) -> None:
        """Give free slots to the steps claimed ahead, in claim order; one whose wait was
        cancelled (by a cancel request, or the pod stopping it) is passed over."""
        while len(self._in_handler) < self._state.max_capacity:
            step_id = self._ahead.next_in_line()
            if step_id is None:
                return
            self._in_handler[step_id] = time.monotonic()

    def _is_current(self, step_id: str, task: "asyncio.Task[None] | None") -> bool:
        """Whether `task` is the execution this executor tracks for `step_id`. An earlier
        attempt of a step given back and claimed here again may still be finishing (its
        outcome fenced out): its end must not untrack the attempt that replaced it."""
        running = self._running.get(step_id)
        return running is None or running.task is task

    def _handler_done(
        self, step_id: str, task: "asyncio.Task[None] | None", *, wake: bool = True
    ) -> None:
        """A handler returned: its slot is free even while the outcome is being written.
        With `wake` the claim loop is told (an outcome write that claims needs not)."""
        if step_id in self._in_handler and self._is_current(step_id, task):
            del self._in_handler[step_id]
            self._start_waiting()
            self._state.current_capacity = len(self._in_handler)
            if wake:
                self._on_slot_free()

    def request_cancel(self, step_id: str) -> bool:
        """Ask a running step to stop (its cancel was requested): its context reports
        `cancelled`, and an async handler is cancelled; True when the step runs here."""
        running = self._running.get(step_id)
        if running is not None and running.waiting and running.gate is not None:
            running.gate.set_exception(_CancelledUnstarted())  # it ends cancelled, unrun
            return True
        if running is None or running.context is None or running.context.cancelled:
            return False
        running.context.cancel_request.made = True
        handler = self._registry.get(running.step.type)
        # Only while its handler runs: a cancel must never cut short an outcome's write.
        if handler is not None and handler.is_async and step_id in self._in_handler:
            running.cancel_sent = True
            running.task.cancel()
        return True

    def _finished(self, step_id: str, task: asyncio.Task[None]) -> None:
        self._handler_done(step_id, task)  # for a task cancelled before its handler started
        if self._is_current(step_id, task):
            self._running.pop(step_id, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("executor for %s crashed", step_id, exc_info=task.exception())

    async def wait_all(self, grace: float) -> None:
        """Wait up to `grace` seconds for every running step to finish."""
        tasks = [running.task for running in self._running.values()]
        if tasks:
            await asyncio.wait(tasks, timeout=grace)

    async def cancel_all(self) -> list[RunningStep]:
        """Stop every running step without writing its outcome; returns what was stopped.

        Thread-run handlers cannot be interrupted; their result is simply never written.
        """
        return await self._stop(self.running)

    async def cancel_waiting(self) -> list[RunningStep]:
        """Stop the steps claimed ahead that wait for a slot (a draining pod gives them
        back instead of starting them); returns what was stopped."""
        return await self._stop([running for running in self.running if running.waiting])

    @staticmethod
    async def _stop(steps: Iterable[RunningStep]) -> list[RunningStep]:
        stopped = list(steps)
        for running in stopped:
            running.task.cancel()
        for running in stopped:
            with contextlib.suppress(asyncio.CancelledError):
                await running.task
        return stopped

    def close(self) -> None:
        """Release the handler threads (without waiting for abandoned ones)."""
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def _execute(
        self, step: ClaimedStep, claim_pod_id: str, gate: "asyncio.Future[None] | None"
    ) -> None:
        step_log = logging.LoggerAdapter(
            log, {"pod_id": claim_pod_id, "step_id": step.step_id, "step_type": step.type}
        )
        step_log.debug("claimed; running attempt %d", step.attempt)
        outcome_follows = False
        try:
            if gate is not None and not await self._wait_for_slot(step, claim_pod_id, gate):
                return  # given back: no handler ran, no outcome to write
            if self._tracing is None:
                outcome = await self._run_handler(step, claim_pod_id, step_log)
            else:
                outcome = await self._run_traced(step, claim_pod_id, step_log, self._tracing)
            outcome_follows = True
        except _CancelledUnstarted:
            step_log.info("step cancelled by request before it started")
            outcome = StepOutcome(step, claim_pod_id, error=CANCELLED_ERROR)
            outcome_follows = True
        finally:
            # An outcome write that claims fills the freed slot itself (`finish`).
            claims = outcome_follows and self._claims_with_outcomes
            self._handler_done(step.step_id, asyncio.current_task(), wake=not claims)
        if await self._completer.complete(outcome, step_log) == "pending":
            # Back in the queue after its backoff: the claimer's next claim learns when it
            # falls due (its claim at the freed slot may have run before this write).
            self._on_requeued()

    async def _wait_for_slot(
        self, step: ClaimedStep, claim_pod_id: str, gate: "asyncio.Future[None]"
    ) -> bool:
        """Wait for a slot for a step claimed ahead; False when it waited too long and was
        given back to pending (no retry spent: its handler never started), for any pod.
        Should the database refuse the give-back, it waits for a slot after all."""
        while not await self._ahead.wait(gate):
            try:
                released = await self._traces.step_release([step], claim_pod_id)
            except errors.DatabaseUnavailableError:
                gate = self._ahead.join(step.step_id)
                running = self._running.get(step.step_id)
                if running is not None:
                    running.gate = gate  # what a cancel request reaches
                await gate
                return True
            if released:
                metrics.child(metrics.STEPS_RELEASED, step.type).inc()
                log.info("%s given back: it waited for a slot behind long handlers", step.step_id)
            return False
        return True

    async def _run_traced(
        self,
        step: ClaimedStep,
        claim_pod_id: str,
        step_log: logging.LoggerAdapter[logging.Logger],
        tracing: "Tracing",
    ) -> StepOutcome:
        """`_run_handler` inside the attempt's span, linked to the submit's trace."""
        try:
            traceparent = await self._traces.step_traceparent(step.step_id)
        except errors.FleetQError as exc:  # the step runs all the same, unlinked
            step_log.warning("cannot read the submit's traceparent: %s", exc)
            traceparent = None
        with tracing.attempt_span(
            step_id=step.step_id,
            step_type=step.type,
            attempt=step.attempt,
            retry_count=step.retry_count,
            pod_id=claim_pod_id,
            traceparent=traceparent,
        ) as span:
            outcome = await self._run_handler(step, claim_pod_id, step_log)
            tracing.end_attempt(span, outcome.error)
        return outcome

    async def _run_handler(
        self,
        step: ClaimedStep,
        claim_pod_id: str,
        step_log: logging.LoggerAdapter[logging.Logger],
    ) -> StepOutcome:
        """Run the step's handler; every way it can end becomes an outcome to record."""
        handler = self._registry.get(step.type)
        if handler is None:  # claimed only our own types, so this is a programming error
            error = {"type": "UnknownStepType", "message": f"no handler for {step.type!r}"}
            return self._retry_policy.failure(step, claim_pod_id, error)
        context = StepContext(
            step_id=step.step_id,
            step_type=step.type,
            idempotency_key=step.idempotency_key,
            attempt=step.attempt,
            retry_count=step.retry_count,
            max_retries=step.max_retries,
            metadata=step.metadata,
            logger=step_log,
        )
        started = time.monotonic()
        running = self._running.get(step.step_id)
        if running is not None:
            running.context = context
        try:
            result = await self._call(handler, step.args, context)
            # A result that cannot be stored is the handler's failure. Left to the store, its
            # write would be refused for ever, along with the outcomes batched with it.
            result_json = storable_json(result)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            # Only request_cancel's cancellation is a cancel request; any other (or one more)
            # is the pod itself stopping the step (shutdown, fenced): that propagates.
            sent = running is not None and running.cancel_sent
            if not sent or task is None or task.uncancel() > 0:
                raise
            step_log.info("step cancelled by request (attempt %d)", step.attempt)
            outcome = StepOutcome(step, claim_pod_id, error=CANCELLED_ERROR)
        except _TypeTimeoutExpired:
            error = {
                "type": "TimeoutError",
                "message": f"step exceeded its {handler.timeout_s:g}s timeout",
            }
            step_log.warning("step timed out (attempt %d)", step.attempt)
            outcome = self._retry_policy.failure(step, claim_pod_id, error)
        except Exception as exc:
            message = storable_text(str(exc) or repr(exc))
            error = {"type": type(exc).__name__, "message": message}
            step_log.warning("step failed (attempt %d): %s", step.attempt, error["message"])
            outcome = self._retry_policy.failure(
                step,
                claim_pod_id,
                error,
                retryable=not isinstance(exc, PermanentFailure),
                at_least_s=exc.seconds if isinstance(exc, RetryAfter) else 0.0,
            )
        else:
            outcome = StepOutcome(step, claim_pod_id, result_json=result_json)
        ran = time.monotonic() - started
        metrics.child(metrics.STEP_RUN_SECONDS, step.type).observe(ran)
        self._ahead.ran(ran)
        return outcome

    async def _call(
        self, handler: RegisteredHandler, args: dict[str, Any], context: StepContext
    ) -> Any:
        if handler.is_async:
            call = handler.function(args, context)
        else:
            loop = asyncio.get_running_loop()
            call = loop.run_in_executor(
                self._threads, functools.partial(handler.function, args, context)
            )
        if handler.timeout_s is None:
            return await call
        # asyncio.timeout rather than wait_for: only its expired() tells our deadline apart
        # from a TimeoutError the handler raised itself (an ordinary failure).
        try:
            async with asyncio.timeout(handler.timeout_s) as deadline:
                return await call
        except TimeoutError:
            if deadline.expired():
                raise _TypeTimeoutExpired from None
            raise
