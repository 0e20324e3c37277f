"""The benchmark's own PostgreSQL (a fresh database per scenario run) and its pod processes.

PostgreSQL is an embedded server in a private temporary directory, stopped at the end,
unless FLEETQ_BENCH_DATABASE_URL names one (it needs the right to create databases). Pods
are real `python -m fleetq_server serve` processes on free loopback ports, started and
stopped through the test suite's `ServerProcess`, so both drive pods the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import secrets
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import psutil

from fleetq_server.embedded_db import EmbeddedPostgres, Release, start_embedded_postgres
from tests.support.databases import create_database, drop_database, with_database
from tests.support.server_process import REPO_ROOT, ServerProcess

BENCH_DATABASE_URL_ENV = "FLEETQ_BENCH_DATABASE_URL"
# Server settings worth printing next to the figures: they decide what "fast" can mean.
_REPORTED_SETTINGS = (
    "synchronous_commit",
    "fsync",
    "wal_level",
    "shared_buffers",
    "max_connections",
)


class PostgresServer:
    """The PostgreSQL server under the benchmark, and fresh databases on it."""

    def __init__(self, admin_url: str, embedded: EmbeddedPostgres | None = None) -> None:
        self.admin_url = admin_url
        self._embedded = embedded

    @classmethod
    def start(cls, workdir: Path) -> PostgresServer:
        """FLEETQ_BENCH_DATABASE_URL's server, else a private embedded one in `workdir`."""
        url = os.environ.get(BENCH_DATABASE_URL_ENV)
        if url:
            return cls(url)
        embedded = start_embedded_postgres(workdir / "pgdata", release=Release.STOP)
        return cls(embedded.url, embedded)

    @property
    def kind(self) -> str:
        """ "embedded" or "external", for the report."""
        return "embedded" if self._embedded is not None else "external"

    def stop(self) -> None:
        """Stop the embedded server (a given server is left alone)."""
        if self._embedded is not None:
            self._embedded.stop()

    @contextlib.asynccontextmanager
    async def fresh_database(self) -> AsyncIterator[str]:
        """A new, empty database for one scenario run; dropped (WITH FORCE) afterwards."""
        name = f"fleetq_bench_{secrets.token_hex(4)}"
        await create_database(self.admin_url, name)
        try:
            yield with_database(self.admin_url, name)
        finally:
            await drop_database(self.admin_url, name)

    async def describe(self) -> dict[str, str]:
        """Version and the settings that bound throughput."""
        connection = await asyncpg.connect(self.admin_url)
        try:
            described = {"version": await connection.fetchval("SHOW server_version")}
            for setting in _REPORTED_SETTINGS:
                described[setting] = await connection.fetchval(f"SHOW {setting}")
        finally:
            await connection.close()
        described["server"] = self.kind
        return described

    async def postmaster(self) -> psutil.Process | None:
        """The server's main process when it runs on this machine (for CPU accounting)."""
        connection = await asyncpg.connect(self.admin_url)
        try:
            backend_pid = await connection.fetchval("SELECT pg_backend_pid()")
            # Ask while our backend exists: its parent is the postmaster.
            with contextlib.suppress(psutil.Error):
                backend = psutil.Process(backend_pid)
                parent = backend.parent()
                if "postgres" in backend.name() and parent is not None:
                    return parent
        finally:
            await connection.close()
        return None


@contextlib.asynccontextmanager
async def bench_session(prefix: str) -> AsyncIterator[tuple[PostgresServer, Path]]:
    """The benchmark's PostgreSQL server and a directory for pod logs, both removed at the
    end, except the logs of a run that failed (named on stderr)."""
    workdir = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    log_dir = Path(tempfile.mkdtemp(prefix=f"{prefix}-logs-"))
    postgres = await asyncio.to_thread(PostgresServer.start, workdir)
    try:
        yield postgres, log_dir
    except BaseException:
        print(f"benchmark failed; pod logs kept in {log_dir}", file=sys.stderr, flush=True)
        raise
    else:
        shutil.rmtree(log_dir, ignore_errors=True)
    finally:
        await asyncio.to_thread(postgres.stop)
        shutil.rmtree(workdir, ignore_errors=True)


def libpq_environment(database_url: str) -> dict[str, str]:
    """PG* variables that point libpq tools (pgbench) at `database_url`, sockets too."""
    parts = urlsplit(database_url)
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    values = {
        "PGHOST": query.get("host") or parts.hostname,
        "PGPORT": query.get("port") or (str(parts.port) if parts.port else None),
        "PGUSER": query.get("user") or parts.username,
        "PGPASSWORD": query.get("password") or parts.password,
        "PGDATABASE": parts.path.lstrip("/") or None,
    }
    return {key: value for key, value in values.items() if value}


def find_pgbench() -> str | None:
    """pgbench on PATH, else the newest under /usr/lib/postgresql/*/bin (Debian's layout)."""
    on_path = shutil.which("pgbench")
    if on_path:
        return on_path
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pgbench"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
    )
    return candidates[-1] if candidates else None


class PodFleet:
    """Pods started for one scenario run; `close()` (or leaving the `with`) stops them all."""

    def __init__(self, database_url: str, log_dir: Path) -> None:
        self._database_url = database_url
        self._log_dir = log_dir
        self._pods: list[ServerProcess] = []

    @property
    def database_url(self) -> str:
        """The URL the pods get unless their env gives another."""
        return self._database_url

    def start(self, count: int, env: Mapping[str, str]) -> list[ServerProcess]:
        """Start `count` pods at once and wait until each answers /health with 200."""
        pods = []
        for _ in range(count):
            name = f"pod{len(self._pods)}"
            pod = ServerProcess(
                self._database_url,
                env={"PYTHONPATH": str(REPO_ROOT), **env},
                log_path=self._log_dir / f"{name}.log",
                name=name,
                # The recovery scenario runs `sleep` steps and the soak `hello_world`.
                demo_handlers=True,
            )
            self._pods.append(pod)
            pods.append(pod.start())
        for pod in pods:
            pod.wait_until_healthy(timeout=60)
        return pods

    def stop(self, pod: ServerProcess) -> None:
        """Stop one pod now (SIGTERM, then SIGKILL)."""
        with contextlib.suppress(ProcessLookupError):
            pod.send_signal(signal.SIGCONT)  # a stopped process would not see SIGTERM
        pod.stop(timeout=15)

    def close(self) -> None:
        """Stop every pod this fleet started, even frozen or killed ones."""
        for pod in reversed(self._pods):
            self.stop(pod)

    def log_tails(self) -> str:
        """Every pod's log tail, for a failed run."""
        return "\n".join(pod.log_tail(40) for pod in self._pods)

    def __enter__(self) -> PodFleet:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is not None:
            print(self.log_tails(), file=sys.stderr)
        self.close()


@contextlib.contextmanager
def frozen(pods: list[ServerProcess]) -> Iterator[None]:
    """Freeze pods (SIGSTOP) and thaw them (SIGCONT) together on leaving.

    Lets every pod of a drain start claiming at the same instant, long after each was
    started and healthy: pods started one after another would otherwise drain alone for a
    while. A freeze of a few seconds stays far below the dead-pod threshold.
    """
    for pod in pods:
        pod.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        for pod in pods:
            pod.send_signal(signal.SIGCONT)
