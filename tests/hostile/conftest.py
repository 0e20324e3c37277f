"""The black-box clients (``client``, ``grpc_channel``, ``stub``) for a module's ``pod``."""

from tests.blackbox.conftest import client, grpc_channel, stub

__all__ = ["client", "grpc_channel", "stub"]
