"""A Python client for FLEET-Q over gRPC, blocking (`FleetQClient`) or asyncio
(`AsyncFleetQClient`), with typed results and one exception class per kind of failure.

    with FleetQClient("localhost:50051") as client:
        step = client.submit("hello_world", {"message": "hi"})
        print(client.wait(step.step_id, timeout=30).result)
"""

from fleetq_client.aio import AsyncFleetQClient
from fleetq_client.calls import StepSpec
from fleetq_client.client import FleetQClient
from fleetq_client.errors import (
    Conflict,
    FleetQClientError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Timeout,
    Unauthenticated,
    Unavailable,
)
from fleetq_client.history_calls import RecoveryCycle, RecoveryCyclePage, ThroughputMinute
from fleetq_client.limit_calls import TypeLimit
from fleetq_client.results import (
    CompletionOutcome,
    EligiblePod,
    Health,
    LeaderInfo,
    LeasedStep,
    LeaseExtension,
    PodCapacity,
    QueueStats,
    RecoverySummary,
    StepAttempt,
    StepError,
    StepPage,
    StepStatus,
    SubmitBatchResult,
    SubmitResult,
    WorkerInfo,
)
from fleetq_client.schedule_calls import Schedule
from fleetq_client.worker import Worker

__all__ = [
    "AsyncFleetQClient",
    "CompletionOutcome",
    "Conflict",
    "EligiblePod",
    "FleetQClient",
    "FleetQClientError",
    "Health",
    "InvalidArgument",
    "LeaderInfo",
    "LeaseExtension",
    "LeasedStep",
    "NotFound",
    "PermissionDenied",
    "PodCapacity",
    "QueueStats",
    "RecoveryCycle",
    "RecoveryCyclePage",
    "RecoverySummary",
    "Schedule",
    "StepAttempt",
    "StepError",
    "StepPage",
    "StepSpec",
    "StepStatus",
    "SubmitBatchResult",
    "SubmitResult",
    "ThroughputMinute",
    "Timeout",
    "TypeLimit",
    "Unauthenticated",
    "Unavailable",
    "Worker",
    "WorkerInfo",
]
