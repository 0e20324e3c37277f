"""The `fleetq` commands that show what the fleet did lately: `throughput` (steps completed
and failed per minute) and `recovery-cycles` (the recorded recovery cycles)."""

import argparse
import json
from dataclasses import asdict, dataclass

from fleetq_client.cli_output import json_default, table
from fleetq_client.client import FleetQClient
from fleetq_client.history_calls import RecoveryCyclePage, ThroughputMinute

EXIT_OK = 0


@dataclass(frozen=True, slots=True)
class Throughput:
    """`throughput`'s result (`--json`: {"minutes": [...]})."""

    minutes: tuple[ThroughputMinute, ...]


def add_history_arguments(
    throughput: argparse.ArgumentParser, cycles: argparse.ArgumentParser
) -> None:
    """The options of `throughput` and `recovery-cycles`."""
    throughput.add_argument("--minutes", type=int, default=None, help="1 to 120 (default 60)")
    cycles.add_argument("--page-size", type=int, default=0, help="default 20, at most 100")
    cycles.add_argument("--page-token", default="", help="next_page_token of a page")


def show_throughput(client: FleetQClient, args: argparse.Namespace) -> int:
    """Print the series, oldest minute first."""
    result = Throughput(tuple(client.throughput(args.minutes)))
    if args.json:
        print(json.dumps(asdict(result), default=json_default, indent=2))
    else:
        rows = [(m.minute_ts, m.completed_steps, m.failed_steps) for m in result.minutes]
        print(table(rows, ("MINUTE", "COMPLETED", "FAILED")))
    return EXIT_OK


def show_recovery_cycles(client: FleetQClient, args: argparse.Namespace) -> int:
    """Print one page of cycles, newest first."""
    page = client.recovery_cycles(args.page_size, args.page_token)
    if args.json:
        print(json.dumps(asdict(page), default=json_default, indent=2))
    else:
        print(_page_text(page))
    return EXIT_OK


def _page_text(page: RecoveryCyclePage) -> str:
    rows = [
        (
            c.cycle_id,
            c.trigger,
            c.leader_pod_id,
            c.finished_ts,
            len(c.dead_pods),
            len(c.requeued_steps),
            len(c.terminal_steps),
        )
        for c in page.cycles
    ]
    text = table(rows, ("CYCLE", "TRIGGER", "LEADER", "FINISHED", "DEAD", "REQUEUED", "FAILED"))
    if page.next_page_token:
        text += f"\nnext page: --page-token {page.next_page_token}"
    return text
