"""What PostgreSQL cannot store in text or jsonb, checked before a value reaches the store:
a failed write would fail every other row batched with it."""

import json
import re
from typing import Any

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


def storable_json(value: Any) -> str:
    """`value` as the JSON text of a jsonb column, the one time it is serialised.

    Raises ValueError for what PostgreSQL cannot store: NaN and infinities (not JSON), and
    text `holds_unstorable_text` finds; TypeError for what JSON cannot represent.
    """
    text = json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    if holds_unstorable_text(value):
        raise ValueError("result holds text the database cannot store (NUL or lone surrogate)")
    return text
