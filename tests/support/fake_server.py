"""A stand-in for ``python -m fleetq_server serve``, to test ServerProcess without the server.

Same command-line shape; answers ``GET /health`` with the FLEETQ_* environment it was given.
Behaviour switches (environment): FAKE_SERVER_START_DELAY (seconds before listening),
FAKE_SERVER_IGNORE_SIGTERM=1 (forces the SIGKILL path), FAKE_SERVER_EXIT_CODE (exit at once).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path != "/health":
            self.send_error(404)
            return
        fleetq_env = {k: v for k, v in os.environ.items() if k.startswith("FLEETQ_")}
        body = json.dumps({"status": "healthy", "env": fleetq_env}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        print("fake-server: " + format % args, flush=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--http-host", default="0.0.0.0")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-host", default="0.0.0.0")
    parser.add_argument("--grpc-port", type=int, default=50051)
    args = parser.parse_args(argv)
    if "FAKE_SERVER_EXIT_CODE" in os.environ:
        print("fake-server: exiting at once as asked", flush=True)
        return int(os.environ["FAKE_SERVER_EXIT_CODE"])
    time.sleep(float(os.environ.get("FAKE_SERVER_START_DELAY", "0")))
    server = ThreadingHTTPServer((args.http_host, args.http_port), _Health)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if os.environ.get("FAKE_SERVER_IGNORE_SIGTERM") == "1":
            print("fake-server: ignoring SIGTERM", flush=True)
            return
        print("fake-server: SIGTERM, shutting down", flush=True)
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, on_sigterm)
    print(f"fake-server: listening on {args.http_host}:{args.http_port}", flush=True)
    server.serve_forever(poll_interval=0.05)
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
