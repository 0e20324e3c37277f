"""What PostgreSQL cannot store in text or jsonb, checked before a value reaches the store:
a failed write would fail every other row batched with it."""

import json
import re
from typing import Any

import orjson

from fleetq_common.json_values import holds_more_values

# NUL, and UTF-16 surrogates that are not a pair (Python strings can hold them, e.g. bytes
# decoded with errors="surrogateescape").
_UNSTORABLE_TEXT = re.compile(
    "\x00|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]"
)


def holds_unstorable_text(value: Any) -> bool:
    """Whether any string or key in the JSON-like `value` is text PostgreSQL refuses."""
    if isinstance(value, str):
        return _UNSTORABLE_TEXT.search(value) is not None
    if isinstance(value, dict):
        return any(holds_unstorable_text(k) or holds_unstorable_text(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(holds_unstorable_text(item) for item in value)
    return False


def storable_text(text: str) -> str:
    """`text` with every character PostgreSQL refuses replaced by U+FFFD."""
    return _UNSTORABLE_TEXT.sub("\ufffd", text)


# A step's result must come back in a status answer that every gRPC client accepts by
# default (4 MiB). The answer also carries args + metadata (at most ~1.2 MiB as a Struct),
# and a Struct spends about 11 bytes on each number however short its JSON is, so both
# the text and the number of values are bounded: 1 MiB + 50,000 x 11 bytes + 1.2 MiB stays
# under 3 MiB.
RESULT_MAX_BYTES = 1024 * 1024
RESULT_MAX_VALUES = 50_000


def storable_json(value: Any) -> str:
    """`value`, a step's result, as the JSON text of a jsonb column, serialised once.

    Raises ValueError for what PostgreSQL cannot store: NaN and infinities (not JSON), and
    text `holds_unstorable_text` finds; for a result over RESULT_MAX_BYTES of JSON or
    RESULT_MAX_VALUES values, which no status answer could carry to a default gRPC client;
    TypeError for what JSON cannot represent.
    """
    text = json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    # A character is at most 4 bytes of UTF-8: encode only when the text might be too long.
    if len(text) > RESULT_MAX_BYTES // 4 and len(text.encode()) > RESULT_MAX_BYTES:
        raise ValueError(f"result is larger than {RESULT_MAX_BYTES} bytes of JSON")
    if holds_more_values([value], RESULT_MAX_VALUES):
        raise ValueError(f"result holds more than {RESULT_MAX_VALUES} JSON values")
    if holds_unstorable_text(value):
        raise ValueError("result holds text the database cannot store (NUL or lone surrogate)")
    return text


def json_bytes(value: Any) -> bytes:
    """`value` as compact JSON for a statement's parameters or a COPY row. orjson is ~10x
    faster per value; the standard library covers what it refuses (integers beyond 64
    bits), with ASCII escapes."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":")).encode()


def json_text(value: Any) -> str:
    """JSON text for jsonb array parameters: asyncpg would read a list value as a nested
    array, so arrays of JSON travel as text[] and are cast in SQL. A result arrives
    serialised already (`StepOutcome.result_json`)."""
    return json_bytes(value).decode()
