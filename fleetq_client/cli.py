"""The `fleetq` client commands (submit, status, watch, queue, leader, recover, health, and
`work`, a worker running a command per step; list, cancel and retry in cli_steps.py;
throughput and recovery-cycles in cli_history.py; schedules and limits in cli_schedules.py
and cli_limits.py), speaking gRPC to any pod
through FleetQClient. Tables for people by default, `--json` for scripts.

Exit codes: 0 success; 1 the step failed or was cancelled (`submit --wait`, `watch`), the
pod is unhealthy, or any
other error; 2 bad arguments (also when the server rejects them); 3 not found; 4 server
unreachable or unavailable.
"""

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

from fleetq_client.calls import SubmitOptions
from fleetq_client.channel import DEFAULT_TARGET, DEFAULT_TIMEOUT_S
from fleetq_client.cli_history import (
    add_history_arguments,
    show_recovery_cycles,
    show_throughput,
)
from fleetq_client.cli_limits import add_limit_commands
from fleetq_client.cli_output import cell, json_default, table
from fleetq_client.cli_schedules import add_schedule_commands
from fleetq_client.cli_steps import add_step_commands
from fleetq_client.cli_tokens import (
    ADMIN_TOKEN_ENV,
    ADMIN_TOKEN_ENVS,
    API_TOKEN_ENV,
    API_TOKEN_ENVS,
    WORKER_TOKEN_ENVS,
)
from fleetq_client.client import FleetQClient
from fleetq_client.command_worker import CommandWorker
from fleetq_client.errors import FleetQClientError, InvalidArgument, NotFound, Unavailable
from fleetq_client.results import (
    Health,
    LeaderInfo,
    QueueStats,
    RecoverySummary,
    StepStatus,
    SubmitResult,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_UNAVAILABLE = 4
_EXIT_FOR_ERROR: tuple[tuple[type[FleetQClientError], int], ...] = (
    (InvalidArgument, EXIT_USAGE),
    (NotFound, EXIT_NOT_FOUND),
    (Unavailable, EXIT_UNAVAILABLE),
)

Command = Callable[[FleetQClient, argparse.Namespace], int]


def add_client_commands(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the client subcommands to the `fleetq` parser's subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--target", default=DEFAULT_TARGET, help=f"pod's gRPC host:port (default {DEFAULT_TARGET})"
    )
    common.add_argument("--json", action="store_true", help="print JSON instead of tables")
    common.add_argument(
        "--token",
        default=None,
        help=f"bearer token (default: ${API_TOKEN_ENV}, or ${ADMIN_TOKEN_ENV} for the admin"
        " commands queue, leader, recover, throughput and recovery-cycles, each falling back"
        " to the other)",
    )
    common.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help=f"seconds each call may take (default {DEFAULT_TIMEOUT_S:g})",
    )

    def add(
        name: str,
        command: Command,
        help: str,
        *,
        admin: bool = False,
        token_envs: tuple[str, ...] = API_TOKEN_ENVS,
    ) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, parents=[common], help=help, description=help)
        if admin:
            token_envs = ADMIN_TOKEN_ENVS
        parser.set_defaults(client_command=command, token_envs=token_envs)
        return parser

    submit = add("submit", _submit, "submit a step")
    submit.add_argument("type", help="step type, e.g. hello_world")
    submit.add_argument(
        "--args", type=_json_object, default={}, help="handler arguments, a JSON object"
    )
    submit.add_argument("--metadata", type=_json_object, default=None, help="a JSON object")
    submit.add_argument("--priority", type=int, default=0, help="higher runs first (default 0)")
    submit.add_argument("--max-retries", type=int, default=None, help="server default: 3")
    submit.add_argument("--idempotency-key", default=None, help="de-duplicates repeated submits")
    submit.add_argument(
        "--pending-expiry",
        type=float,
        default=None,
        help="seconds it may wait pending before failing as expired (0: never;"
        " server default: FLEETQ_PENDING_EXPIRY)",
    )
    schedule = submit.add_mutually_exclusive_group()
    schedule.add_argument(
        "--run-at", type=_aware_time, default=None, help="not before this time (ISO 8601)"
    )
    schedule.add_argument(
        "--delay", type=float, default=None, help="not before this many seconds from now"
    )
    submit.add_argument("--wait", action="store_true", help="show progress until it finishes")
    submit.add_argument(
        "--wait-timeout", type=float, default=300.0, help="seconds --wait waits (default 300)"
    )
    status = add("status", _status, "show a step's state, result or error")
    status.add_argument("step_id")
    watch = add("watch", _watch, "print a step's state, then each change until it finishes")
    watch.add_argument("step_id")
    watch.add_argument(
        "--wait-timeout", type=float, default=None, help="give up after this many seconds"
    )
    add("queue", _queue, "queue statistics", admin=True)
    add("leader", _leader, "the leader election", admin=True)
    recover = add("recover", _recover, "run a recovery cycle on the leader", admin=True)
    recover.add_argument("--dry-run", action="store_true", help="report without changing anything")
    recover.add_argument("--force", action="store_true", help="run even if a cycle just ran")
    add_history_arguments(
        add("throughput", show_throughput, "steps completed and failed per minute", admin=True),
        add(
            "recovery-cycles",
            show_recovery_cycles,
            "recorded recovery cycles, newest first (one page; --page-token for more)",
            admin=True,
        ),
    )
    add("health", _health, "a pod's health (exit 1 when unhealthy)")
    add_schedule_commands(commands, common, _print, table, _json_object)
    add_limit_commands(commands, common, _print, table)
    add_step_commands(add, _aware_time)
    work = add(
        "work",
        _work,
        "run a command for each step of the given types: args on stdin, JSON result on"
        " stdout, a non-zero exit fails the step (until SIGTERM, which drains)",
        token_envs=WORKER_TOKEN_ENVS,
    )
    work.add_argument(
        "--type", dest="types", action="append", required=True, help="a step type (repeatable)"
    )
    work.add_argument("--exec", dest="command", required=True, help="the command line (sh -c)")
    work.add_argument("--concurrency", type=int, default=1, help="steps at once (default 1)")
    work.add_argument("--worker-id", default=None, help="default: hostname-pid")
    work.add_argument("--lease", type=float, default=30.0, help="lease seconds (default 30)")
    work.add_argument(
        "--grace", type=float, default=30.0, help="seconds running steps get on SIGTERM"
    )
    work.add_argument(
        "--poll-wait", type=float, default=5.0, help="long-poll seconds per claim (default 5)"
    )


