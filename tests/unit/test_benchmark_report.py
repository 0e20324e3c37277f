"""The benchmark report's arithmetic: summaries over repetitions, percentiles, target verdicts."""

from benchmarks.report import METRICS, Target, judge, percentiles, summarize
from benchmarks.scenarios import rate_figures


def test_summary_is_min_median_max_over_repetitions() -> None:
    summary = summarize({"drain_1pod_steps_per_s": [900.0, 700.0, 800.0], "unmeasured": []})

    assert summary == {"drain_1pod_steps_per_s": {"min": 700, "median": 800, "max": 900, "n": 3}}


def test_percentiles_interpolate_between_samples() -> None:
    samples = [float(n) for n in range(1, 101)]  # 1 .. 100

    p50, p99 = percentiles(samples, (50, 99))

    assert p50 == 50.5
    assert p99 == 99.01


def test_throughput_targets_need_at_least_and_latency_targets_at_most_the_bound() -> None:
    targets = [
        Target("rate", "rate", ">=", 100),
        Target("slow_rate", "slow rate", ">=", 100),
        Target("p99", "p99", "<=", 10),
        Target("missing", "missing", "<=", 1),
    ]
    summary = {
        "rate": {"median": 100.0},
        "slow_rate": {"median": 99.9},
        "p99": {"median": 10.5},
    }

    verdicts = {verdict["key"]: verdict["verdict"] for verdict in judge(targets, summary)}

    assert verdicts == {
        "rate": "met",
        "slow_rate": "not met",
        "p99": "not met",
        "missing": "not measured",
    }


def test_cpu_per_1000_steps_is_cores_over_the_rate() -> None:
    figures = rate_figures("drain_1pod", 2000.0, {"pods": 0.5, "postgres": 1.0})

    assert figures == {
        "drain_1pod_steps_per_s": 2000.0,
        "drain_1pod_cpu_pods": 0.5,
        "drain_1pod_cpu_pods_ms_per_1k": 250.0,  # 0.5 core-s per s / 2 steps per ms
        "drain_1pod_cpu_postgres": 1.0,
        "drain_1pod_cpu_postgres_ms_per_1k": 500.0,
    }


def test_every_cpu_figure_of_the_report_has_a_per_1000_steps_sibling() -> None:
    keys = [metric.key for metric in METRICS]

    cpu_keys = [key for key in keys if "_cpu_" in key and not key.endswith("_ms_per_1k")]
    assert cpu_keys
    for key in cpu_keys:
        assert keys[keys.index(key) + 1] == f"{key}_ms_per_1k"
