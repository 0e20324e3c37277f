"""Schemathesis fuzzes a live pod from the pod's own GET /openapi.json.

The CLI runs as a subprocess (its stable interface): examples, coverage (boundary and
schema-violating values), fuzzing, and stateful sequences along the document's links
(submit -> status -> idempotency key). Bounded and reproducible: a fixed number of
examples per operation, deterministic generation (which also keeps no example database).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import validate

from tests.conftest import ServerFactory
from tests.support.server_process import REPO_ROOT

MAX_EXAMPLES = 100
CHECKS = (
    "not_a_server_error",  # no 5xx on any input
    "status_code_conformance",  # only documented statuses
    "content_type_conformance",
    "response_schema_conformance",  # every body, errors included, matches its schema
    "response_headers_conformance",
    "negative_data_rejection",  # schema-violating requests are refused with a 4xx
    "unsupported_method",  # 405 with Allow on undocumented methods
    "allow_header_conformance",
    "contract_error_body",  # tests/fuzz/schemathesis_hooks.py
)
HOOKS = "tests.fuzz.schemathesis_hooks"
# Each operation gets its own examples, so the run grows with the API: about 9 s per
# operation on a busy 2-core machine (142 s for 15 operations, 235 s for 18, measured).
RUN_TIMEOUT_S = 600


# The worker RPCs (issue #15) are fuzzed in a run of their own, with fewer examples, so
# that each run stays within the test timeout: they need no stateful phase (their ids
# come from a claim, which no link supplies), and 30 examples cover their field rules.
WORKER_OPERATIONS = (
    "ClaimSteps",
    "CompleteStep",
    "FailStep",
    "ExtendLease",
    "CompleteSteps",
    "ReleaseStep",
)
RUNS = {
    "service": (
        ["--phases", "examples,coverage,fuzzing,stateful", "--max-examples", str(MAX_EXAMPLES)]
        + [arg for op in WORKER_OPERATIONS for arg in ("--exclude-operation-id", op)]
    ),
    "workers": (
        ["--phases", "examples,coverage,fuzzing", "--max-examples", "30"]
        + [arg for op in WORKER_OPERATIONS for arg in ("--include-operation-id", op)]
    ),
}


@pytest.mark.timeout(RUN_TIMEOUT_S + 60)
@pytest.mark.parametrize("run_name", sorted(RUNS))
def test_fuzzed_requests_get_documented_answers_and_never_a_5xx(
    server_factory: ServerFactory, tmp_path: Path, run_name: str
) -> None:
    server = server_factory(env={"FLEETQ_HEARTBEAT_INTERVAL": "0.2"})
    validate(httpx.get(f"{server.http_url}/openapi.json", timeout=10).json())  # as served
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "run", f"{server.http_url}/openapi.json"),
        *("--checks", ",".join(CHECKS)),
        *RUNS[run_name],
        "--generation-deterministic",  # also: no example database
        *("--workers", "1"),
        *("--request-timeout", "10"),
        # A watch streams until its step finishes, which a fuzzed step never does: it has
        # no request/response answer to check (tests/blackbox/test_watch_step.py covers it).
        *("--exclude-operation-id", "WatchStep"),
        "--no-color",
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": HOOKS, "PYTHONPATH": str(REPO_ROOT)}

    run = subprocess.run(
        command,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )

    report = f"{run.stdout[-30000:]}\n{run.stderr[-5000:]}"
    assert run.returncode == 0, report
    assert server.returncode is None, "the pod died under fuzzing"
    queue = httpx.get(f"{server.http_url}/admin/queue", timeout=10).json()
    created = sum(queue[key] for key in ("pending_steps", "claimed_steps", "completed_steps"))
    if run_name == "service":
        assert created + queue["failed_steps"] > 0, "fuzzing never got a step accepted"
