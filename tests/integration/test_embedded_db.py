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
    EmbeddedPostgresInUseError,
    Release,
    default_data_dir,
    embedded_status,
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


def _attach_in_another_process(data_dir: Path, release: Release) -> int:
    """A second 'pod': attaches, queries, releases its handle and exits; returns the pid seen."""
    code = (
        "import asyncio, asyncpg, sys\n"
        "from pathlib import Path\n"
        "from fleetq_server.embedded_db import Release, start_embedded_postgres\n"
        "pg = start_embedded_postgres(Path(sys.argv[1]), release=Release(sys.argv[2]))\n"
        "async def main():\n"
        "    conn = await asyncpg.connect(pg.url)\n"
        "    await conn.close()\n"
        "asyncio.run(main())\n"
        "pg.stop()\n"
        "print(pg.pid)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(data_dir), release.value],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


def test_with_keep_pods_share_one_server_and_leaving_never_stops_it(data_dir: Path) -> None:
    first = start_embedded_postgres(data_dir, release=Release.KEEP)
    assert first.url.startswith("postgresql://postgres@/postgres?host=")
    assert asyncio.run(_select_one(first.url)) == 1

    # The same server, and the other process exited without stopping it.
    assert _attach_in_another_process(data_dir, Release.KEEP) == first.pid
    assert asyncio.run(_select_one(first.url)) == 1

    first.stop()
    first.stop()  # idempotent
    assert asyncio.run(_select_one(first.url)) == 1  # still up for the next pod

    again = start_embedded_postgres(data_dir, release=Release.KEEP)  # warm: attaches
    assert again.pid == first.pid
    again.stop()
    assert stop_embedded_postgres(data_dir) is True
    assert stop_embedded_postgres(data_dir) is False


def test_the_last_handle_to_leave_stops_the_server_the_others_do_not(data_dir: Path) -> None:
    first = start_embedded_postgres(data_dir)
    # Another process attaches and leaves while `first` is attached: the server stays.
    assert _attach_in_another_process(data_dir, Release.STOP_WHEN_UNUSED) == first.pid
    status = embedded_status(data_dir)
    assert status is not None and status.clients == {first.application_name: 1}

    first.stop()
    assert embedded_status(data_dir) is None
    with pytest.raises(OSError):
        asyncio.run(_select_one(first.url))


def test_a_leaving_handle_keeps_the_server_for_a_client_it_cannot_see(data_dir: Path) -> None:
    pg = start_embedded_postgres(data_dir)
    other = start_embedded_postgres(data_dir, release=Release.KEEP)  # holds no session itself

    async def leave_while_connected() -> None:
        connection = await asyncpg.connect(other.url)
        try:
            await asyncio.to_thread(pg.stop)
            assert await connection.fetchval("SELECT 1") == 1
        finally:
            await connection.close()

    asyncio.run(leave_while_connected())
    status = embedded_status(data_dir)
    assert status is not None and status.clients == {}
    assert stop_embedded_postgres(data_dir, only_if_unused=True) is True


def test_stop_only_if_unused_refuses_while_a_client_is_connected(data_dir: Path) -> None:
    pg = start_embedded_postgres(data_dir)
    with pytest.raises(EmbeddedPostgresInUseError, match=pg.application_name):
        stop_embedded_postgres(data_dir, only_if_unused=True)
    assert embedded_status(data_dir) is not None
    assert stop_embedded_postgres(data_dir) is True  # forced
    assert embedded_status(data_dir) is None
    pg.stop()  # the server is gone already: releasing still works


def test_private_server_stops_with_its_handle(data_dir: Path) -> None:
    pg = start_embedded_postgres(data_dir, release=Release.STOP)
    url = pg.url
    pg.stop()
    with pytest.raises(OSError):
        asyncio.run(_select_one(url))
    restarted = start_embedded_postgres(data_dir, release=Release.STOP)  # warm start, new server
    assert asyncio.run(_select_one(restarted.url_for("template1"))) == 1
    restarted.stop()


def test_stale_postmaster_pid_of_another_program_is_ignored(data_dir: Path) -> None:
    pg = start_embedded_postgres(data_dir, release=Release.STOP)
    pid_file = data_dir / "postmaster.pid"
    lines = pid_file.read_text().splitlines()
    pg.stop()
    # As after a reboot: postmaster.pid survived, and its pid now belongs to something else.
    impostor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pid_file.write_text("\n".join([str(impostor.pid), *lines[1:]]) + "\n")
        pg = start_embedded_postgres(data_dir, release=Release.STOP)
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
