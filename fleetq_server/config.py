"""Settings: environment variables (`FLEETQ_*`), each overridable by a `fleetq serve` flag.

Every value is validated at start-up; a bad one stops the pod with a message naming the
variable, rather than surfacing later as a confusing runtime failure.
"""

import dataclasses
import json
import math
import os
import secrets
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# Largest request either protocol accepts; bigger gRPC messages get RESOURCE_EXHAUSTED.
MAX_REQUEST_BYTES = 1 << 20


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the variable."""


@dataclass(frozen=True)
class PushTarget:
    """Steps of `step_type` are POSTed to `url` (FLEETQ_PUSH_TARGETS); `timeout` seconds
    without an answer is a retryable failure."""

    step_type: str
    url: str
    timeout: float = 30.0


@dataclass(frozen=True)
class Settings:
    """Everything a pod is configured with. Durations are seconds (fractions allowed)."""

    http_host: str = "0.0.0.0"
    http_port: int = 8000
    # The REST port's limits per connection (see fleetq_server.http_server).
    http_max_header_bytes: int = 32768
    http_header_timeout: float = 10.0
    http_body_timeout: float = 30.0
    http_max_connections: int = 1000
    # Web origins allowed to call the REST API from a browser; none by default.
    cors_origins: tuple[str, ...] = ()
    grpc_host: str = "0.0.0.0"
    grpc_port: int = 50051
    database_url: str | None = None
    # Connections in this pod's pool (the LISTEN and start-up migration connections come
    # on top; README "Production database" has the whole budget).
    database_pool_size: int = 10
    # What sits between the pods and PostgreSQL: "none", or "pgbouncer" in transaction mode.
    database_pooler: str = "none"
    # Whether a pod's claims wait for their WAL flush: off, a crash (or a promotion) may
    # lose a claim, and the step is then claimed again (store.claims.UNFLUSHED_CTE).
    durable_claims: bool = False
    # A direct URL for LISTEN when the database URL is a pooler's; unset: the database URL
    # when it is direct, and polling only behind a pooler.
    listen_database_url: str | None = None
    data_dir: Path | None = None
    # Leave the embedded server running when the last pod leaves (data directories shared
    # with clients the pods cannot see); by default the last pod out stops it.
    embedded_db_keep_running: bool = False
    pod_id: str = ""
    max_parallelism: int = 10
    capacity_threshold: float = 0.8
    # Claims ahead of free slots, by outcome writes, while handlers are short (claims_ahead.py).
    prefetch_claims: bool = True
    heartbeat_interval: float = 5.0
    dead_pod_threshold: float = 15.0
    recovery_interval: float = 5.0
    # The leader also runs a cycle the moment a live pod's heartbeat is due to go stale,
    # so a crashed pod's steps wait one dead-pod threshold, not up to an interval more.
    recovery_on_expiry: bool = True
    handlers: tuple[str, ...] = ()
    # The built-in demo step types (hello_world, sleep): off in production, since any client
    # could otherwise keep every worker busy with `sleep` steps. `make run` turns them on.
    demo_handlers: bool = False
    shutdown_grace: float = 30.0
    retention: float = 604800.0
    # How often the leader deletes finished steps older than `retention`.
    retention_interval: float = 60.0
    # Remote workers unseen this long (and holding no lease) are forgotten; 0: never.
    worker_retention: float = 86400.0
    # The leader VACUUMs fleetq_steps at this many dead rows, 0: never (runtime/vacuum.py).
    vacuum_threshold: int = 100_000
    vacuum_interval: float = 1.0
    log_format: str = "json"
    log_level: str = "INFO"
    # Secrets: kept out of repr() so that logging the settings cannot leak them. Each can
    # also come from a file (Kubernetes Secret volumes): the *_file settings, read at start-up.
    admin_token: str | None = dataclasses.field(default=None, repr=False)
    admin_token_file: Path | None = None
    # Required by every RPC except health when set; the admin token is accepted too.
    api_token: str | None = dataclasses.field(default=None, repr=False)
    api_token_file: Path | None = None
    # Required by the worker RPCs (ClaimSteps and the leased outcomes) when set, instead of
    # the API token; the admin token is accepted too.
    worker_token: str | None = dataclasses.field(default=None, repr=False)
    worker_token_file: Path | None = None
    # HTTP push targets: steps of these types are POSTed to a URL instead of run here.
    push_targets: tuple[PushTarget, ...] = ()
    # Seconds a step may wait pending before it fails with error type `expired`; 0: never.
    # A submit's own pending_expiry_seconds overrides it.
    pending_expiry: float = 0.0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Poll the queue this often even without a NOTIFY: a safety net, not the wake-up path.
    poll_interval: float = 2.0
    # Backoff between executions of a failing step: base * 2^retry_count, capped, jittered.
    retry_backoff_base: float = 1.0
    retry_backoff_max: float = 300.0
    # JSON values (objects, arrays and scalars alike) one request may carry in args and
    # metadata, all steps of a batch together: bounds the work a request costs, not only
    # its bytes (a 1 MiB body can hold half a million values).
    max_json_values: int = 10_000
    # Request body bytes one pod holds at once over REST; requests past it wait (unread,
    # so TCP pushes back on their senders) for others to finish.
    max_body_bytes_in_flight: int = 16 << 20
    # Per gRPC connection: concurrent streams (gRPC's usual 100; more wait or are refused),
    # and after how long an idle or any connection is closed (0: never).
    grpc_max_streams: int = 100
    grpc_max_connection_idle: float = 300.0
    grpc_max_connection_age: float = 3600.0
    # Client-triggered warnings (refused admin calls, malformed requests): one line per kind
    # per interval, the next one saying how many were held back.
    log_repeat_interval: float = 10.0
    # Periodic schedules (and limits) declared in a TOML file, reconciled at start.
    schedules_file: Path | None = None
    # How often the leader looks for due schedule ticks at most (it also wakes for the next).
    schedule_interval: float = 1.0

    @property
    def max_capacity(self) -> int:
        """Steps this pod runs at once: floor(max_parallelism * capacity_threshold)."""
        return math.floor(self.max_parallelism * self.capacity_threshold + 1e-9)


def env_name(field_name: str) -> str:
    """The environment variable of a setting, e.g. http_port -> FLEETQ_HTTP_PORT."""
    return "FLEETQ_" + field_name.upper()


def _parse_positive(kind: Callable[[str], Any], allow_zero: bool = False) -> Callable[[str], Any]:
    def parse(raw: str) -> Any:
        value = kind(raw)
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            raise ValueError("must be " + ("zero or more" if allow_zero else "above zero"))
        return value

    return parse


def _parse_port(raw: str) -> int:
    port = int(raw)
    if not 0 <= port <= 65535:
        raise ValueError("must be a port number (0-65535)")
    return port


def _parse_fraction(raw: str) -> float:
    value = float(raw)
    if not 0 < value <= 1:
        raise ValueError("must be above 0 and at most 1")
    return value


def _parse_choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        for choice in choices:
            if raw.strip().lower() == choice.lower():
                return choice
        raise ValueError(f"must be one of {', '.join(choices)}")

    return parse


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _parse_modules(raw: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in raw.split(",") if name.strip())


def _parse_optional_text(raw: str) -> str | None:
    return raw or None


def _parse_token(raw: str) -> str:
    """A bearer token, without the whitespace a Secret file or a shell quote leaves around it.
    Empty is refused rather than read as "no token": that would leave the RPCs open."""
    token = raw.strip()
    if not token:
        raise ValueError("must not be empty or only whitespace (unset it for no token)")
    if any(not 0x21 <= ord(char) <= 0x7E for char in token):
        raise ValueError("must be printable ASCII without spaces (it travels in a header)")
    return token


def _parse_push_targets(raw: str) -> tuple[PushTarget, ...]:
    """A JSON object: step type -> URL, or -> {"url": URL, "timeout": seconds}."""
    if not raw.strip():
        return ()
    try:
        document = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"must be a JSON object of step type -> URL: {exc}") from None
    if not isinstance(document, dict):
        raise ValueError("must be a JSON object of step type -> URL")
    targets = []
    for step_type, spec in document.items():
        target = {"url": spec} if isinstance(spec, str) else spec
        if not isinstance(target, dict) or set(target) - {"url", "timeout"}:
            raise ValueError(f"{step_type}: give a URL, or an object with url and timeout")
        url, timeout = target.get("url"), target.get("timeout", 30.0)
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"{step_type}: url must be an http:// or https:// URL")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise ValueError(f"{step_type}: timeout must be a number of seconds")
        if not 0 < timeout <= 3600:
            raise ValueError(f"{step_type}: timeout must be above 0 and at most 3600 seconds")
        targets.append(PushTarget(step_type, url, float(timeout)))
    return tuple(targets)


def _parse_optional_path(raw: str) -> Path | None:
    return Path(raw).expanduser() if raw else None


def _parse_header_cap(raw: str) -> int:
    value = int(raw)
    if not 1024 <= value <= 65536:
        raise ValueError("must be from 1024 to 65536 bytes")
    return value


def _parse_origins(raw: str) -> tuple[str, ...]:
    origins = []
    for item in raw.split(","):
        origin = item.strip().rstrip("/").lower()
        if not origin:
            continue
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
            raise ValueError(f"{item.strip()!r} is not an origin like https://app.example.com")
        origins.append(origin)
    return tuple(origins)


_PARSERS: dict[str, Callable[[str], Any]] = {
    "http_host": str,
    "http_port": _parse_port,
    "http_max_header_bytes": _parse_header_cap,
    "http_header_timeout": _parse_positive(float),
    "http_body_timeout": _parse_positive(float),
    "http_max_connections": _parse_positive(int),
    "cors_origins": _parse_origins,
    "grpc_host": str,
    "grpc_port": _parse_port,
    "database_url": _parse_optional_text,
    "database_pool_size": _parse_positive(int),
    "database_pooler": _parse_choice("none", "pgbouncer"),
    "durable_claims": _parse_bool,
    "listen_database_url": _parse_optional_text,
    "data_dir": _parse_optional_path,
    "embedded_db_keep_running": _parse_bool,
    "pod_id": str,
    "max_parallelism": _parse_positive(int),
    "capacity_threshold": _parse_fraction,
    "prefetch_claims": _parse_bool,
    "heartbeat_interval": _parse_positive(float),
    "dead_pod_threshold": _parse_positive(float),
    "recovery_interval": _parse_positive(float),
    "recovery_on_expiry": _parse_bool,
    "handlers": _parse_modules,
    "demo_handlers": _parse_bool,
    "shutdown_grace": _parse_positive(float, allow_zero=True),
    "retention": _parse_positive(float, allow_zero=True),
    "retention_interval": _parse_positive(float),
    "worker_retention": _parse_positive(float, allow_zero=True),
    "vacuum_threshold": _parse_positive(int, allow_zero=True),
    "vacuum_interval": _parse_positive(float),
    "log_format": _parse_choice("json", "console"),
    "log_level": _parse_choice("DEBUG", "INFO", "WARNING", "ERROR"),
    "admin_token": _parse_token,
    "admin_token_file": _parse_optional_path,
    "api_token": _parse_token,
    "api_token_file": _parse_optional_path,
    "worker_token": _parse_token,
    "worker_token_file": _parse_optional_path,
    "push_targets": _parse_push_targets,
    "pending_expiry": _parse_positive(float, allow_zero=True),
    "tls_cert": _parse_optional_path,
    "tls_key": _parse_optional_path,
    "poll_interval": _parse_positive(float),
    "retry_backoff_base": _parse_positive(float, allow_zero=True),
    "retry_backoff_max": _parse_positive(float, allow_zero=True),
    "max_json_values": _parse_positive(int),
    "max_body_bytes_in_flight": _parse_positive(int),
    "grpc_max_streams": _parse_positive(int),
    "grpc_max_connection_idle": _parse_positive(float, allow_zero=True),
    "grpc_max_connection_age": _parse_positive(float, allow_zero=True),
    "log_repeat_interval": _parse_positive(float, allow_zero=True),
    "schedules_file": _parse_optional_path,
    "schedule_interval": _parse_positive(float),
}


def default_pod_id() -> str:
    """hostname plus a random suffix, so replicas sharing a hostname never collide."""
    return f"pod-{socket.gethostname()}-{secrets.token_hex(3)}"


def load_settings(
    overrides: Mapping[str, str | None] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build Settings from the environment, then `overrides` (raw strings from flags)."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for field in fields(Settings):
        raw = (overrides or {}).get(field.name)
        source = f"--{field.name.replace('_', '-')}"
        if raw is None:
            raw = environ.get(env_name(field.name))
            source = env_name(field.name)
        if raw is None:
            continue
        try:
            values[field.name] = _PARSERS[field.name](raw)
        except ValueError as exc:
            raise ConfigError(f"{source}={raw!r} is invalid: {exc}") from None
    for name in ("admin_token", "api_token", "worker_token"):
        _read_token_file(values, name)
    settings = Settings(**values)
    _check_consistency(settings)
    if not settings.pod_id:
        settings = Settings(**{**values, "pod_id": default_pod_id()})
    return settings


def _read_token_file(values: dict[str, Any], name: str) -> None:
    """Fill the token `name` from its *_file setting, if given: one or the other, not both."""
    path: Path | None = values.get(f"{name}_file")
    if path is None:
        return
    variable, file_variable = env_name(name), env_name(f"{name}_file")
    if values.get(name) is not None:
        raise ConfigError(f"{variable} and {file_variable} are both set; set only one of them")
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file_variable}={str(path)!r} cannot be read: {exc}") from None
    try:
        values[name] = _parse_token(raw)
    except ValueError as exc:
        raise ConfigError(f"{file_variable}={str(path)!r} is invalid: the file {exc}") from None


def _check_consistency(settings: Settings) -> None:
    """Rules that relate several settings."""
    if settings.max_capacity < 1:
        raise ConfigError(
            "FLEETQ_MAX_PARALLELISM * FLEETQ_CAPACITY_THRESHOLD must allow at least one step "
            f"(floor({settings.max_parallelism} * {settings.capacity_threshold}) = 0)"
        )
    if settings.dead_pod_threshold < 2 * settings.heartbeat_interval:
        raise ConfigError(
            f"FLEETQ_DEAD_POD_THRESHOLD={settings.dead_pod_threshold:g} must be at least two "
            f"heartbeats (2 x FLEETQ_HEARTBEAT_INTERVAL = {2 * settings.heartbeat_interval:g})"
        )
    if settings.max_body_bytes_in_flight < MAX_REQUEST_BYTES:
        raise ConfigError(
            f"FLEETQ_MAX_BODY_BYTES_IN_FLIGHT={settings.max_body_bytes_in_flight} must hold"
            f" at least one request of the largest size ({MAX_REQUEST_BYTES} bytes)"
        )
    # Imported here: the limit lives in the proto, which only the pod itself needs loaded.
    from fleetq_server.submission import MAX_PENDING_EXPIRY_S

    if settings.pending_expiry > MAX_PENDING_EXPIRY_S:
        raise ConfigError(
            f"FLEETQ_PENDING_EXPIRY={settings.pending_expiry:g} must be at most "
            f"{MAX_PENDING_EXPIRY_S:g} seconds (a year); 0 means never"
        )
    if settings.retry_backoff_base > settings.retry_backoff_max:
        raise ConfigError("FLEETQ_RETRY_BACKOFF_BASE must not exceed FLEETQ_RETRY_BACKOFF_MAX")
    if settings.database_pooler != "none" and settings.database_url is None:
        raise ConfigError("FLEETQ_DATABASE_POOLER needs FLEETQ_DATABASE_URL (the pooler's URL)")
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise ConfigError("FLEETQ_TLS_CERT and FLEETQ_TLS_KEY must be set together")
