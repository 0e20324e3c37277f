"""The log formats: JSON lines for machines, and the console format `make run` uses."""

import json
import logging

from fleetq_server.logs import ConsoleFormatter, JsonFormatter, RepeatLimiter, set_log_pod_id


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


def test_repeats_of_a_kind_pass_once_per_interval_and_the_next_counts_the_rest() -> None:
    now = [100.0]
    limiter = RepeatLimiter(10.0, clock=lambda: now[0])

    def warning(peer: str, logger: str = "fleetq_server.x") -> logging.LogRecord:
        return logging.LogRecord(logger, logging.WARNING, __file__, 1, "refused %s", (peer,), None)

    assert limiter.filter(warning("a"))
    assert [limiter.filter(warning(str(n))) for n in range(5)] == [False] * 5
    assert limiter.filter(warning("a", logger="fleetq_server.y"))  # another kind
    now[0] += 10.0
    passed = warning("b")
    assert limiter.filter(passed)
    entry = json.loads(JsonFormatter("pod-a").format(passed))
    assert entry["suppressed"] == 5
    assert entry["message"] == "refused b (5 more like this suppressed)"
    error = logging.LogRecord(
        "fleetq_server.x", logging.ERROR, __file__, 1, "refused %s", ("c",), None
    )
    assert limiter.filter(error)  # errors are never held back
