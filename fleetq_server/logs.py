"""Logging set-up: one JSON object per line for machines, or a console format for people."""

import json
import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import TracebackType

# LogRecord attributes that may be attached via `extra=` or a LoggerAdapter.
_CONTEXT_FIELDS = ("pod_id", "step_id", "step_type", "suppressed")
# Loggers whose warnings any client can trigger at will (a refused admin call, a malformed
# HTTP request): repeats of one kind are held back, so a flood cannot flood the logs.
CLIENT_TRIGGERED_LOGGERS = ("fleetq_server.api.auth", "uvicorn.error")


class RepeatLimiter(logging.Filter):
    """Lets one record of each kind (logger and message template) through per `interval`
    seconds and drops the rest; the next one let through carries how many were dropped,
    in its message and as `suppressed`. Errors and worse always pass."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()  # records may come from grpc's threads too
        # kind -> (when one was last let through, how many were dropped since)
        self._kinds: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        kind = (record.name, str(record.msg))  # the template: the same for every peer
        now = self._clock()
        with self._lock:
            last, dropped = self._kinds.get(kind, (-math.inf, 0))
            if now - last < self._interval:
                self._kinds[kind] = (last, dropped + 1)
                return False
            self._kinds[kind] = (now, 0)
        if dropped:
            record.suppressed = dropped
            record.msg = f"{record.msg} ({dropped} more like this suppressed)"
        return True


def limit_repeats(interval: float, loggers: Sequence[str] = CLIENT_TRIGGERED_LOGGERS) -> None:
    """Install a RepeatLimiter on `loggers` (replacing an earlier one); 0 turns it off."""
    for name in loggers:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, RepeatLimiter)]:
            logger.removeFilter(old)
        if interval > 0:
            logger.addFilter(RepeatLimiter(interval))


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


def configure_logging(
    log_format: str, level: str, pod_id: str, repeat_interval: float = 0.0
) -> None:
    """Send every log record to stderr in the chosen format; client-triggered warnings
    at most once per kind per `repeat_interval` seconds (0: all of them)."""
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
    limit_repeats(repeat_interval)


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
