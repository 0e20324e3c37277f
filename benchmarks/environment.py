"""Where a benchmark ran: the machine and the software versions, for the report's header."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import psutil

from tests.support.server_process import REPO_ROOT

_PACKAGES = ("grpcio", "asyncpg", "uvicorn", "httpx", "protobuf")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, str]:
    """CPU model, cores, memory and the load when the run started (the machine may be
    shared: a high load means noisy figures)."""
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return {
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "load average at start": load,
    }


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()


def versions() -> dict[str, str]:
    """Python, FLEET-Q's git commit (marked when the tree had changes) and key libraries."""
    sha = _git("rev-parse", "--short", "HEAD") or "unknown"
    if _git("status", "--porcelain", "--untracked-files=no"):
        sha += " (uncommitted changes)"
    found = {"python": platform.python_version(), "fleetq": sha}
    for package in _PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found
