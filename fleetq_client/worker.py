"""A worker outside the pods: Python functions run for steps leased from FLEET-Q.

    with FleetQClient("localhost:50051") as client:
        Worker(client, {"resize": lambda step: resize(**step.args)}).run()

Each step runs in a thread of its own (up to `concurrency` at once); its lease is extended
while it runs, its return value completes it and an exception fails it (retried by the
server while the step has retries left). `stop()` (SIGTERM/SIGINT under `run()`) stops
claiming, gives running steps `grace` seconds to finish, then releases the rest back to
pending without spending a retry. A lease lost meanwhile (the worker paused past it)
drops that step's outcome: another worker has it by then.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fleetq_client.client import FleetQClient
from fleetq_client.errors import Conflict, FleetQClientError, NotFound
from fleetq_client.results import LeasedStep

log = logging.getLogger(__name__)

Handler = Callable[[LeasedStep], Any]


def default_worker_id() -> str:
    """hostname-pid: unique per process on a machine, readable in /admin/queue."""
    return f"{socket.gethostname()}-{os.getpid()}"


class Worker:
    """Claims steps of the handlers' types and runs them (see the module docstring)."""

    def __init__(
        self,
        client: FleetQClient,
        handlers: Mapping[str, Handler],
        *,
        worker_id: str | None = None,
        concurrency: int = 4,
        lease_seconds: float = 30.0,
        wait_seconds: float = 10.0,
        grace: float = 30.0,
    ) -> None:
        if not handlers:
            raise ValueError("a worker needs at least one step type")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._client = client
        self._handlers = dict(handlers)
        self.worker_id = worker_id or default_worker_id()
        self._concurrency = concurrency
        self._lease_seconds = lease_seconds
        self._wait_seconds = wait_seconds
        self._grace = grace
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="fleetq-step")
        self._running: dict[str, LeasedStep] = {}  # by step id
        self._lock = threading.Condition()
        self._stopping = threading.Event()
        # Set once drained: leases are kept until then, through the grace period too.
        self._drained = threading.Event()
        self.completed = 0

    # -- the loop ----------------------------------------------------------------------

    def run(self, *, handle_signals: bool = True) -> None:
        """Claim and run steps until `stop()`; then drain (see the module docstring)."""
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stop())
        keeper = threading.Thread(target=self._keep_leases, name="fleetq-leases", daemon=True)
        keeper.start()
        try:
            while not self._stopping.is_set():
                free = self._wait_for_free_slots()
                if free == 0:
                    continue
                try:
                    steps = self._client.claim_steps(
                        self.worker_id,
                        list(self._handlers),
                        max_steps=free,
                        wait_seconds=self._wait_seconds,
                        lease_seconds=self._lease_seconds,
                    )
                except FleetQClientError as error:
                    log.warning("claim failed: %s; retrying", error.message)
                    self._stopping.wait(1.0)
                    continue
                for step in steps:
                    self._start(step)
        finally:
            self._drain()

    def stop(self) -> None:
        """Stop claiming and drain (safe from a signal handler or another thread)."""
        self._stopping.set()
        with self._lock:
            self._lock.notify_all()

    def _wait_for_free_slots(self) -> int:
        with self._lock:
            self._lock.wait_for(
                lambda: len(self._running) < self._concurrency or self._stopping.is_set()
            )
            return 0 if self._stopping.is_set() else self._concurrency - len(self._running)

    def _start(self, step: LeasedStep) -> None:
        if self._stopping.is_set():  # claimed as the stop came: give it back at once
            self._give_back(step)
            return
        with self._lock:
            self._running[step.step_id] = step
        self._pool.submit(self._run_step, step)

    def _run_step(self, step: LeasedStep) -> None:
        try:
            try:
                result = self._handlers[step.type](step)
            except Exception as error:
                log.info("step %s failed: %s", step.step_id, error)
                kind, message = type(error).__name__, str(error)
                self._finish(
                    step,
                    lambda: self._client.fail_step(step.step_id, step.attempt, kind, message),
                )
            else:
                self._finish(
                    step, lambda: self._client.complete_step(step.step_id, step.attempt, result)
                )
        finally:
            with self._lock:
                self._running.pop(step.step_id, None)
                self._lock.notify_all()

    def _finish(self, step: LeasedStep, write: Callable[[], Any]) -> None:
        """Write an outcome unless the step was given back meanwhile; a lost lease is
        logged, not raised: the step is another worker's now."""
        with self._lock:
            if step.step_id not in self._running:
                return
        try:
            write()
            self.completed += 1
        except (Conflict, NotFound) as error:
            log.warning("outcome of step %s dropped: %s", step.step_id, error.message)
        except FleetQClientError as error:
            log.error("outcome of step %s not written: %s", step.step_id, error.message)

    # -- leases and shutdown ----------------------------------------------------------

    def _keep_leases(self) -> None:
        """Extend every running step's lease a few times per lease period, until drained."""
        while not self._drained.wait(self._lease_seconds / 3):
            with self._lock:
                running = list(self._running.values())
            for step in running:
                try:
                    lease = self._client.extend_lease(
                        step.step_id, step.attempt, self._lease_seconds
                    )
                    if lease.cancel_requested:  # its outcome will end the step cancelled
                        log.info("step %s: cancel requested", step.step_id)
                except (Conflict, NotFound) as error:
                    log.warning("lease of step %s lost: %s", step.step_id, error.message)
                    self._abandon(step)
                except FleetQClientError as error:
                    log.warning("lease of step %s not extended: %s", step.step_id, error.message)

    def _drain(self) -> None:
        """Give running steps the grace period, then release what still runs."""
        with self._lock:
            self._lock.wait_for(lambda: not self._running, timeout=self._grace)
            left = list(self._running.values())
        self._drained.set()
        for step in left:
            self._abandon(step)
            self._give_back(step)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _abandon(self, step: LeasedStep) -> None:
        """Stop tracking a step whose outcome must not be written (lease lost or given
        back); subclasses also stop its work."""
        with self._lock:
            self._running.pop(step.step_id, None)
            self._lock.notify_all()

    def _give_back(self, step: LeasedStep) -> None:
        try:
            self._client.release_step(step.step_id, step.attempt)
            log.info("released step %s", step.step_id)
        except FleetQClientError as error:
            log.warning("step %s not released: %s", step.step_id, error.message)
