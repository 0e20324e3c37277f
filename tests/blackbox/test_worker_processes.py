"""Workers as separate processes against a real pod: a Node.js worker using only fetch,
`fleetq work` running a shell script, and a Python worker (fleetq_client.Worker over
gRPC) killed with SIGKILL mid-step, whose lease expires so that another worker finishes
the step."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.blackbox.test_cli_client import FLEETQ
from tests.blackbox.test_remote_workers import POD_ENV, claim_rest, status, submit
from tests.conftest import ServerFactory
from tests.support.server_process import ServerProcess
from tests.support.waiting import wait_until

WAIT_S = 30
NODE_WORKER = Path(__file__).parent / "workers" / "node_worker.mjs"


@pytest.fixture(scope="module")
def pod(module_server_factory: ServerFactory) -> ServerProcess:
    return module_server_factory(env=POD_ENV, demo_handlers=False)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Worker processes a test starts; any still running afterwards are killed."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def clean_env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("FLEETQ_")}
    return {**base, **extra}


def finished(client: httpx.Client, step_id: str) -> dict[str, object] | None:
    step = status(client, step_id)
    return step if step["status"] in ("completed", "failed") else None


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_a_node_worker_using_only_fetch_runs_steps(
    pod: ServerProcess, client: httpx.Client
) -> None:
    ids = [submit(client, "node_job", args={"n": n}) for n in range(5)]

    run = subprocess.run(
        ["node", str(NODE_WORKER)],
        env=clean_env(FLEETQ_URL=pod.http_url, COUNT="5"),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert run.returncode == 0, run.stderr
    for n, step_id in enumerate(ids):
        step = status(client, step_id)
        assert (step["status"], step["claimed_by"]) == ("completed", "node-worker")
        assert step["result"] == {"doubled": 2 * n, "attempt": 1}


def test_fleetq_work_runs_a_shell_script_per_step_and_drains_on_sigterm(
    pod: ServerProcess, client: httpx.Client, processes: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    script = tmp_path / "job.sh"
    script.write_text(
        textwrap.dedent(
            """\
            #!/bin/sh
            # args on stdin; a JSON result on stdout; "boom" fails with a message on stderr
            input=$(cat)
            case "$input" in
              *boom*) echo "it went boom" >&2; exit 3 ;;
            esac
            printf '{"got": %s, "step": "%s"}' "$input" "$FLEETQ_STEP_ID"
            """
        )
    )
    script.chmod(0o755)
    good = submit(client, "sh_job", args={"x": 1})
    bad = submit(client, "sh_job", args={"boom": True}, max_retries=0)

    worker = subprocess.Popen(
        [FLEETQ, "work", "--type", "sh_job", "--exec", str(script), "--concurrency", "2",
         "--poll-wait", "1", "--target", pod.grpc_target],
        env=clean_env(),
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    processes.append(worker)

    done = wait_until(lambda: finished(client, good), timeout=WAIT_S, description="the good step")
    assert done["result"] == {"got": {"x": 1}, "step": good}
    failed = wait_until(lambda: finished(client, bad), timeout=WAIT_S, description="the bad step")
    assert failed["status"] == "failed"
    assert failed["error"] == {"type": "CommandFailed", "message": "exit status 3: it went boom"}

    worker.send_signal(signal.SIGTERM)
    assert worker.wait(WAIT_S) == 0
    assert "stopped after 2 outcomes" in (worker.stderr.read() if worker.stderr else "")


BLOCKING_WORKER = """
import sys, threading
from fleetq_client import FleetQClient, Worker

def handle(step):
    print(step.step_id, flush=True)  # tell the test which step it holds, then hang
    threading.Event().wait()

with FleetQClient(sys.argv[1]) as client:
    Worker(client, {"kill_job": handle}, worker_id="doomed", lease_seconds=5,
           wait_seconds=1).run()
"""


def test_a_worker_killed_mid_step_loses_its_lease_to_another_worker(
    pod: ServerProcess, client: httpx.Client, processes: list[subprocess.Popen[str]]
) -> None:
    step_id = submit(client, "kill_job", max_retries=2)
    doomed = subprocess.Popen(
        [sys.executable, "-c", BLOCKING_WORKER, pod.grpc_target],
        env=clean_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    processes.append(doomed)
    assert doomed.stdout is not None
    assert doomed.stdout.readline().strip() == step_id
    assert status(client, step_id)["claimed_by"] == "doomed"

    doomed.kill()  # SIGKILL: no release, no outcome; only its lease can end its claim
    doomed.wait(10)

    [step] = wait_until(
        lambda: claim_rest(client, "kill_job", wait_seconds=1),
        timeout=WAIT_S,
        description="the expired lease to be requeued",
    )
    assert (step["step_id"], step["attempt"], step["retry_count"]) == (step_id, 2, 1)
    done = client.post(f"/steps/{step_id}:complete", json={"attempt": 2, "result": "rescued"})
    assert done.status_code == 200, done.text
    assert status(client, step_id)["result"] == "rescued"
