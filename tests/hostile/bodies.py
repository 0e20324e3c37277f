"""The most expensive legal bodies of a given size: what a hostile client sends."""

from __future__ import annotations

# One below the gateway's nesting limit (32): the top-level object and "args" are two levels.
WORST_DEPTH = 29


def nested_lists_body(size: int, step_type: str = "hostile") -> bytes:
    """A submit whose args hold lists nested WORST_DEPTH deep, as many as fit `size` bytes."""
    unit = "[" * (WORST_DEPTH - 2) + "]" * (WORST_DEPTH - 2)
    head, tail = f'{{"type":"{step_type}","args":{{"a":['.encode(), b"]}}"
    count = (size - len(head) - len(tail) + 1) // (len(unit) + 1)
    return head + ",".join([unit] * count).encode() + tail


def zeros_body(size: int, step_type: str = "hostile") -> bytes:
    """A submit whose args hold one list of zeros filling `size` bytes."""
    head, tail = f'{{"type":"{step_type}","args":{{"z":['.encode(), b"]}}"
    count = (size - len(head) - len(tail) + 1) // 2
    return head + ",".join(["0"] * count).encode() + tail
