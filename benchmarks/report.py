"""The benchmark report: statistics over repetitions, the targets of issue #6, markdown and JSON.

Every figure is summarised as min / median / max over the repetitions; targets are judged
on the median. Throughputs are also shown as a fraction of pgbench's transactions per
second on the same server, the rate the database itself sustains.
"""

from __future__ import annotations

import json
import operator
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CEILING = "pgbench_tps"


@dataclass(frozen=True)
class Metric:
    """A figure as the report shows it."""

    key: str
    scenario: str
    measure: str
    digits: int = 0
    throughput: bool = False  # compared with pgbench


@dataclass(frozen=True)
class Target:
    """A required median: at least (">=") or at most ("<=") `bound`."""

    key: str
    label: str
    op: str
    bound: float


_BASE_METRICS: tuple[Metric, ...] = (
    Metric(CEILING, "ceiling", "pgbench -N -c 8 -j 2, transactions/s", throughput=True),
    Metric("drain_1pod_steps_per_s", "drain, 1 pod", "steps/s", throughput=True),
    Metric("drain_1pod_cpu_pods", "drain, 1 pod", "CPU cores: pod", 2),
    Metric("drain_1pod_cpu_postgres", "drain, 1 pod", "CPU cores: PostgreSQL", 2),
    Metric("drain_2pod_steps_per_s", "drain, 2 pods", "steps/s", throughput=True),
    Metric("drain_2pod_cpu_pods", "drain, 2 pods", "CPU cores: pods", 2),
    Metric("drain_2pod_cpu_postgres", "drain, 2 pods", "CPU cores: PostgreSQL", 2),
    Metric(
        "drain_2pod_pgbouncer_steps_per_s",
        "drain, 2 pods via PgBouncer",
        "steps/s",
        throughput=True,
    ),
    Metric("drain_2pod_pgbouncer_cpu_pods", "drain, 2 pods via PgBouncer", "CPU cores: pods", 2),
    Metric(
        "drain_2pod_pgbouncer_cpu_postgres",
        "drain, 2 pods via PgBouncer",
        "CPU cores: PostgreSQL",
        2,
    ),
    Metric("backlog_steps_per_s", "backlog", "steps/s, whole drain", throughput=True),
    Metric("backlog_cpu_pods", "backlog", "CPU cores: pod", 2),
    Metric("backlog_cpu_postgres", "backlog", "CPU cores: PostgreSQL", 2),
    *(
        Metric(f"backlog_bucket_{number}_steps_per_s", "backlog", f"steps/s, tenth {number}")
        for number in range(1, 11)
    ),
    Metric("backlog_slowest_bucket_ratio", "backlog", "slowest tenth / first, seconds", 2),
    *(
        Metric(
            f"backlog_bucket_{number}_cpu_{role}_ms_per_1k",
            "backlog",
            f"CPU ms / 1,000 steps: {label}, tenth {number}",
        )
        for number in range(1, 11)
        for role, label in (("pods", "pod"), ("postgres", "PostgreSQL"))
    ),
    Metric("backlog_costliest_bucket_ratio", "backlog", "costliest tenth / first, CPU", 2),
    Metric("backlog_vacuums", "backlog", "VACUUMs by the leader"),
    Metric("backlog_vacuum_s", "backlog", "their seconds (PostgreSQL 18+)", 1),
    Metric("backlog_autovacuums", "backlog", "autovacuums"),
    Metric("backlog_autovacuum_s", "backlog", "their seconds (PostgreSQL 18+)", 1),
    Metric("submit_grpc_steps_per_s", "submit, gRPC", "steps/s", throughput=True),
    Metric("submit_grpc_cpu_client", "submit, gRPC", "CPU cores: clients", 2),
    Metric("submit_grpc_cpu_pods", "submit, gRPC", "CPU cores: pod", 2),
    Metric("submit_grpc_cpu_postgres", "submit, gRPC", "CPU cores: PostgreSQL", 2),
    Metric("submit_grpcio_steps_per_s", "submit, gRPC from Python", "steps/s", throughput=True),
    Metric("submit_grpcio_cpu_client", "submit, gRPC from Python", "CPU cores: clients", 2),
    Metric("submit_grpcio_cpu_pods", "submit, gRPC from Python", "CPU cores: pod", 2),
    Metric("submit_grpcio_cpu_postgres", "submit, gRPC from Python", "CPU cores: PostgreSQL", 2),
    Metric("submit_rest_steps_per_s", "submit, REST", "steps/s", throughput=True),
    Metric("submit_rest_cpu_client", "submit, REST", "CPU cores: clients", 2),
    Metric("submit_rest_cpu_pods", "submit, REST", "CPU cores: pod", 2),
    Metric("submit_rest_cpu_postgres", "submit, REST", "CPU cores: PostgreSQL", 2),
    Metric("submit_batch_steps_per_s", "batch submit, gRPC", "steps/s", throughput=True),
    Metric("submit_batch_cpu_client", "batch submit, gRPC", "CPU cores: clients", 2),
    Metric("submit_batch_cpu_pods", "batch submit, gRPC", "CPU cores: pod", 2),
    Metric("submit_batch_cpu_postgres", "batch submit, gRPC", "CPU cores: PostgreSQL", 2),
    Metric("latency_grpc_p50_ms", "latency, gRPC", "p50 ms", 2),
    Metric("latency_grpc_p95_ms", "latency, gRPC", "p95 ms", 2),
    Metric("latency_grpc_p99_ms", "latency, gRPC", "p99 ms", 2),
    Metric("latency_rest_p50_ms", "latency, REST", "p50 ms", 2),
    Metric("latency_rest_p95_ms", "latency, REST", "p95 ms", 2),
    Metric("latency_rest_p99_ms", "latency, REST", "p99 ms", 2),
    *(
        Metric(f"latency_{protocol}_{leg}_p50_ms", f"latency, {label}", f"{words} p50 ms", 2)
        for protocol, label in (("grpc", "gRPC"), ("rest", "REST"))
        for leg, words in (
            ("to_insert", "call to insert"),
            ("to_claim", "insert to claim"),
            ("to_start", "claim to handler"),
        )
    ),
    Metric("recovery_requeue_s", "recovery", "kill -9 to requeued, s", 1),
    Metric("recovery_complete_s", "recovery", "kill -9 to completed, s", 1),
    Metric("recovery_orphans", "recovery", "steps the killed pod held"),
    Metric("hostile_health_p50_ms", "hostile input", "/health p50 ms", 2),
    Metric("hostile_health_p99_ms", "hostile input", "/health p99 ms", 2),
    Metric("hostile_bodies_answered", "hostile input", "1 MiB bodies answered"),
    Metric("hostile_rss_growth_mb", "hostile input", "RSS growth, 20 x 1 MiB submits, MiB", 1),
    Metric("watch_idle_none_cpu_pods", "idle watchers", "CPU cores: pod, no stream", 3),
    Metric("watch_idle_cpu_pods", "idle watchers", "CPU cores: pod, 1,000 streams", 3),
    Metric("watch_idle_cpu_postgres", "idle watchers", "CPU cores: PostgreSQL", 3),
    Metric(
        "drain_1pod_no_watch_trigger_steps_per_s",
        "drain, 1 pod, watch trigger off",
        "steps/s",
        throughput=True,
    ),
    Metric(
        "drain_1pod_no_watch_trigger_cpu_postgres",
        "drain, 1 pod, watch trigger off",
        "CPU cores: PostgreSQL",
        2,
    ),
    Metric(
        "drain_1pod_no_throughput_ring_steps_per_s",
        "drain, 1 pod, throughput ring off",
        "steps/s",
        throughput=True,
    ),
    Metric(
        "drain_1pod_no_throughput_ring_cpu_postgres",
        "drain, 1 pod, throughput ring off",
        "CPU cores: PostgreSQL",
        2,
    ),
    Metric("list_seed_s", "ListSteps pages", "seeding the finished steps, s", 0),
    Metric("list_first_page_ms", "ListSteps pages", "first page of 50, median ms", 2),
    Metric("list_deepest_page_ms", "ListSteps pages", "deepest page of 50, median ms", 2),
    Metric("list_page_max_ms", "ListSteps pages", "slowest page at any depth, ms", 2),
    Metric("list_typed_page_median_ms", "ListSteps pages", "filtered by type, median ms", 2),
    Metric("list_typed_page_max_ms", "ListSteps pages", "filtered by type, slowest ms", 2),
    Metric(
        "remote_drain_1pod_steps_per_s",
        "remote drain, 2 workers, 1 pod",
        "steps/s",
        throughput=True,
    ),
    Metric("remote_drain_1pod_cpu_pods", "remote drain, 2 workers, 1 pod", "CPU cores: pod", 2),
    Metric(
        "remote_drain_1pod_cpu_postgres",
        "remote drain, 2 workers, 1 pod",
        "CPU cores: PostgreSQL",
        2,
    ),
    Metric(
        "remote_drain_2pod_steps_per_s",
        "remote drain, 2 workers, 2 pods",
        "steps/s",
        throughput=True,
    ),
    Metric("long_polls_idle_none_cpu_pods", "idle long polls", "CPU cores: pod, none", 3),
    Metric("long_polls_idle_cpu_pods", "idle long polls", "CPU cores: pod, 500 polls", 3),
    Metric("long_polls_idle_cpu_postgres", "idle long polls", "CPU cores: PostgreSQL", 3),
    Metric(
        "long_polls_submits_pod_ms",
        "500 long polls, single submits",
        "CPU ms per submit: pod",
        1,
    ),
    Metric(
        "long_polls_submits_postgres_ms",
        "500 long polls, single submits",
        "CPU ms per submit: PostgreSQL",
        1,
    ),
    Metric("drain_1pod_rss_idle_mb", "memory", "idle pod RSS, MiB", 1),
    Metric("drain_1pod_rss_peak_mb", "memory", "peak RSS draining alone, MiB", 1),
    Metric("drain_2pod_rss_peak_mb", "memory", "peak RSS per pod, 2 draining, MiB", 1),
)


