"""Black-box tests run real pods: ``python -m fleetq_server serve`` in a child process."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx

from tests.support.net import free_port
from tests.support.waiting import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
# Starts retried on new ports when a port we picked was taken before the server bound it.
_PORT_RETRIES = 3


class ServerExited(AssertionError):
    """The server process ended while we waited for it; the message carries its log tail."""


class ServerProcess:
    """One server process on loopback ports, its stdout+stderr captured in ``log_path``.

    ``start()`` spawns it; ``wait_until_healthy()`` polls ``GET /health``; ``stop()`` sends
    SIGTERM, escalates to SIGKILL after a timeout and returns the exit code (negative: killed by
    that signal, as in :mod:`subprocess`). Inherited ``FLEETQ_*`` variables are dropped so a
    developer's shell cannot change a test; pass ``env`` for what the test wants. A
    ``database_url`` of None leaves FLEETQ_DATABASE_URL unset (the zero-config embedded
    database). ``program`` replaces ``python -m <module>`` (e.g. the ``fleetq`` script).
    ``demo_handlers`` (default True: most tests submit ``hello_world`` and ``sleep``) sets
    FLEETQ_DEMO_HANDLERS=true, which production pods leave off; ``env`` may still override it.
    ``cwd`` is where it runs, this checkout by default: ``python -m`` imports the packages
    of its working directory before any on PYTHONPATH, so a pod of another tree runs there.
    """

    def __init__(
        self,
        database_url: str | None,
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        http_port: int | None = None,
        grpc_port: int | None = None,
        extra_args: Sequence[str] = (),
        module: str = "fleetq_server",
        program: Sequence[str] | None = None,
        name: str = "server",
        demo_handlers: bool = True,
        cwd: Path = REPO_ROOT,
    ) -> None:
        self.database_url = database_url
        self.cwd = cwd
        self.log_path = log_path
        self.http_port = http_port if http_port is not None else free_port()
        self.grpc_port = grpc_port if grpc_port is not None else free_port()
        # Ports we picked may be taken by another test session before the server binds
        # them: such a start is retried on new ones (see wait_until_healthy).
        self._port_retries = _PORT_RETRIES if http_port is None and grpc_port is None else 0
        self._command = [*(program or (sys.executable, "-m", module)), "serve"]
        self._extra_args = list(extra_args)
        self.name = name
        base = {k: v for k, v in os.environ.items() if not k.startswith("FLEETQ_")}
        database = {} if database_url is None else {"FLEETQ_DATABASE_URL": database_url}
        demo = {"FLEETQ_DEMO_HANDLERS": "true"} if demo_handlers else {}
        self.env = {**base, "PYTHONUNBUFFERED": "1", **database, **demo, **(env or {})}
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._log_start = 0

    @property
    def argv(self) -> list[str]:
        """The command line, with the current ports."""
        return [
            *self._command,
            *("--http-host", "127.0.0.1", "--http-port", str(self.http_port)),
            *("--grpc-host", "127.0.0.1", "--grpc-port", str(self.grpc_port)),
            *self._extra_args,
        ]

    # -- addresses ------------------------------------------------------------------------------

    @property
    def http_url(self) -> str:
        """Base URL of the REST gateway, e.g. ``http://127.0.0.1:41234``."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        """Target for ``grpc.aio.insecure_channel``."""
        return f"127.0.0.1:{self.grpc_port}"

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> ServerProcess:
        """Spawn the process (in its own session, so terminal signals reach only pytest)."""
        if self._process is not None:
            raise RuntimeError(f"{self.name} was already started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log_path.open("ab")
        self._log_file.write(f"$ {' '.join(self.argv)}\n".encode())
        self._log_file.flush()
        self._log_start = len(self.log_text())  # where this start's output begins
        self._process = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    @property
    def process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise RuntimeError(f"{self.name} was not started")
        return self._process

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        """None while running, else the exit code (negative for a signal)."""
        return self.process.poll()

    def health_status(self, timeout: float = 1.0) -> int | None:
        """HTTP status of ``GET /health``, or None while nothing answers."""
        try:
            return httpx.get(f"{self.http_url}/health", timeout=timeout).status_code
        except httpx.TransportError:
            return None

    def wait_until_healthy(
        self, timeout: float = 30.0, *, interval: float = 0.05, expect_status: int | None = 200
    ) -> ServerProcess:
        """Poll ``GET /health`` until it answers ``expect_status`` (None: any answer at all).

        Fails at once, with the log tail, if the process exits meanwhile.
        """

        def answered() -> bool:
            if self._restarted_on_new_ports():
                return False
            self._raise_if_exited("while waiting for /health")
            status = self.health_status()
            return status is not None and (expect_status is None or status == expect_status)

        try:
            wait_until(answered, timeout=timeout, interval=interval, description="/health")
        except ServerExited:
            raise
        except AssertionError as exc:
            last = self.health_status()
            raise AssertionError(
                f"{self.name}: /health did not answer {expect_status or 'at all'} within "
                f"{timeout:g}s (last status: {last})\n{self.log_tail()}"
            ) from exc
        return self

    def wait_for_exit(self, timeout: float) -> int:
        """Wait for the process to end by itself; returns the exit code."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(
                f"{self.name} still running after {timeout:g}s\n{self.log_tail()}"
            ) from exc

    def send_signal(self, sig: int) -> None:
        """Signal the server process only (e.g. SIGINT, or SIGSTOP to freeze a pod)."""
        if self.returncode is None:
            self.process.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; returns the exit code. Idempotent."""
        if self._process is None:
            return 0
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill_group()
                self._process.wait()
        self._close_log()
        return self._process.returncode

    def kill(self) -> int:
        """SIGKILL at once (a crashed pod); returns the exit code."""
        if self._process is None:
            return 0
        if self._process.poll() is None:
            self._kill_group()
            self._process.wait()
        self._close_log()
        return self._process.returncode

    def _kill_group(self) -> None:
        """SIGKILL the server and any helper in its process group.

        Called only before we reap the server, so its pid (= its group id, as it leads its own
        session) cannot have been reused. The embedded postgres detaches, so it is not hit.
        """
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def _restarted_on_new_ports(self) -> bool:
        """Start again on fresh ports when the server exited because a port we picked was
        taken meanwhile (by another process: `free_port` cannot reserve it)."""
        if self._port_retries == 0 or self.returncode is None:
            return False
        if "address already in use" not in self.log_text()[self._log_start :].lower():
            return False
        self._port_retries -= 1
        self._close_log()
        self._process = None
        self.http_port, self.grpc_port = free_port(), free_port()
        self.start()
        return True

    def _raise_if_exited(self, when: str) -> None:
        code = self.returncode
        if code is not None:
            raise ServerExited(f"{self.name} exited with {code} {when}\n{self.log_tail()}")

    # -- diagnostics ----------------------------------------------------------------------------

    def log_text(self) -> str:
        """Everything the process wrote so far (stdout and stderr, interleaved)."""
        if self._log_file is not None:
            self._log_file.flush()
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 80) -> str:
        """The last ``lines`` lines of the log, headed by its path."""
        tail = "\n".join(self.log_text().splitlines()[-lines:])
        return f"--- {self.name} log ({self.log_path}), last {lines} lines ---\n{tail}"

    def __enter__(self) -> ServerProcess:
        if self._process is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "not started" if self._process is None else f"pid {self._process.pid}"
        return f"ServerProcess({self.name}, http={self.http_port}, grpc={self.grpc_port}, {state})"
