"""Zero-config: with no FLEETQ_DATABASE_URL, pods start (and share) an embedded PostgreSQL."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fleetq_server.embedded_db import stop_embedded_postgres
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
