"""`fleetq limits list|set|delete`: fleet-wide limits per step type."""

import argparse
from dataclasses import dataclass
from typing import Any

from fleetq_client.cli_groups import CommandGroup, Show
from fleetq_client.limit_calls import TypeLimit

HEADERS = ("type", "max_concurrency", "rate_per_second", "burst", "in_flight", "source")


@dataclass(frozen=True, slots=True)
class LimitList:
    """`limits list`'s result (`--json`: {"limits": [...]})."""

    limits: tuple[TypeLimit, ...]


def _row(limit: TypeLimit) -> tuple[Any, ...]:
    return tuple(getattr(limit, key) for key in HEADERS)


def add_limit_commands(
    commands: "argparse._SubParsersAction[argparse.ArgumentParser]",
    common: argparse.ArgumentParser,
    show: Show,
    table: Any,
) -> None:
    """Add `limits` and its subcommands to the `fleetq` parser's subcommands."""
    group = CommandGroup(
        commands, "limits", "fleet-wide limits per step type (admin)", common, show
    )
    group.add(
        "list",
        lambda client, args: LimitList(tuple(client.type_limits())),
        "list the limits and each type's claimed steps",
        lambda listing: table([_row(limit) for limit in listing.limits], HEADERS),
    )
    put = group.add(
        "set",
        lambda client, args: client.set_type_limit(
            args.type,
            max_concurrency=args.max_concurrency,
            rate_per_second=args.rate,
            burst=args.burst,
        ),
        "set a step type's limit (replacing the one it had)",
        lambda limit: table(zip(HEADERS, _row(limit), strict=True)),
    )
    put.add_argument("type", help="step type")
    put.add_argument("--max-concurrency", type=int, help="claimed at once, fleet-wide (>= 0)")
    put.add_argument("--rate", type=float, help="claims per second, fleet-wide (> 0)")
    put.add_argument("--burst", type=int, help="claims at once after a lull (default: the rate)")
    delete = group.add(
        "delete", lambda client, args: client.delete_type_limit(args.type), "lift a limit", None
    )
    delete.add_argument("type", help="step type")
