"""Zero-config: with no FLEETQ_DATABASE_URL, pods start (and share) an embedded PostgreSQL."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fleetq_server.embedded_db import embedded_status, stop_embedded_postgres
from tests.blackbox.contract import FAST_POD_ENV, submit
from tests.conftest import ServerFactory

# initdb of a fresh data directory takes a few seconds on a busy machine.
FIRST_START_TIMEOUT = 90.0


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A fresh directory under /tmp: the server's socket lives in it (paths are limited to
    108 bytes) and pgserver opens every ancestor to its user. Its server is stopped after."""
    base = Path(tempfile.mkdtemp(prefix="fleetq-bb-"))
    try:
        yield base / "pgdata"
    finally:
        stop_embedded_postgres(base / "pgdata")
        shutil.rmtree(base, ignore_errors=True)


def test_pods_without_a_database_url_share_one_embedded_database(
    data_dir: Path, server_factory: ServerFactory
) -> None:
    # data_dir first: its teardown (stopping PostgreSQL) then runs after the pods stopped.
    env = {**FAST_POD_ENV, "FLEETQ_DATA_DIR": str(data_dir)}
    first = server_factory(database_url=None, env=env, wait=False)
    second = server_factory(database_url=None, env=env, wait=False)  # races the first start
    for pod in (first, second):
        pod.wait_until_healthy(FIRST_START_TIMEOUT)
    assert "FLEETQ_DATABASE_URL" not in first.env and "FLEETQ_DATABASE_URL" not in second.env
    assert (data_dir / "PG_VERSION").exists()

    with httpx.Client(base_url=first.http_url, timeout=10) as client:
        step_id = submit(client, {"type": "blackbox.unhandled", "args": {"n": 5}})

    seen_by_second = httpx.get(f"{second.http_url}/status/{step_id}", timeout=10)
    assert seen_by_second.status_code == 200, seen_by_second.text
    assert seen_by_second.json()["payload"]["args"] == {"n": 5}
    leader = httpx.get(f"{second.http_url}/admin/leader", timeout=10).json()
    assert leader["active_pods"] == 2


def fleetq_db(*args: str) -> subprocess.CompletedProcess[str]:
    """`fleetq db ...` as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "fleetq_server", "db", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_embedded_database_stops_when_the_last_pod_leaves(
    data_dir: Path, server_factory: ServerFactory
) -> None:
    env = {**FAST_POD_ENV, "FLEETQ_DATA_DIR": str(data_dir)}
    first = server_factory(database_url=None, env=env, health_timeout=FIRST_START_TIMEOUT)
    second = server_factory(database_url=None, env=env)

    assert first.stop() == 0
    assert embedded_status(data_dir) is not None  # the second pod still uses it
    assert second.health_status() == 200
    refused = fleetq_db("stop", "--data-dir", str(data_dir))
    assert refused.returncode == 1 and "clients connected" in refused.stderr, refused

    assert second.stop() == 0
    assert embedded_status(data_dir) is None
    gone = fleetq_db("status", "--data-dir", str(data_dir))
    assert gone.returncode == 3 and "none running" in gone.stdout, gone


def test_with_keep_running_the_embedded_database_outlives_its_pods(
    data_dir: Path, server_factory: ServerFactory
) -> None:
    env = {**FAST_POD_ENV, "FLEETQ_DATA_DIR": str(data_dir), "FLEETQ_EMBEDDED_DB_KEEP_RUNNING": "1"}
    pod = server_factory(database_url=None, env=env, health_timeout=FIRST_START_TIMEOUT)
    assert pod.stop() == 0

    status = fleetq_db("status", "--data-dir", str(data_dir), "--json")
    assert status.returncode == 0, status
    report = json.loads(status.stdout)
    assert report["running"] is True and report["clients"] == {}
    assert report["pid"] == embedded_status(data_dir).pid  # type: ignore[union-attr]

    stopped = fleetq_db("stop", "--data-dir", str(data_dir))
    assert stopped.returncode == 0, stopped
    assert embedded_status(data_dir) is None
    assert fleetq_db("stop", "--data-dir", str(data_dir)).returncode == 3
