"""A pod whose handler modules cannot be loaded refuses to start, saying why."""

from __future__ import annotations

import pytest

from tests.conftest import ServerFactory


@pytest.mark.parametrize(
    ("modules", "message"),
    [
        (
            "tests.handlers.recording,tests.handlers.broken_import",
            "cannot import handler module 'tests.handlers.broken_import'",
        ),
        ("tests.handlers.duplicate_type", "step type 'hello_world' is registered twice"),
    ],
)
def test_a_bad_handler_module_stops_start_up_with_a_clear_message(
    server_factory: ServerFactory, modules: str, message: str
) -> None:
    pod = server_factory(env={"FLEETQ_HANDLERS": modules}, wait=False)
    assert pod.wait_for_exit(timeout=30) != 0
    log = pod.log_text()
    assert message in log
    assert "Traceback" not in log, "one clear line, not a stack trace"
