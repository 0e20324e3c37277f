"""A real grpc-gateway (deploy/grpc-gateway, built offline from Debian's packages) in front
of a real pod. `make gateway-test` installs the packages and runs these tests; `make test`
leaves them out (marker `grpc_gateway`)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import google.api
import httpx
import pytest

from tests.support.net import free_port
from tests.support.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "deploy" / "grpc-gateway" / "build.sh"
_TOOLS = ("go", "protoc", "protoc-gen-go", "protoc-gen-grpc-gateway")

GatewayFactory = Callable[[str], str]


@pytest.fixture(scope="session")
def gateway_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fleetq-gateway, built by deploy/grpc-gateway/build.sh (what a user runs)."""
    missing = [tool for tool in _TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{missing} not installed: run `make gateway-test`", pytrace=False)
    binary = tmp_path_factory.mktemp("grpc-gateway") / "fleetq-gateway"
    googleapis = Path(google.api.__path__[0]).parents[1]
    built = subprocess.run(
        ["bash", str(BUILD_SCRIPT), str(binary), str(googleapis)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    return binary


@pytest.fixture(scope="module")
def start_gateway(
    gateway_binary: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayFactory]:
    """``start_gateway(grpc_target)`` -> the base URL of a gateway in front of that pod;
    every gateway started is stopped at the end of the module."""
    processes: list[subprocess.Popen[bytes]] = []
    log_dir = tmp_path_factory.mktemp("gateway-logs")

    def start(grpc_target: str) -> str:
        port = free_port()
        log = (log_dir / f"gateway-{port}.log").open("wb")
        process = subprocess.Popen(
            [str(gateway_binary), f"--listen=127.0.0.1:{port}", f"--backend={grpc_target}"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        processes.append(process)
        url = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            assert process.poll() is None, (log_dir / f"gateway-{port}.log").read_text()
            try:
                return httpx.get(f"{url}/health", timeout=1).status_code in (200, 503)
            except httpx.TransportError:
                return False

        wait_until(answers, timeout=30, description="the gateway to answer /health")
        return url

    yield start
    for process in processes:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
