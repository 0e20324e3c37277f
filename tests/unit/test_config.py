"""Settings come from FLEETQ_* variables and flags, and bad values stop start-up."""

from pathlib import Path

import pytest

from fleetq_server.config import ConfigError, load_settings


def test_defaults_match_the_design_table() -> None:
    settings = load_settings(environ={})
    assert (settings.http_host, settings.http_port) == ("0.0.0.0", 8000)
    assert (settings.grpc_host, settings.grpc_port) == ("0.0.0.0", 50051)
    assert settings.database_url is None
    assert settings.max_capacity == 8
    assert settings.heartbeat_interval == 5 and settings.dead_pod_threshold == 15
    assert settings.shutdown_grace == 30 and settings.retention == 604800
    assert settings.worker_retention == 86400
    assert settings.recovery_interval == 5 and settings.recovery_on_expiry is True
    assert settings.durable_claims is False and settings.prefetch_claims is True
    assert settings.pod_id.startswith("pod-")


def test_flags_override_environment() -> None:
    settings = load_settings({"http_port": "9001"}, environ={"FLEETQ_HTTP_PORT": "9000"})
    assert settings.http_port == 9001


def test_environment_values_are_parsed() -> None:
    settings = load_settings(
        environ={
            "FLEETQ_HANDLERS": "a.b, c",
            "FLEETQ_MAX_PARALLELISM": "4",
            "FLEETQ_CAPACITY_THRESHOLD": "0.5",
            "FLEETQ_LOG_FORMAT": "Console",
            "FLEETQ_POD_ID": "pod-x",
            "FLEETQ_RECOVERY_ON_EXPIRY": " False",
            "FLEETQ_WORKER_RETENTION": "0",
            "FLEETQ_DURABLE_CLAIMS": "true",
            "FLEETQ_PREFETCH_CLAIMS": "false",
            "FLEETQ_VACUUM_THRESHOLD": "0",
        }
    )
    assert settings.prefetch_claims is False
    assert settings.vacuum_threshold == 0
    assert settings.worker_retention == 0
    assert settings.recovery_on_expiry is False
    assert settings.durable_claims is True
    assert settings.handlers == ("a.b", "c")
    assert settings.max_capacity == 2
    assert settings.log_format == "console"
    assert settings.pod_id == "pod-x"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FLEETQ_HTTP_PORT", "http"),
        ("FLEETQ_HTTP_PORT", "70000"),
        ("FLEETQ_HEARTBEAT_INTERVAL", "-1"),
        ("FLEETQ_HEARTBEAT_INTERVAL", "nan"),
        ("FLEETQ_CAPACITY_THRESHOLD", "1.5"),
        ("FLEETQ_LOG_LEVEL", "LOUD"),
        ("FLEETQ_RECOVERY_ON_EXPIRY", "maybe"),
        ("FLEETQ_DURABLE_CLAIMS", "always"),
        ("FLEETQ_GRPC_MAX_STREAMS", "0"),
        ("FLEETQ_GRPC_MAX_CONNECTION_IDLE", "-1"),
        ("FLEETQ_GRPC_MAX_CONNECTION_AGE", "inf"),
        ("FLEETQ_LOG_REPEAT_INTERVAL", "-5"),
        ("FLEETQ_WORKER_RETENTION", "-1"),
        ("FLEETQ_WORKER_RETENTION", "a day"),
        ("FLEETQ_VACUUM_THRESHOLD", "-1"),
        ("FLEETQ_VACUUM_THRESHOLD", "1.5"),
        ("FLEETQ_VACUUM_INTERVAL", "0"),
    ],
)
def test_invalid_value_names_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        load_settings(environ={variable: value})


def test_dead_threshold_must_cover_two_heartbeats() -> None:
    with pytest.raises(ConfigError, match="FLEETQ_DEAD_POD_THRESHOLD"):
        load_settings(environ={"FLEETQ_HEARTBEAT_INTERVAL": "5", "FLEETQ_DEAD_POD_THRESHOLD": "9"})


def test_capacity_must_allow_one_step() -> None:
    with pytest.raises(ConfigError, match="FLEETQ_MAX_PARALLELISM"):
        load_settings(environ={"FLEETQ_MAX_PARALLELISM": "1", "FLEETQ_CAPACITY_THRESHOLD": "0.5"})


def test_tls_needs_both_files() -> None:
    with pytest.raises(ConfigError, match="FLEETQ_TLS_KEY"):
        load_settings(environ={"FLEETQ_TLS_CERT": "/tmp/cert.pem"})


def test_demo_handlers_tokens_and_expiry_are_off_by_default() -> None:
    settings = load_settings(environ={})
    assert settings.demo_handlers is False
    assert settings.admin_token is None and settings.api_token is None
    assert settings.pending_expiry == 0


@pytest.mark.parametrize("variable", ["FLEETQ_ADMIN_TOKEN", "FLEETQ_API_TOKEN"])
def test_tokens_are_stripped_and_never_blank(variable: str) -> None:
    name = variable.removeprefix("FLEETQ_").lower()
    assert getattr(load_settings(environ={variable: " t0k\n"}), name) == "t0k"
    for blank in ("", " \t\n"):
        with pytest.raises(ConfigError, match=rf"{variable}=.*must not be empty"):
            load_settings(environ={variable: blank})
    with pytest.raises(ConfigError, match="printable ASCII"):
        load_settings(environ={variable: "two words"})


def test_a_token_file_is_read_and_excludes_the_variable(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("from-file\n")
    settings = load_settings(environ={"FLEETQ_API_TOKEN_FILE": str(secret)})
    assert settings.api_token == "from-file"
    assert "from-file" not in repr(settings)
    with pytest.raises(ConfigError, match="FLEETQ_API_TOKEN and FLEETQ_API_TOKEN_FILE"):
        load_settings(environ={"FLEETQ_API_TOKEN": "x", "FLEETQ_API_TOKEN_FILE": str(secret)})
    with pytest.raises(ConfigError, match=r"FLEETQ_ADMIN_TOKEN_FILE=.*cannot be read"):
        load_settings(environ={"FLEETQ_ADMIN_TOKEN_FILE": str(tmp_path / "missing")})


def test_pending_expiry_is_bounded() -> None:
    assert load_settings(environ={"FLEETQ_PENDING_EXPIRY": "3600"}).pending_expiry == 3600
    with pytest.raises(ConfigError, match="FLEETQ_PENDING_EXPIRY"):
        load_settings(environ={"FLEETQ_PENDING_EXPIRY": "-1"})
    with pytest.raises(ConfigError, match="at most"):
        load_settings(environ={"FLEETQ_PENDING_EXPIRY": "31536001"})
