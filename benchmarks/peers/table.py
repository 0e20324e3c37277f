"""The ratio table of `make bench-peers`: each row's median over the repetitions for
PgQueuer and for FLEET-Q, and FLEET-Q / PgQueuer (issue #13's table)."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Row:
    """One measure both queues are put through."""

    key: str
    label: str
    unit: str  # "/s" (higher is better) or " ms" (lower is better)
    digits: int = 0

    @property
    def higher_is_better(self) -> bool:
        """Throughputs: a ratio above 1 is a FLEET-Q win; latencies: below 1."""
        return self.unit == "/s"


def compare(
    rows: Sequence[Row],
    pgqueuer: Mapping[str, Sequence[float]],
    fleetq: Mapping[str, Sequence[float]],
) -> list[dict[str, Any]]:
    """Per row: both medians (None when a side has no sample), the ratio FLEET-Q /
    PgQueuer, and whether FLEET-Q is at least as good."""
    compared = []
    for row in rows:
        ours = statistics.median(fleetq[row.key]) if fleetq.get(row.key) else None
        theirs = statistics.median(pgqueuer[row.key]) if pgqueuer.get(row.key) else None
        ratio = ours / theirs if ours is not None and theirs else None
        wins = None
        if ratio is not None:
            wins = ratio >= 1 if row.higher_is_better else ratio <= 1
        compared.append(
            {
                "key": row.key,
                "measure": row.label,
                "pgqueuer": theirs,
                "fleetq": ours,
                "ratio": ratio,
                "fleetq_at_least_as_good": wins,
                "samples": {
                    "pgqueuer": list(pgqueuer.get(row.key, ())),
                    "fleetq": list(fleetq.get(row.key, ())),
                },
            }
        )
    return compared


def _figure(value: float | None, row: Row) -> str:
    return "-" if value is None else f"{value:,.{row.digits}f}{row.unit}"


def markdown(rows: Sequence[Row], compared: Sequence[Mapping[str, Any]]) -> list[str]:
    """The table; a ratio where FLEET-Q does worse than PgQueuer is bold."""
    lines = [
        "| measure | PgQueuer | FLEET-Q | FLEET-Q / PgQueuer |",
        "|---|--:|--:|--:|",
    ]
    for row, line in zip(rows, compared, strict=True):
        ratio = "-" if line["ratio"] is None else f"{line['ratio']:.2f}"
        if line["fleetq_at_least_as_good"] is False:
            ratio = f"**{ratio}**"
        cells = [_figure(line["pgqueuer"], row), _figure(line["fleetq"], row), ratio]
        lines.append(f"| {row.label} | {' | '.join(cells)} |")
    return lines


CPU_ROLES = ("pods", "postgres", "client")


def cpu_markdown(rows: Sequence[Row], figures: Mapping[str, Sequence[float]]) -> list[str]:
    """Per row that has them, the median CPU milliseconds per 1,000 steps of each role,
    from figures named `<row>:<scenario>_cpu_<role>_ms_per_1k`."""
    lines = ["| measure | pod(s) | PostgreSQL | client |", "|---|--:|--:|--:|"]
    for row in rows:
        cells = []
        for role in CPU_ROLES:
            values = [
                value
                for key, samples in figures.items()
                if key.startswith(f"{row.key}:") and key.endswith(f"_cpu_{role}_ms_per_1k")
                for value in samples
            ]
            cells.append(f"{statistics.median(values):,.0f} ms" if values else "-")
        if any(cell != "-" for cell in cells):
            lines.append(f"| {row.label} | {' | '.join(cells)} |")
    return lines
