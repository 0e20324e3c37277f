"""The embedded PostgreSQL: start, share between processes, stop, and pgserver's rough edges."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from fleetq_server.embedded_db import (
    EmbeddedPostgresError,
    default_data_dir,
    start_embedded_postgres,
    stop_embedded_postgres,
)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A fresh directory under /tmp (pgserver opens every ancestor to its user: keep it short)."""
    base = Path(tempfile.mkdtemp(prefix="fleetq-edb-"))
    try:
        yield base / "pgdata"
    finally:
        stop_embedded_postgres(base / "pgdata")
        shutil.rmtree(base, ignore_errors=True)


async def _select_one(url: str) -> int:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return int(await conn.fetchval("SELECT 1"))
    finally:
        await conn.close()


def _attach_in_another_process(data_dir: Path) -> int:
    """A second 'pod': attaches, queries, releases its handle and exits; returns the pid seen."""
    code = (
        "import asyncio, asyncpg, sys\n"
        "from pathlib import Path\n"
        "from fleetq_server.embedded_db import start_embedded_postgres\n"
        "pg = start_embedded_postgres(Path(sys.argv[1]))\n"
        "async def main():\n"
        "    conn = await asyncpg.connect(pg.url)\n"
        "    await conn.close()\n"
        "asyncio.run(main())\n"
        "pg.stop()\n"
        "print(pg.pid)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(data_dir)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


def test_pods_share_one_server_and_leaving_never_stops_it(data_dir: Path) -> None:
    first = start_embedded_postgres(data_dir)
    assert first.url.startswith("postgresql://postgres@/postgres?host=")
    assert asyncio.run(_select_one(first.url)) == 1

    assert _attach_in_another_process(data_dir) == first.pid  # same server, and it exited
    assert asyncio.run(_select_one(first.url)) == 1  # ... without stopping it

    first.stop()
    first.stop()  # idempotent
    assert asyncio.run(_select_one(first.url)) == 1  # still up for the next pod

    again = start_embedded_postgres(data_dir)  # warm: attaches to the running server
    assert again.pid == first.pid
    again.stop()
    assert stop_embedded_postgres(data_dir) is True
    assert stop_embedded_postgres(data_dir) is False


def test_private_server_stops_with_its_handle(data_dir: Path) -> None:
    pg = start_embedded_postgres(data_dir, keep_running=False)
    url = pg.url
    pg.stop()
    with pytest.raises(OSError):
        asyncio.run(_select_one(url))
    restarted = start_embedded_postgres(data_dir, keep_running=False)  # warm start, new server
    assert asyncio.run(_select_one(restarted.url_for("template1"))) == 1
    restarted.stop()


def test_stale_postmaster_pid_of_another_program_is_ignored(data_dir: Path) -> None:
    pg = start_embedded_postgres(data_dir, keep_running=False)
    pid_file = data_dir / "postmaster.pid"
    lines = pid_file.read_text().splitlines()
    pg.stop()
    # As after a reboot: postmaster.pid survived, and its pid now belongs to something else.
    impostor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pid_file.write_text("\n".join([str(impostor.pid), *lines[1:]]) + "\n")
        pg = start_embedded_postgres(data_dir, keep_running=False)
        assert pg.pid != impostor.pid
        assert asyncio.run(_select_one(pg.url)) == 1
        pg.stop()
    finally:
        impostor.kill()
        impostor.wait()


def test_data_dir_with_a_space_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(EmbeddedPostgresError, match="must not contain spaces"):
        start_embedded_postgres(tmp_path / "my data")


def test_default_data_dir_is_per_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_data_dir() == tmp_path / "fleetq" / "pgdata"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_data_dir() == Path.home() / ".local" / "share" / "fleetq" / "pgdata"
