"""Black-box tests of hostile input (issue 11): the black-box fixtures, shared, not copied."""

from tests.blackbox.conftest import client, grpc_channel, stub

__all__ = ["client", "grpc_channel", "stub"]
