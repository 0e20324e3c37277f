"""jsonb values come back from the store as the Python values written: orjson reads most,
and text with a long digit run is read by the standard library, which keeps every integer
exact (a step's result may hold any)."""

import json
from typing import Any

import pytest

from fleetq_server.store.connection import create_pool


@pytest.mark.parametrize(
    "value",
    [
        {"n": 5, "s": "żółw", "l": [1, 2.5, None, True], "o": {}},
        {"n": 2**63 - 1, "m": -(2**63)},  # within orjson's integers
        {"big": 2**64, "neg": -(2**63) - 1, "huge": 10**40},  # beyond them: read exactly
        {"tiny": 1e-30, "f": 0.1, "g": -123.456},  # PostgreSQL writes 1e-30 out in full
        [1, "x"],
        "plain",
    ],
)
async def test_a_jsonb_value_reads_back_as_written(database_url: str, value: Any) -> None:
    pool = await create_pool(database_url, 1)
    try:
        async with pool.acquire() as connection:
            read = await connection.fetchval("SELECT $1::text::jsonb", json.dumps(value))
    finally:
        await pool.close()

    assert read == value
    assert [type(item) for item in _leaves(read)] == [type(item) for item in _leaves(value)]


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for key in sorted(value) for leaf in _leaves(value[key])]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]
