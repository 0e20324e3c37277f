"""Output helpers the `fleetq` commands share: aligned tables and JSON of dataclasses."""

import json
from collections.abc import Iterable, Sequence
from datetime import datetime


def json_default(value: object) -> str:
    """`json.dumps` default: times as ISO 8601."""
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot render {type(value).__name__} as JSON")


def table(rows: Iterable[Sequence[object]], headers: Sequence[str] | None = None) -> str:
    """Left-aligned columns two spaces apart; a header row when given."""
    cells = [[cell(value) for value in row] for row in rows]
    if headers:
        cells.insert(0, list(headers))
    if not cells:
        return "(none)"
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def cell(value: object) -> str:
    """One table cell: "-" for nothing, times to the second, JSON for containers."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)