def with_cpu_per_1k(metrics: Iterable[Metric]) -> tuple[Metric, ...]:
    """`metrics` with, after each CPU-cores figure, its CPU ms per 1,000 steps (shown
    only where the scenario reports it: those that move steps)."""
    expanded: list[Metric] = []
    for metric in metrics:
        expanded.append(metric)
        if metric.measure.startswith("CPU cores: "):
            role = metric.measure.removeprefix("CPU cores: ")
            expanded.append(
                Metric(
                    f"{metric.key}_ms_per_1k", metric.scenario, f"CPU ms / 1,000 steps: {role}", 1
                )
            )
    return tuple(expanded)


METRICS = with_cpu_per_1k(_BASE_METRICS)

TARGETS: tuple[Target, ...] = (
    Target("drain_1pod_steps_per_s", "drain, 1 pod (steps/s)", ">=", 8000),
    Target("drain_2pod_steps_per_s", "drain, 2 pods (steps/s)", ">=", 12000),
    Target("backlog_slowest_bucket_ratio", "backlog: slowest tenth / first (seconds)", "<=", 1.15),
    Target("submit_grpc_steps_per_s", "single submits, gRPC (steps/s)", ">=", 3000),
    Target("submit_rest_steps_per_s", "single submits, REST (steps/s)", ">=", 2500),
    Target("submit_batch_steps_per_s", "SubmitBatch, gRPC (steps/s)", ">=", 50000),
    Target("latency_grpc_p50_ms", "latency p50, gRPC (ms)", "<=", 3),
    Target("latency_grpc_p99_ms", "latency p99, gRPC (ms)", "<=", 10),
    Target("latency_rest_p50_ms", "latency p50, REST (ms)", "<=", 5),
    Target("latency_rest_p99_ms", "latency p99, REST (ms)", "<=", 15),
    Target("recovery_requeue_s", "requeued after kill -9 (s)", "<=", 20),
    Target("drain_1pod_rss_idle_mb", "idle pod RSS (MiB)", "<=", 80),
    Target("hostile_health_p99_ms", "/health p99 under hostile bodies (ms)", "<=", 50),
    Target("watch_idle_cpu_pods", "1,000 idle watchers on one pod (cores)", "<=", 0.05),
    Target("list_deepest_page_ms", "ListSteps page at the deepest end (ms)", "<=", 20),
    Target("list_page_max_ms", "slowest ListSteps page at any depth (ms)", "<=", 20),
    Target("remote_drain_1pod_steps_per_s", "remote drain, 2 workers (steps/s)", ">=", 10000),
    Target("long_polls_idle_cpu_pods", "500 idle long polls on one pod (cores)", "<=", 0.05),
    Target("hostile_rss_growth_mb", "RSS growth, 20 concurrent 1 MiB submits (MiB)", "<=", 100),
)

