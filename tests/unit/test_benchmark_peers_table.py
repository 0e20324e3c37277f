"""The arithmetic of `make bench-peers`' table: medians per side, FLEET-Q / PgQueuer, and
which rows FLEET-Q loses (higher is better for rates, lower for latencies)."""

from benchmarks.peers.table import Row, compare, cpu_markdown, markdown

RATE = Row("drain", "drain", "/s")
LATENCY = Row("p50", "p50", " ms", 2)


def test_each_side_is_its_median_and_the_ratio_is_fleetq_over_pgqueuer() -> None:
    (line,) = compare([RATE], {"drain": [100.0, 400.0, 200.0]}, {"drain": [500.0, 300.0, 900.0]})

    assert (line["pgqueuer"], line["fleetq"], line["ratio"]) == (200.0, 500.0, 2.5)
    assert line["fleetq_at_least_as_good"] is True


def test_a_higher_latency_ratio_is_a_loss_and_is_shown_bold() -> None:
    compared = compare(
        [RATE, LATENCY], {"drain": [200.0], "p50": [2.0]}, {"drain": [100.0], "p50": [3.0]}
    )

    assert [line["fleetq_at_least_as_good"] for line in compared] == [False, False]
    table = markdown([RATE, LATENCY], compared)
    assert table[2] == "| drain | 200/s | 100/s | **0.50** |"
    assert table[3] == "| p50 | 2.00 ms | 3.00 ms | **1.50** |"


def test_a_side_without_samples_leaves_the_row_unjudged() -> None:
    (line,) = compare([LATENCY], {}, {"p50": [1.0]})

    assert (line["pgqueuer"], line["ratio"], line["fleetq_at_least_as_good"]) == (None, None, None)
    assert markdown([LATENCY], [line])[2] == "| p50 | - | 1.00 ms | - |"


def test_the_cpu_table_shows_each_roles_median_per_1000_steps_of_rows_that_have_them() -> None:
    figures = {
        "drain:drain_1pod_cpu_pods_ms_per_1k": [90.0, 110.0, 100.0],
        "drain:drain_1pod_cpu_postgres_ms_per_1k": [200.0],
        "drain:drain_1pod_cpu_pods": [0.5],
        "p50:latency_fleetq_p95_ms": [4.0],
    }

    assert cpu_markdown([RATE, LATENCY], figures)[2:] == ["| drain | 100 ms | 200 ms | - |"]
