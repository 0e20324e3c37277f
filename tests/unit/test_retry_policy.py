"""Retry backoff grows exponentially, is capped, and is jittered."""

import pytest

from fleetq_server.runtime.retry_policy import RetryPolicy


def test_backoff_doubles_within_jitter_bounds() -> None:
    policy = RetryPolicy(base_s=1.0, max_s=300.0)
    for retry_count in range(6):
        ceiling = 2.0**retry_count
        delays = [policy.delay(retry_count) for _ in range(200)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(set(delays)) > 1  # jittered


def test_backoff_is_capped() -> None:
    policy = RetryPolicy(base_s=1.0, max_s=10.0)
    assert all(policy.delay(50) <= 10.0 for _ in range(100))


def test_base_above_max_is_rejected() -> None:
    with pytest.raises(ValueError, match="backoff"):
        RetryPolicy(base_s=5.0, max_s=1.0)
