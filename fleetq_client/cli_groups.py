"""Admin command groups with subcommands (`fleetq schedules ...`, `fleetq limits ...`): one
parser per action, each printing its result with cli.py's table or `--json` output."""

import argparse
from collections.abc import Callable
from typing import Any

from fleetq_client.cli_tokens import ADMIN_TOKEN_ENVS
from fleetq_client.client import FleetQClient

Show = Callable[[argparse.Namespace, Any, Callable[[Any], str]], None]
Run = Callable[[FleetQClient, argparse.Namespace], Any]


class CommandGroup:
    """`fleetq <name> <action>`: admin commands sharing cli.py's common options."""

    def __init__(
        self,
        commands: "argparse._SubParsersAction[argparse.ArgumentParser]",
        name: str,
        help: str,
        common: argparse.ArgumentParser,
        show: Show,
    ) -> None:
        group = commands.add_parser(name, help=help, description=help)
        self._actions = group.add_subparsers(
            dest=f"{name}_command", required=True, metavar="ACTION"
        )
        self._common = common
        self._show = show

    def add(
        self, name: str, run: Run, help: str, as_text: Callable[[Any], str] | None
    ) -> argparse.ArgumentParser:
        """An action running `run`; its result printed by `as_text` (None: prints nothing)."""
        show = self._show

        def command(client: FleetQClient, args: argparse.Namespace) -> int:
            result = run(client, args)
            if as_text is not None:
                show(args, result, as_text)
            return 0

        parser = self._actions.add_parser(name, parents=[self._common], help=help, description=help)
        parser.set_defaults(client_command=command, token_envs=ADMIN_TOKEN_ENVS)
        return parser
