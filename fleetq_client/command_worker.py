"""`fleetq work`: a worker that runs a command per step. The step's args (JSON) go on the
command's stdin; its stdout, parsed as JSON, becomes the result (empty stdout: null). A
non-zero exit fails the step with the tail of stderr as the message. The command runs in
its own process group, so a step given back at shutdown (or whose lease was lost) stops
the command and whatever it started."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
from typing import Any

from fleetq_client.client import FleetQClient
from fleetq_client.results import LeasedStep
from fleetq_client.worker import Worker

# Characters of stderr kept as a failed step's message.
STDERR_TAIL_CHARS = 2000


class CommandFailed(Exception):
    """The command exited non-zero, or printed something other than JSON."""


class CommandWorker(Worker):
    """Runs `command` (a shell command line) for every step of `step_types`."""

    def __init__(
        self, client: FleetQClient, step_types: list[str], command: str, **options: Any
    ) -> None:
        super().__init__(client, dict.fromkeys(step_types, self._run_command), **options)
        self._command = command
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._processes_lock = threading.Lock()

    def _run_command(self, step: LeasedStep) -> Any:
        env = {
            **os.environ,
            "FLEETQ_STEP_ID": step.step_id,
            "FLEETQ_STEP_TYPE": step.type,
            "FLEETQ_ATTEMPT": str(step.attempt),
            "FLEETQ_IDEMPOTENCY_KEY": step.idempotency_key,
        }
        process = subprocess.Popen(
            ["/bin/sh", "-c", self._command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        with self._processes_lock:
            self._processes[step.step_id] = process
        try:
            stdout, stderr = process.communicate(json.dumps(step.args).encode())
        finally:
            with self._processes_lock:
                self._processes.pop(step.step_id, None)
        if process.returncode != 0:
            tail = stderr.decode(errors="replace")[-STDERR_TAIL_CHARS:].strip()
            raise CommandFailed(f"exit status {process.returncode}: {tail}")
        text = stdout.decode(errors="replace").strip()
        if not text:
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            raise CommandFailed(f"stdout is not JSON: {text[:200]!r}") from None

    def _abandon(self, step: LeasedStep) -> None:
        """Stop the step's command (its whole process group) as well."""
        super()._abandon(step)
        with self._processes_lock:
            process = self._processes.get(step.step_id)
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
