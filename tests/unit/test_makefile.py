"""The Makefile's promises about what each target needs (read with `make -n`, nothing runs)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def planned_commands(target: str) -> str:
    """What `make TARGET` would run from scratch (-B: as if nothing were built yet)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    out = subprocess.run(
        ["make", "-n", "-B", target], cwd=REPO, capture_output=True, text=True, check=True
    )
    return out.stdout


def test_make_run_needs_only_python_and_make() -> None:
    commands = planned_commands("run")
    assert "fleetq serve" in commands
    for tool in ("npm", "promtool", "buf", "apt-get"):
        assert tool not in commands, f"`make run` would use {tool}:\n{commands}"


def test_make_test_still_installs_buf_and_promtool() -> None:
    commands = planned_commands("test")
    assert "npm install" in commands and "promtool" in commands


def test_make_install_installs_debians_chromium_for_the_browser_tests() -> None:
    commands = planned_commands("install")
    assert "apt-get install -y -q chromium" in commands
