"""Loaded by the schemathesis CLI (SCHEMATHESIS_HOOKS): the contract's error body check."""

import schemathesis

ERROR_KEYS = {"detail", "error_type", "timestamp", "path"}


@schemathesis.check
def contract_error_body(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> bool | None:
    """Every 4xx/5xx answer is exactly {detail, error_type, timestamp, path}."""
    if response.status_code < 400:
        return None
    body = response.json()
    if not isinstance(body, dict) or set(body) != ERROR_KEYS:
        raise AssertionError(f"error body is not the contract's: {body!r}")
    if not all(isinstance(body[key], str) and body[key] for key in ERROR_KEYS):
        raise AssertionError(f"error body has empty or non-string fields: {body!r}")
    return True


@schemathesis.hook
def before_call(ctx: schemathesis.HookContext, case: schemathesis.Case, kwargs: dict) -> None:
    """A valid ClaimSteps long poll waits up to 30 s for work no fuzzed step provides: wait
    0 instead (still valid, so no negative case turns positive). Long polls have their own
    tests (tests/blackbox/test_remote_workers.py)."""
    body = case.body
    if case.operation.path != "/workers/claim" or not isinstance(body, dict):
        return
    wait = body.get("wait_seconds")
    if isinstance(wait, int | float) and not isinstance(wait, bool) and 0 < wait <= 30:
        body["wait_seconds"] = 0
