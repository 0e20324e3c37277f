"""The log formats: JSON lines for machines, and the console format `make run` uses."""

import json
import logging

from fleetq_server.logs import ConsoleFormatter, JsonFormatter, set_log_pod_id


def record(**context: str) -> logging.LogRecord:
    entry = logging.LogRecord("fleetq_server.x", logging.INFO, __file__, 1, "hi %s", ("you",), None)
    entry.__dict__.update(context)
    return entry


def test_console_lines_name_the_step_when_there_is_one() -> None:
    formatter = ConsoleFormatter()
    with_step = formatter.format(record(step_id="step_1"))
    assert with_step.endswith(" INFO    fleetq_server.x [step_1]: hi you")
    assert formatter.format(record()).endswith(" INFO    fleetq_server.x: hi you")


def test_json_lines_carry_the_context_and_the_record_pod_id_wins() -> None:
    entry = json.loads(JsonFormatter("pod-a").format(record(step_id="s", pod_id="pod-a-r2")))
    assert (entry["message"], entry["level"], entry["step_id"]) == ("hi you", "INFO", "s")
    assert entry["pod_id"] == "pod-a-r2"
    assert json.loads(JsonFormatter("pod-a").format(record()))["pod_id"] == "pod-a"


def test_a_re_registered_pod_logs_under_its_new_id() -> None:
    root = logging.getLogger()
    saved = root.handlers[:]
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter("pod-a"))
    root.handlers[:] = [handler]
    try:
        set_log_pod_id("pod-a-r2")
        assert json.loads(handler.format(record()))["pod_id"] == "pod-a-r2"
    finally:
        root.handlers[:] = saved
