"""Logging set-up: one JSON object per line for machines, or a console format for people."""

import json
import logging
import sys
from datetime import UTC, datetime
from types import TracebackType

# LogRecord attributes that may be attached via `extra=` or a LoggerAdapter.
_CONTEXT_FIELDS = ("pod_id", "step_id", "step_type")


class JsonFormatter(logging.Formatter):
    """time, level, logger, message, the context fields present, and any exception."""

    def __init__(self, pod_id: str) -> None:
        super().__init__()
        # The default for records without their own pod_id; changes on re-registration.
        self.pod_id = pod_id

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pod_id": self.pod_id,
        }
        for name in _CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class ConsoleFormatter(logging.Formatter):
    """One readable line per record for people at a terminal (`make run`), naming the step
    a record is about."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s%(step)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        step_id = getattr(record, "step_id", None)
        record.step = f" [{step_id}]" if step_id else ""
        return super().format(record)


def configure_logging(log_format: str, level: str, pod_id: str) -> None:
    """Send every log record to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter(pod_id))
    else:
        handler.setFormatter(ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Whatever would reach stderr by another way goes through the same formatter: Python
    # warnings, and an error that stops the process (as one record, not a raw traceback).
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    # Connection-level chatter from the servers is noise at INFO.
    logging.getLogger("uvicorn.error").setLevel(max(logging.WARNING, root.level))


def set_log_pod_id(pod_id: str) -> None:
    """Stamp later records with `pod_id`: a pod presumed dead comes back under a new id."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler.formatter, JsonFormatter):
            handler.formatter.pod_id = pod_id


def _log_uncaught(
    exc_type: type[BaseException], exc: BaseException, traceback: TracebackType | None
) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, traceback)
        return
    logging.getLogger("fleetq_server").critical(
        "stopped by an unexpected error: %s", exc, exc_info=(exc_type, exc, traceback)
    )
