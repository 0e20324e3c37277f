"""ServerProcess and server_factory, exercised on a stand-in with the server's CLI shape."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerFactory
from tests.support.net import free_port
from tests.support.server_process import ServerExited, ServerProcess

FAKE = "tests.support.fake_server"


def _fake(tmp_path: Path, **env: str) -> ServerProcess:
    return ServerProcess(
        "postgresql://postgres@/nowhere", log_path=tmp_path / "fake.log", env=env, module=FAKE
    )


def test_start_wait_and_graceful_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEETQ_ADMIN_TOKEN", "from-the-developer-shell")
    server = _fake(tmp_path, FLEETQ_LOG_LEVEL="DEBUG", FAKE_SERVER_START_DELAY="0.3")
    with server:
        server.wait_until_healthy(timeout=10)
        body = httpx.get(f"{server.http_url}/health").json()
    assert body["env"] == {
        "FLEETQ_DATABASE_URL": "postgresql://postgres@/nowhere",
        "FLEETQ_LOG_LEVEL": "DEBUG",
        "FLEETQ_DEMO_HANDLERS": "true",
    }, "the URL, the demo handlers and extra env are passed; inherited FLEETQ_* variables are not"
    assert server.returncode == 0
    log = server.log_text()
    assert f"--http-port {server.http_port}" in log and "SIGTERM, shutting down" in log


def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    server = _fake(tmp_path, FAKE_SERVER_IGNORE_SIGTERM="1").start()
    server.wait_until_healthy(timeout=10)
    started = time.monotonic()
    assert server.stop(timeout=0.5) == -signal.SIGKILL
    assert time.monotonic() - started < 5
    assert "ignoring SIGTERM" in server.log_text()


def test_early_exit_fails_the_wait_at_once_with_the_log(tmp_path: Path) -> None:
    server = _fake(tmp_path, FAKE_SERVER_EXIT_CODE="3").start()
    started = time.monotonic()
    with pytest.raises(ServerExited, match="exited with 3") as info:
        server.wait_until_healthy(timeout=30)
    assert time.monotonic() - started < 10
    assert "exiting at once as asked" in str(info.value)
    assert server.stop() == 3


def test_a_picked_port_taken_before_the_bind_is_retried_on_new_ports(tmp_path: Path) -> None:
    server = _fake(tmp_path)
    taken = server.http_port
    with socket.socket() as squatter:  # another process got there first
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        with server:
            server.wait_until_healthy(timeout=10)
            assert server.http_port != taken
    assert "Address already in use" in server.log_text()


def test_health_timeout_names_the_server_and_shows_its_log(tmp_path: Path) -> None:
    server = _fake(tmp_path, FAKE_SERVER_START_DELAY="30").start()
    try:
        with pytest.raises(AssertionError, match=r"/health did not answer 200 within 0.3s"):
            server.wait_until_healthy(timeout=0.3)
    finally:
        assert server.kill() == -signal.SIGKILL


def test_server_factory_starts_healthy_pods_on_the_test_database(
    server_factory: ServerFactory, database_url: str
) -> None:
    pods = [server_factory(module=FAKE), server_factory(module=FAKE, env={"FLEETQ_POD_ID": "b"})]
    assert len({p.http_port for p in pods}) == 2
    for pod in pods:
        assert pod.health_status() == 200
        assert httpx.get(f"{pod.http_url}/health").json()["env"]["FLEETQ_DATABASE_URL"] == (
            database_url
        )


def test_free_port_never_hands_out_the_same_port_twice() -> None:
    # Servers started without waiting have not bound their ports yet: a repeat would be
    # a collision (500 random picks of 12,000 ports repeat almost surely without the memo).
    ports = [free_port() for _ in range(500)]
    assert len(set(ports)) == len(ports)


def test_a_server_runs_the_code_of_its_working_directory(tmp_path: Path) -> None:
    # How bulk_ab runs a pod of another tree: `python -m` imports the package of its
    # working directory, whatever PYTHONPATH says.
    other = tmp_path / "other-tree"
    package = other / "tests" / "support"
    package.mkdir(parents=True)
    for init in (other / "tests" / "__init__.py", package / "__init__.py"):
        init.write_text("")
    (package / "fake_server.py").write_text("print('the other tree'); raise SystemExit(7)\n")
    server = ServerProcess(
        "postgresql://postgres@/nowhere", log_path=tmp_path / "other.log", module=FAKE, cwd=other
    ).start()
    with pytest.raises(ServerExited, match="exited with 7"):
        server.wait_until_healthy(timeout=30)
    assert "the other tree" in server.log_text()
    assert server.stop() == 7
