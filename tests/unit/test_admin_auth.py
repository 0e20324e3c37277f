"""Which methods the admin token guards, and how the bearer token is read from metadata."""

from __future__ import annotations

import pytest
from fleetq.v1 import fleetq_pb2

from fleetq_server.api.auth import BearerTokenInterceptor, admin_methods, bearer_token, open_methods

SERVICE = fleetq_pb2.DESCRIPTOR.services_by_name["FleetQService"]


SCHEDULE_RPCS = ("Create", "List", "Get", "Update", "Delete", "Pause", "Resume")


def test_the_leader_queue_history_recovery_schedule_and_limit_rpcs_are_the_admin_methods() -> None:
    assert admin_methods(SERVICE) == {
        "/fleetq.v1.FleetQService/GetLeader",
        "/fleetq.v1.FleetQService/GetQueueStats",
        "/fleetq.v1.FleetQService/GetThroughput",
        "/fleetq.v1.FleetQService/RunRecovery",
        "/fleetq.v1.FleetQService/ListRecoveryCycles",
        *(
            f"/fleetq.v1.FleetQService/{verb}Schedule{'s' if verb == 'List' else ''}"
            for verb in SCHEDULE_RPCS
        ),
        "/fleetq.v1.FleetQService/SetTypeLimit",
        "/fleetq.v1.FleetQService/ListTypeLimits",
        "/fleetq.v1.FleetQService/DeleteTypeLimit",
    }


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ((("authorization", "Bearer abc"),), "abc"),
        ((("authorization", "bearer abc"),), "abc"),
        ((("authorization", "BEARER   abc "),), "abc"),
        ((("x-other", "1"), ("authorization", "Bearer abc")), "abc"),
        ((), None),
        (None, None),
        ((("authorization", "Basic abc"),), None),
        ((("authorization", "abc"),), None),
        ((("authorization", "Bearer"),), None),
        ((("authorization", "Bearer   "),), None),
        ((("authorization", b"Bearer abc"),), None),
        # Only the first authorization entry counts: a second cannot override a bad first.
        ((("authorization", "Basic x"), ("authorization", "Bearer abc")), None),
    ],
)
def test_bearer_token_reads_the_first_authorization_entry(
    metadata: tuple[tuple[str, str | bytes], ...] | None, expected: str | None
) -> None:
    assert bearer_token(metadata) == expected


def test_an_empty_token_is_refused() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        BearerTokenInterceptor(
            admin_token="",
            api_token=None,
            admin_methods=admin_methods(SERVICE),
            open_methods=open_methods(SERVICE),
        )


def _method(name: str) -> str:
    return f"/{SERVICE.full_name}/{name}"


@pytest.mark.parametrize(
    ("admin_token", "api_token", "method", "accepted"),
    [
        ("adm", None, "SubmitStep", ()),
        ("adm", None, "GetLeader", (b"adm",)),
        (None, "api", "SubmitStep", (b"api",)),
        (None, "api", "GetLeader", (b"api",)),
        ("adm", "api", "SubmitStep", (b"api", b"adm")),
        ("adm", "api", "GetStepStatus", (b"api", b"adm")),
        ("adm", "api", "RunRecovery", (b"adm",)),
        ("adm", "api", "GetHealth", ()),
    ],
)
def test_each_method_accepts_the_tokens_its_kind_calls_for(
    admin_token: str | None, api_token: str | None, method: str, accepted: tuple[bytes, ...]
) -> None:
    interceptor = BearerTokenInterceptor(
        admin_token=admin_token,
        api_token=api_token,
        admin_methods=admin_methods(SERVICE),
        open_methods=open_methods(SERVICE),
    )
    assert interceptor.accepted_tokens(_method(method)) == accepted
