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


def capped_body(size: int, max_values: int, step_type: str = "hostile") -> bytes:
    """The costliest body a pod with FLEETQ_MAX_JSON_VALUES=`max_values` accepts: lists
    nested as deep as allowed up to the cap, then one string filling `size` bytes."""
    depth = WORST_DEPTH - 2
    unit = "[" * depth + "]" * depth
    count = (max_values - 3) // depth  # args, "a" and "s" are values too
    head = f'{{"type":"{step_type}","args":{{"a":[{",".join([unit] * count)}],"s":"'.encode()
    tail = b'"}}'
    return head + b"x" * (size - len(head) - len(tail)) + tail
