"""ListSteps' request checks and page tokens, without a server."""

from datetime import UTC, datetime

import pytest
from fleetq.v1 import fleetq_pb2 as pb

from fleetq_server import errors
from fleetq_server.api.step_listing import (
    MAX_PAGE_SIZE,
    decode_token,
    encode_token,
    list_filter,
    page_size,
)
from fleetq_server.store.records import StepListPosition


def test_a_token_round_trips_its_position_to_the_microsecond() -> None:
    position = StepListPosition(datetime(2026, 1, 2, 3, 4, 5, 678901, UTC), "step_x")

    token = encode_token(position)

    assert decode_token(token) == position
    assert token.isascii() and "=" not in token


@pytest.mark.parametrize("token", ["%%%", "e30", "WzEsMl0", "WyJhIiwiYiJd", "W251bGwsImEiXQ"])
def test_tokens_this_service_did_not_issue_are_refused_naming_page_token(token: str) -> None:
    with pytest.raises(errors.ValidationError, match="page_token"):
        decode_token(token)


def test_page_size_defaults_caps_and_refuses_negatives() -> None:
    assert page_size(pb.ListStepsRequest()) == 50
    assert page_size(pb.ListStepsRequest(page_size=5000)) == MAX_PAGE_SIZE
    with pytest.raises(errors.ValidationError, match="page_size"):
        page_size(pb.ListStepsRequest(page_size=-1))


def test_unknown_statuses_are_refused_and_repeats_collapse() -> None:
    with pytest.raises(errors.ValidationError, match="status: unknown value 'done'"):
        list_filter(pb.ListStepsRequest(status=["failed", "done"]))
    where = list_filter(pb.ListStepsRequest(status=["failed", "failed", "cancelled"]))
    assert where.statuses == ("failed", "cancelled")
    assert where.type is None and where.idempotency_key is None
