"""The benchmark report's arithmetic: summaries over repetitions, percentiles, target verdicts."""

from benchmarks.report import Target, judge, percentiles, summarize


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
