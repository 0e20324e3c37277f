"""Which pods are live, defined once for every statement that asks (election, heartbeat,
recovery, queue statistics and the leader's expiry timer).

A pod is live while its row is 'up' and its lease has not ended, by the database clock.
The lease is the pod's own: `expires_at`, set to now() plus its own dead-pod threshold
with every heartbeat (migration 0005). Rows written before that migration, by an older
version that declares no lease, fall back to their last heartbeat plus the reader's
threshold, so a rolling update to this version keeps every pod live.
"""


def pod_lease_end(alias: str, threshold_param: str = "$1") -> str:
    """SQL: when the pod row `alias` stops being live unless it beats again."""
    return (
        f"coalesce({alias}.expires_at,"
        f" {alias}.last_heartbeat_ts + make_interval(secs => {threshold_param}))"
    )


def pod_is_live(alias: str, threshold_param: str = "$1") -> str:
    """SQL condition: the pod row `alias` is live now."""
    return f"({alias}.status = 'up' AND {pod_lease_end(alias, threshold_param)} > now())"


def pod_is_stale(alias: str, threshold_param: str = "$1") -> str:
    """SQL condition: the pod row `alias` is still marked up but its lease has ended."""
    return f"({alias}.status = 'up' AND {pod_lease_end(alias, threshold_param)} <= now())"
