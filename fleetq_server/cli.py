"""`fleetq serve`: flags mirror the FLEETQ_* environment variables (flags win). `fleetq db
status|stop`: the embedded PostgreSQL of a data directory. The client subcommands
(`fleetq submit`, `status`, ...) come from fleetq_client.cli."""

import argparse
import asyncio
import json
import sys
from dataclasses import fields

import uvloop

from fleetq_client.cli import add_client_commands, run_client_command
from fleetq_server import embedded_db
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
    _add_db_commands(commands)
    add_client_commands(commands)
    return parser


def _add_db_commands(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    db = commands.add_parser("db", help="the embedded PostgreSQL of a data directory")
    actions = db.add_subparsers(dest="db_command", required=True)
    status = actions.add_parser("status", help="is it running, and who is connected")
    status.add_argument("--json", action="store_true", help="print JSON")
    stop = actions.add_parser("stop", help="stop it (refused while clients are connected)")
    stop.add_argument("--force", action="store_true", help="stop it and disconnect its clients")
    for action in (status, stop):
        action.add_argument(
            "--data-dir", default=None, help=f"default: ${env_name('data_dir')} or the default"
        )


def _run_db_command(args: argparse.Namespace) -> int:
    """0 done (status: running); 1 an error, or clients block the stop; 3 no server running."""
    try:
        data_dir = load_settings({"data_dir": args.data_dir}).data_dir
        data_dir = data_dir or embedded_db.default_data_dir()
        if args.db_command == "stop":
            stopped = embedded_db.stop_embedded_postgres(data_dir, only_if_unused=not args.force)
            print(f"stopped the server in {data_dir}" if stopped else f"none running in {data_dir}")
            return 0 if stopped else 3
        status = embedded_db.embedded_status(data_dir)
    except ConfigError as exc:
        print(f"fleetq: configuration error: {exc}", file=sys.stderr)
        return 2
    except embedded_db.EmbeddedPostgresInUseError as exc:
        print(f"fleetq: {exc} (--force disconnects them)", file=sys.stderr)
        return 1
    except embedded_db.EmbeddedPostgresError as exc:
        print(f"fleetq: {exc}", file=sys.stderr)
        return 1
    if args.json:
        fields_ = (
            {"pid": status.pid, "url": status.url, "clients": status.clients} if status else {}
        )
        print(json.dumps({"data_dir": str(data_dir), "running": status is not None, **fields_}))
    elif status is None:
        print(f"none running in {data_dir}")
    else:
        clients = ", ".join(f"{n} x {name or '(unnamed)'}" for name, n in status.clients.items())
        print(f"running in {data_dir}: pid {status.pid}, {status.url}")
        print(f"clients: {clients or 'none'}")
    return 0 if status is not None else 3


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `fleetq` console script and `python -m fleetq_server`."""
    args = build_parser().parse_args(argv)
    if args.command == "db":
        return _run_db_command(args)
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
    except OSError as exc:  # a port already in use, say; what had started is stopped
        print(f"fleetq: cannot start: {exc}", file=sys.stderr)
        return 1
