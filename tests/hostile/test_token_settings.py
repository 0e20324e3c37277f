"""Issue 11, item 12: token mistakes stop start-up with a message naming the variable, instead
of leaving the RPCs open or making every login fail; tokens may come from files."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.blackbox.contract import FAST_POD_ENV
from tests.conftest import ServerFactory


@pytest.mark.parametrize("variable", ["FLEETQ_ADMIN_TOKEN", "FLEETQ_API_TOKEN"])
@pytest.mark.parametrize("value", ["", "   ", "\n"], ids=["empty", "spaces", "newline"])
def test_an_empty_or_blank_token_stops_start_up(
    server_factory: ServerFactory, variable: str, value: str
) -> None:
    pod = server_factory(env={**FAST_POD_ENV, variable: value}, wait=False)
    assert pod.wait_for_exit(timeout=30) == 2
    log = pod.log_text()
    assert f"{variable}=" in log and "must not be empty" in log
    assert "Traceback" not in log


def test_surrounding_whitespace_is_stripped_from_a_token(server_factory: ServerFactory) -> None:
    pod = server_factory(env={**FAST_POD_ENV, "FLEETQ_ADMIN_TOKEN": "  s3cret\n"})
    headers = {"Authorization": "Bearer s3cret"}
    assert httpx.get(f"{pod.http_url}/admin/queue", headers=headers).status_code == 200


@pytest.mark.parametrize("name", ["admin", "api"])
def test_a_token_file_is_read_at_start_up_without_its_trailing_newline(
    server_factory: ServerFactory, tmp_path: Path, name: str
) -> None:
    secret = tmp_path / "token"
    secret.write_text("from-a-secret\n")  # as a mounted Kubernetes Secret often ends
    variable = f"FLEETQ_{name.upper()}_TOKEN_FILE"
    pod = server_factory(env={**FAST_POD_ENV, variable: str(secret)})
    path = "/admin/queue" if name == "admin" else "/status/step_20240101000000_00000000"
    assert httpx.get(pod.http_url + path).status_code == 401
    authorised = httpx.get(pod.http_url + path, headers={"Authorization": "Bearer from-a-secret"})
    assert authorised.status_code in (200, 404), authorised.text


@pytest.mark.parametrize(
    ("contents", "message"),
    [(None, "cannot be read"), ("\n", "must not be empty")],
    ids=["missing file", "blank file"],
)
def test_an_unusable_token_file_stops_start_up(
    server_factory: ServerFactory, tmp_path: Path, contents: str | None, message: str
) -> None:
    secret = tmp_path / "token"
    if contents is not None:
        secret.write_text(contents)
    pod = server_factory(env={**FAST_POD_ENV, "FLEETQ_API_TOKEN_FILE": str(secret)}, wait=False)
    assert pod.wait_for_exit(timeout=30) == 2
    log = pod.log_text()
    assert "FLEETQ_API_TOKEN_FILE=" in log and message in log


def test_a_token_and_its_file_together_stop_start_up(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    secret = tmp_path / "token"
    secret.write_text("one")
    env = {**FAST_POD_ENV, "FLEETQ_ADMIN_TOKEN": "two", "FLEETQ_ADMIN_TOKEN_FILE": str(secret)}
    pod = server_factory(env=env, wait=False)
    assert pod.wait_for_exit(timeout=30) == 2
    assert "FLEETQ_ADMIN_TOKEN and FLEETQ_ADMIN_TOKEN_FILE are both set" in pod.log_text()
