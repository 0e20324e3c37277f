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