_COMPARE: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le}


def percentiles(values: Sequence[float], points: Iterable[int]) -> list[float]:
    """The given percentiles (1..99) of `values`, interpolated between samples."""
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return [cuts[point - 1] for point in points]


def summarize(samples: Mapping[str, Sequence[float]]) -> dict[str, dict[str, float]]:
    """min / median / max (and the count) of every figure over the repetitions."""
    return {
        key: {
            "min": min(values),
            "median": statistics.median(values),
            "max": max(values),
            "n": len(values),
        }
        for key, values in samples.items()
        if values
    }


def judge(
    targets: Sequence[Target], summary: Mapping[str, Mapping[str, float]]
) -> list[dict[str, Any]]:
    """Each target with the measured median and "met", "not met" or "not measured"."""
    verdicts = []
    for target in targets:
        median = summary[target.key]["median"] if target.key in summary else None
        if median is None:
            verdict = "not measured"
        else:
            verdict = "met" if _COMPARE[target.op](median, target.bound) else "not met"
        verdicts.append(
            {
                "key": target.key,
                "target": f"{target.label} {target.op} {target.bound:g}",
                "median": median,
                "verdict": verdict,
            }
        )
    return verdicts


def build(
    *,
    header: Mapping[str, Any],
    samples: Mapping[str, Sequence[float]],
) -> dict[str, Any]:
    """The whole report as JSON-able data."""
    summary = summarize(samples)
    return {
        **header,
        "samples": {key: list(values) for key, values in samples.items()},
        "summary": summary,
        "targets": judge(TARGETS, summary),
    }


