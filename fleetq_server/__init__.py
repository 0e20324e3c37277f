"""FLEET-Q: a brokerless task queue service on PostgreSQL, served over gRPC and REST."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fleetq")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
