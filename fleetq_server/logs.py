"""Logging set-up: one JSON object per line for machines, or a console format for people."""

import json
import logging
import sys
from datetime import UTC, datetime

# LogRecord attributes that may be attached via `extra=` or a LoggerAdapter.
_CONTEXT_FIELDS = ("pod_id", "step_id", "step_type")


class JsonFormatter(logging.Formatter):
    """time, level, logger, message, the context fields present, and any exception."""

    def __init__(self, pod_id: str) -> None:
        super().__init__()
        self._pod_id = pod_id

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pod_id": self._pod_id,
        }
        for name in _CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(log_format: str, level: str, pod_id: str) -> None:
    """Send every log record to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter(pod_id))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Connection-level chatter from the servers is noise at INFO.
    logging.getLogger("uvicorn.error").setLevel(max(logging.WARNING, root.level))
