"""Clients for black-box modules: a module defines ``pod`` (the server its tests talk to, e.g.
from ``module_server_factory``) and its tests ask for ``client``, ``grpc_channel`` or ``stub``.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import httpx
import pytest
from fleetq.v1 import fleetq_pb2_grpc

from tests.support.server_process import ServerProcess


@pytest.fixture
def client(pod: ServerProcess) -> Iterator[httpx.Client]:
    """httpx on the pod's REST port."""
    with httpx.Client(base_url=pod.http_url, timeout=10) as client:
        yield client


@pytest.fixture
def grpc_channel(pod: ServerProcess) -> Iterator[grpc.Channel]:
    """An insecure channel to the pod's gRPC port."""
    with grpc.insecure_channel(pod.grpc_target) as channel:
        yield channel


@pytest.fixture
def stub(grpc_channel: grpc.Channel) -> fleetq_pb2_grpc.FleetQServiceStub:
    """The generated FleetQService stub on ``grpc_channel``."""
    return fleetq_pb2_grpc.FleetQServiceStub(grpc_channel)
