"""`make bench-peers --rows`: only the chosen rows are measured and shown; a measure runs
when it fills one of them (PgQueuer's drain figure serves two rows)."""

import pytest

from benchmarks.peers.run import ROW_KEYS, Measure, Picked, parse_args, rows


async def _nothing() -> dict[str, float]:
    return {}


def test_every_row_is_measured_unless_rows_are_chosen() -> None:
    assert [row.key for row in rows(parse_args(["--quick"]))] == list(ROW_KEYS)
    chosen = parse_args(["--quick", "--rows", "latency_p99,bulk"])
    assert [row.key for row in rows(chosen)] == ["bulk", "latency_p99"]


def test_an_unknown_row_is_refused() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--rows", "bulk,nonesuch"])


def test_a_measure_fills_the_rows_of_either_side() -> None:
    drain = Measure(
        "drain, 1 worker",
        Picked(_nothing, {"drain_1": "steps_per_s", "drain_default": "steps_per_s"}),
        Picked(_nothing, {"drain_1": "drain_1pod_steps_per_s"}),
    )
    assert drain.rows == {"drain_1", "drain_default"}
