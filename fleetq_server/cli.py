"""`fleetq serve`: flags mirror the FLEETQ_* environment variables (flags win). The client
subcommands (`fleetq submit`, `status`, ...) come from fleetq_client.cli."""

import argparse
import asyncio
import sys
from dataclasses import fields

import uvloop

from fleetq_client.cli import add_client_commands, run_client_command
from fleetq_server.config import ConfigError, Settings, env_name, load_settings
from fleetq_server.handlers import HandlerLoadError
from fleetq_server.logs import configure_logging


def build_parser() -> argparse.ArgumentParser:
    """The CLI, with one `serve` flag per setting."""
    parser = argparse.ArgumentParser(
        prog="fleetq", description="FLEET-Q task queue: pod and client"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run a pod (gRPC + REST)")
    for field in fields(Settings):
        serve.add_argument(
            f"--{field.name.replace('_', '-')}",
            dest=field.name,
            default=None,
            metavar="VALUE",
            help=f"overrides {env_name(field.name)}",
        )
    add_client_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `fleetq` console script and `python -m fleetq_server`."""
    args = build_parser().parse_args(argv)
    if args.command != "serve":
        return run_client_command(args)
    overrides = {field.name: getattr(args, field.name) for field in fields(Settings)}
    try:
        settings = load_settings(overrides)
    except ConfigError as exc:
        print(f"fleetq: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(
        settings.log_format, settings.log_level, settings.pod_id, settings.log_repeat_interval
    )
    from fleetq_server.server import serve  # heavy imports only once config is valid

    try:
        # uvloop: a faster event loop for the same asyncio code (grpc.aio, uvicorn, asyncpg).
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(serve(settings))
    except ConfigError as exc:  # settings checked at start-up, e.g. the TLS files
        print(f"fleetq: configuration error: {exc}", file=sys.stderr)
        return 2
    except HandlerLoadError as exc:
        print(f"fleetq: handler error: {exc}", file=sys.stderr)
        return 2
