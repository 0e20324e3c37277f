"""Fixtures and data shared by the integration tests (in-process, real PostgreSQL)."""

from collections.abc import AsyncIterator

import pytest

from fleetq_server.store import Store
from fleetq_server.submission import SubmitRequest
from tests.support.databases import opened_store

# A submit the store tests vary with dataclasses.replace: no retries unless asked.
REQUEST = SubmitRequest(
    type="hello_world", args={}, metadata=None, priority=0, max_retries=0, idempotency_key=None
)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """A migrated Store on this test's own database."""
    async with opened_store(database_url) as store:
        yield store
