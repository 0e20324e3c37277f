"""Interpreter settings for a pod that serves requests for a long time.

Both settings target the tail latency of small requests (probes, status reads) while the
pod is busy, which the hostile benchmark measures as /health p99.
"""

import gc
import sys

# The default is 5 ms: a thread holding the GIL (grpc's C-core completion queue, the
# asyncpg protocol callbacks, a handler's to_thread work) can keep the event loop from
# answering a probe for that long, several times over per request. 0.5 ms bounds that
# wait; the extra switches cost little on a process that is mostly waiting on I/O.
SWITCH_INTERVAL_S = 0.0005


def tune_for_serving() -> None:
    """Move start-up objects out of the collector's reach and shorten the GIL slice.

    Call once, after the pod has started: by then the long-lived objects (protobuf
    descriptors, grpc and asyncpg state, compiled routes, the config) exist. `gc.freeze`
    puts them in the permanent generation, so a full collection no longer walks them all,
    which is what made the periodic multi-millisecond pauses. `gc.collect` first so that
    start-up garbage is freed rather than frozen.
    """
    gc.collect()
    gc.freeze()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