def run_client_command(args: argparse.Namespace) -> int:
    """Run the parsed client subcommand; returns the exit code."""
    command: Command = args.client_command
    token = args.token if args.token is not None else _token_from_environment(args.token_envs)
    try:
        with FleetQClient(args.target, token=token, timeout=args.timeout) as client:
            return command(client, args)
    except FleetQClientError as error:
        kind = type(error).__name__
        print(f"fleetq: {kind} ({args.target}): {error.message}", file=sys.stderr)
        return next((code for cls, code in _EXIT_FOR_ERROR if isinstance(error, cls)), EXIT_FAILED)
    except KeyboardInterrupt:
        return 130


def _token_from_environment(names: Sequence[str]) -> str | None:
    """The first token set among the environment variables this command prefers."""
    for name in names:
        token = os.environ.get(name, "").strip()
        if token:
            return token
    return None


def _aware_time(raw: str) -> datetime:
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(
            "not an ISO 8601 time, e.g. 2030-01-01T12:00:00Z"
        ) from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError("needs a UTC offset, e.g. 2030-01-01T12:00:00Z")
    return moment


def _json_object(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, e.g. '{\"n\": 1}'")
    return value


# -- commands --------------------------------------------------------------------------------


def _submit(client: FleetQClient, args: argparse.Namespace) -> int:
    options = SubmitOptions(priority=args.priority)
    if args.metadata is not None:
        options["metadata"] = args.metadata
    if args.max_retries is not None:
        options["max_retries"] = args.max_retries
    if args.idempotency_key is not None:
        options["idempotency_key"] = args.idempotency_key
    if args.pending_expiry is not None:
        options["pending_expiry_seconds"] = args.pending_expiry
    if args.run_at is not None:
        options["run_at"] = args.run_at
    if args.delay is not None:
        options["delay_seconds"] = args.delay
    submitted = client.submit(args.type, args.args, **options)
    if not args.wait:
        _print(args, submitted, _submit_text)
        return EXIT_OK
    print(submitted.message, file=sys.stderr)
    step = client.wait(submitted.step_id, args.wait_timeout, on_change=_progress)
    _print(args, step, _status_text)
    return EXIT_OK if step.status == "completed" else EXIT_FAILED


def _status(client: FleetQClient, args: argparse.Namespace) -> int:
    _print(args, client.status(args.step_id), _status_text)
    return EXIT_OK


def _watch(client: FleetQClient, args: argparse.Namespace) -> int:
    """One line per state (`--json`: one JSON object per line), as the pod pushes them."""
    step: StepStatus | None = None
    for step in client.watch(args.step_id, args.wait_timeout):
        if args.json:
            print(json.dumps(asdict(step), default=json_default), flush=True)
        else:
            print(_progress_line(step), flush=True)
    return EXIT_OK if step is not None and step.status == "completed" else EXIT_FAILED


def _queue(client: FleetQClient, args: argparse.Namespace) -> int:
    _print(args, client.queue_stats(), _queue_text)
    return EXIT_OK


def _leader(client: FleetQClient, args: argparse.Namespace) -> int:
    _print(args, client.leader(), _leader_text)
    return EXIT_OK


def _recover(client: FleetQClient, args: argparse.Namespace) -> int:
    _print(args, client.recover(dry_run=args.dry_run, force=args.force), _recovery_text)
    return EXIT_OK


def _health(client: FleetQClient, args: argparse.Namespace) -> int:
    health = client.health()
    _print(args, health, _health_text)
    return EXIT_OK if health.healthy else EXIT_FAILED


# -- output ----------------------------------------------------------------------------------


def _work(client: FleetQClient, args: argparse.Namespace) -> int:
    try:
        worker = CommandWorker(
            client,
            args.types,
            args.command,
            worker_id=args.worker_id,
            concurrency=args.concurrency,
            lease_seconds=args.lease,
            wait_seconds=args.poll_wait,
            grace=args.grace,
        )
    except ValueError as error:
        print(f"fleetq work: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(f"fleetq work: {worker.worker_id} running {args.command!r}", file=sys.stderr)
    worker.run()
    print(f"fleetq work: stopped after {worker.completed} outcomes", file=sys.stderr)
    return EXIT_OK


def _print(args: argparse.Namespace, result: Any, as_text: Callable[[Any], str]) -> None:
    if args.json:
        print(json.dumps(asdict(result), default=json_default, indent=2))
    else:
        print(as_text(result))


def _progress(step: StepStatus) -> None:
    print(_progress_line(step), file=sys.stderr, flush=True)


def _progress_line(step: StepStatus) -> str:
    line = f"{step.step_id}: {step.status}"
    if step.claimed_by and step.status == "claimed":
        line += f" by {step.claimed_by}"
    if step.status == "pending" and step.run_at is not None:
        line += f", runs at {cell(step.run_at)}"
    if step.retry_count:
        line += f" (retry {step.retry_count}/{step.max_retries})"
    if step.error and not step.finished:
        line += f", last error {step.error.type}: {step.error.message}"
    if step.status == "completed":
        line += f", result {json.dumps(step.result)}"
    return line


def _submit_text(result: SubmitResult) -> str:
    return table([("step_id", result.step_id), ("status", result.status), ("", result.message)])


def _status_text(step: StepStatus) -> str:
    rows: list[tuple[str, object]] = [
        ("step_id", step.step_id),
        ("status", step.status),
        ("type", step.type),
        ("priority", step.priority),
        ("retries", f"{step.retry_count}/{step.max_retries}"),
        ("claimed_by", step.claimed_by),
        ("run_at", step.run_at),
        ("created", step.created_ts),
        ("updated", step.last_update_ts),
        ("args", step.args),
        ("metadata", step.metadata),
        ("result", json.dumps(step.result) if step.status == "completed" else None),
        ("error", f"{step.error.type}: {step.error.message}" if step.error else None),
    ]
    return table(rows)


def _queue_text(stats: QueueStats) -> str:
    counts = table(
        [
            ("pending", stats.pending_steps),
            ("claimed", stats.claimed_steps),
            ("completed", stats.completed_steps),
            ("failed", stats.failed_steps),
            ("cancelled", stats.cancelled_steps),
            ("active pods", stats.active_pods),
            ("leader", stats.current_leader),
        ]
    )
    priorities = table(
        sorted(stats.queue_depth_by_priority.items(), reverse=True), ("PRIORITY", "PENDING")
    )
    types = table(sorted(stats.steps_by_type.items()), ("TYPE", "STEPS"))
    pods = table(
        [
            (pod_id, capacity.current, capacity.max, pod_id == stats.current_leader)
            for pod_id, capacity in sorted(stats.pod_capacity.items())
        ],
        ("POD", "RUNNING", "CAPACITY", "LEADER"),
    )
    if not stats.workers:
        return "\n\n".join([counts, priorities, types, pods])
    workers = table(
        [
            (w.worker_id, ",".join(w.types), w.in_flight, w.last_seen.isoformat())
            for w in stats.workers
        ],
        ("WORKER", "TYPES", "LEASED", "LAST SEEN"),
    )
    return "\n\n".join([counts, priorities, types, pods, workers])


def _leader_text(info: LeaderInfo) -> str:
    summary = table(
        [
            ("leader", info.current_leader),
            ("since", info.leader_birth_ts),
            ("active pods", info.active_pods),
            ("checked", info.last_election_check),
        ]
    )
    pods = table(
        [(p.pod_id, p.birth_ts, p.last_heartbeat_ts, p.is_leader) for p in info.eligible_pods],
        ("POD", "BORN", "LAST HEARTBEAT", "LEADER"),
    )
    return f"{summary}\n\n{pods}"


def _recovery_text(summary: RecoverySummary) -> str:
    return table(
        [
            ("status", summary.status),
            ("message", summary.message),
            ("cycle_id", summary.cycle_id),
            ("dead pods", ", ".join(summary.dead_pods) or None),
            ("orphaned steps", summary.orphaned_steps_found),
            ("requeued", ", ".join(summary.requeued_steps) or None),
            ("failed", ", ".join(summary.terminal_steps) or None),
            ("duration", f"{summary.duration_ms} ms"),
        ]
    )


def _health_text(health: Health) -> str:
    return table(
        [
            ("pod_id", health.pod_id),
            ("status", health.status),
            ("leader", health.is_leader),
            ("running", f"{health.current_capacity}/{health.max_capacity}"),
            ("uptime", f"{health.uptime_seconds:.1f} s"),
            ("version", health.version),
        ]
    )
