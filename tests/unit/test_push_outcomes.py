"""Push targets' pure parts: how an answer becomes a result or a failure, Retry-After in
both of its forms, and FLEETQ_PUSH_TARGETS validation."""

import httpx
import pytest

from fleetq_server.config import ConfigError, PushTarget, load_settings
from fleetq_server.handlers import PermanentFailure, RetryAfter
from fleetq_server.handlers.push import PushFailed, outcome_of, retry_after_seconds


def answer(status: int, body: str = "", **headers: str) -> httpx.Response:
    return httpx.Response(status, content=body.encode(), headers=headers)


def test_2xx_bodies_are_results() -> None:
    assert outcome_of(answer(200, '{"a": [1, 2.5]}')) == {"a": [1, 2.5]}
    assert outcome_of(answer(204)) is None
    with pytest.raises(PermanentFailure, match="not JSON"):
        outcome_of(answer(200, "<html>"))


@pytest.mark.parametrize("status", [408, 429, 500, 503])
def test_retried_statuses(status: int) -> None:
    with pytest.raises(PushFailed, match=f"HTTP {status}"):
        outcome_of(answer(status, "busy"))
    with pytest.raises(RetryAfter) as later:
        outcome_of(answer(status, **{"Retry-After": "7"}))
    assert later.value.seconds == 7


@pytest.mark.parametrize("status", [301, 400, 401, 404, 409, 422])
def test_other_statuses_fail_for_good(status: int) -> None:
    with pytest.raises(PermanentFailure, match=f"HTTP {status}"):
        outcome_of(answer(status))


def test_retry_after_as_seconds_or_an_http_date() -> None:
    assert retry_after_seconds("120") == 120
    now = 784111777.0  # Sun, 06 Nov 1994 08:49:37 GMT
    assert retry_after_seconds("Sun, 06 Nov 1994 08:49:47 GMT", now=now) == 10
    assert retry_after_seconds("Sun, 06 Nov 1994 08:49:27 GMT", now=now) == 0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def test_push_targets_setting() -> None:
    raw = '{"a": "http://h/a", "b": {"url": "https://h/b", "timeout": 2.5}}'
    settings = load_settings(environ={"FLEETQ_PUSH_TARGETS": raw})
    assert settings.push_targets == (
        PushTarget("a", "http://h/a", 30.0),
        PushTarget("b", "https://h/b", 2.5),
    )
    for bad, why in [
        ("[1]", "JSON object"),
        ('{"a": "ftp://h"}', "http"),
        ('{"a": {"url": "http://h", "timeout": 0}}', "timeout"),
        ('{"a": {"url": "http://h", "retries": 1}}', "url and timeout"),
        ("{", "JSON object"),
    ]:
        with pytest.raises(ConfigError, match=why):
            load_settings(environ={"FLEETQ_PUSH_TARGETS": bad})