def _number(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


def _results_table(summary: Mapping[str, Mapping[str, float]]) -> list[str]:
    ceiling = summary.get(CEILING, {}).get("median")
    lines = [
        "| scenario | measure | min | median | max | median / pgbench |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for metric in METRICS:
        if metric.key not in summary:
            continue
        figures = summary[metric.key]
        share = ""
        if metric.throughput and ceiling and metric.key != CEILING:
            share = f"{figures['median'] / ceiling:.2f}"
        cells = [_number(figures[stat], metric.digits) for stat in ("min", "median", "max")]
        lines.append(f"| {metric.scenario} | {metric.measure} | {' | '.join(cells)} | {share} |")
    return lines


def _targets_table(verdicts: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = ["| target | measured median | verdict |", "|---|--:|---|"]
    for verdict in verdicts:
        median = verdict["median"]
        shown = "-" if median is None else _number(median, 2 if median < 100 else 0)
        lines.append(f"| {verdict['target']} | {shown} | {verdict['verdict']} |")
    return lines


def _facts(title: str, facts: Mapping[str, Any]) -> str:
    return f"**{title}:** " + "; ".join(f"{key} {value}" for key, value in facts.items())


def markdown(report: Mapping[str, Any]) -> str:
    """The report as markdown: context, the results table and the targets table."""
    lines = [
        f"### FLEET-Q benchmark, {report['started']}",
        "",
        f"`{report['command']}`",
        "",
        _facts("Machine", report["machine"]),
        "",
        _facts("Versions", report["versions"]),
        "",
        _facts("PostgreSQL", report["postgres"]),
        "",
        "**Settings:**",
        "",
        *(f"- {key}: {value}" for key, value in report["settings"].items()),
        "",
        *_results_table(report["summary"]),
        "",
        *_targets_table(report["targets"]),
    ]
    return "\n".join(lines) + "\n"


def write(report: Mapping[str, Any], directory: Path, kind: str, text: str) -> tuple[Path, Path]:
    """Write `<kind>-<stamp>.json` (`report`) and `.md` (`text`) into `directory`; returns
    both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = directory / (f"{kind}-" + report["started"].replace(":", "").replace("-", ""))
    json_path, markdown_path = stem.with_suffix(".json"), stem.with_suffix(".md")
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    markdown_path.write_text(text)
    return json_path, markdown_path
