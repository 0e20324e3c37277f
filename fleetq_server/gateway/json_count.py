"""Counting the JSON values of a request body before parsing it.

Parsing is what costs: every value becomes a Python object (then a protobuf one), and a
1 MiB body can hold half a million of them. Counting the structural characters outside
strings is a handful of passes of C code over the bytes, so a body with too many values
is refused before any of that work. The count is exact for valid JSON; for invalid JSON
it is a number the parser will refuse anyway.
"""

_WHITESPACE = b" \t\n\r"


def structure(body: bytes) -> bytes:
    """`body` without whitespace, each string (object keys included) replaced by `0`: what
    is left is the punctuation, numbers and literals, readable with C-level counts."""
    # Escapes first, so that every remaining quote opens or closes a string; a string is
    # then replaced by a scalar so that `["x"]` still reads as a non-empty array.
    text = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    return b"0".join(text.split(b'"')[0::2]).translate(None, _WHITESPACE)


def count_values(bare: bytes) -> int:
    """The number of JSON values (containers and scalars; object keys not) in the body
    whose `structure` is `bare`.

    Every value but the root follows a `:`, a `,` between array elements, or the `[` of a
    non-empty array; commas between object members pair with the `:` of the next member.
    So values = 1 + commas + non-empty arrays + non-empty objects, outside strings.
    """
    return (
        1
        + bare.count(b",")
        + bare.count(b"[")
        + bare.count(b"{")
        - bare.count(b"[]")
        - bare.count(b"{}")
    )
