"""The `fleetq` commands that find and steer steps: list, cancel and retry."""

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from fleetq_client.calls import ListFilters
from fleetq_client.cli_output import json_default, table
from fleetq_client.client import FleetQClient
from fleetq_client.results import StepPage, StepStatus

Command = Callable[[FleetQClient, argparse.Namespace], int]
AddCommand = Callable[[str, Command, str], argparse.ArgumentParser]
ProgressLine = Callable[[StepStatus], str]
EXIT_OK = 0


def add_step_commands(add: AddCommand, time_type: Callable[[str], Any]) -> None:
    """Add list, cancel and retry through `fleetq.cli`'s `add`."""
    listing = add("list", _list, "list steps, newest first (one page; --page-token for more)")
    listing.add_argument(
        "--status",
        action="append",
        default=[],
        help="only this status (repeatable): pending, claimed, completed, failed, cancelled",
    )
    listing.add_argument("--type", default=None, help="only this step type")
    listing.add_argument("--created-after", type=time_type, default=None, help="ISO 8601")
    listing.add_argument("--created-before", type=time_type, default=None, help="ISO 8601")
    listing.add_argument("--idempotency-key", default=None, help="a client-supplied key")
    listing.add_argument("--page-size", type=int, default=None, help="default 50, at most 1000")
    listing.add_argument("--page-token", default=None, help="next_page_token of a page")
    cancel = add("cancel", _cancel, "cancel a pending step, or ask a claimed one to stop")
    cancel.add_argument("step_id")
    retry = add("retry", _retry, "put a failed or cancelled step back in the queue")
    retry.add_argument("step_id")


def _filters(args: argparse.Namespace) -> ListFilters:
    filters = ListFilters(status=args.status)
    for name in ("type", "created_after", "created_before", "idempotency_key"):
        if getattr(args, name) is not None:
            filters[name] = getattr(args, name)  # type: ignore[literal-required]
    if args.page_size is not None:
        filters["page_size"] = args.page_size
    if args.page_token is not None:
        filters["page_token"] = args.page_token
    return filters


def _list(client: FleetQClient, args: argparse.Namespace) -> int:
    page = client.list_steps(**_filters(args))
    if args.json:
        print(json.dumps(asdict(page), default=json_default, indent=2))
    else:
        print(_page_text(page))
    return EXIT_OK


def _cancel(client: FleetQClient, args: argparse.Namespace) -> int:
    _print_step(args, client.cancel(args.step_id))
    return EXIT_OK


def _retry(client: FleetQClient, args: argparse.Namespace) -> int:
    _print_step(args, client.retry(args.step_id))
    return EXIT_OK


def _print_step(args: argparse.Namespace, step: StepStatus) -> None:
    if args.json:
        print(json.dumps(asdict(step), default=json_default, indent=2))
    else:
        requested = " (cancel requested)" if step.cancel_requested and not step.finished else ""
        print(f"{step.step_id}: {step.status}{requested}")


def _page_text(page: StepPage) -> str:
    rows = [(s.step_id, s.status, s.type, s.created_ts, len(s.attempts)) for s in page.steps]
    text = table(rows, ("STEP", "STATUS", "TYPE", "CREATED", "ATTEMPTS"))
    if page.next_page_token:
        text += f"\nnext page: --page-token {page.next_page_token}"
    return text
