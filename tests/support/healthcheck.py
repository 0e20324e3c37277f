"""Run the container healthcheck (`python -m fleetq_server.healthcheck`) against a test pod."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.server_process import ServerProcess


def run_healthcheck(pod: ServerProcess, **env: str) -> subprocess.CompletedProcess[str]:
    """The healthcheck with the pod's gRPC port (and ``env``), as its container would run it."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("FLEETQ_")}
    return subprocess.run(
        [sys.executable, "-m", "fleetq_server.healthcheck"],
        env={**base, "FLEETQ_GRPC_PORT": str(pod.grpc_port), **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
