"""Assertions shared by the hostile-input tests."""

from __future__ import annotations

import httpx

ERROR_KEYS = {"detail", "error_type", "timestamp", "path"}


def assert_validation_error(response: httpx.Response, *words: str) -> str:
    """`response` is the contract's 400 validation_error whose detail holds `words`;
    returns the detail."""
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == ERROR_KEYS and body["error_type"] == "validation_error"
    for word in words:
        assert word in body["detail"], body["detail"]
    return str(body["detail"])
