"""What PostgreSQL cannot store in text or jsonb, checked before a value reaches the store:
a failed write would fail every other row batched with it."""

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
