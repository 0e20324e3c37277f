"""HTTP push targets (FLEETQ_PUSH_TARGETS), in the style of Cloud Tasks: a step of a
target's type is POSTed to its URL by the pod that claimed it, as a handler like any
other, so it counts against the pod's capacity and retries with its backoff.

The request's body is `{step_id, attempt, type, args, metadata}` with the headers
`Idempotency-Key`, `X-FleetQ-Step-Id` and `X-FleetQ-Attempt`. The answer decides:
- 2xx completes the step with the JSON body as its result (an empty body: null);
- 408, 429 and 5xx retry with backoff, no sooner than a `Retry-After` header says;
- any other status fails the step at once (the request itself is wrong);
- a timeout (the target's own) or a connection error retries with backoff.
"""

from __future__ import annotations

import json
import time
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from fleetq_server.config import PushTarget
from fleetq_server.handlers.outcomes import PermanentFailure, RetryAfter
from fleetq_server.handlers.registry import Handler, HandlerRegistry, StepContext

RETRIED_STATUSES = frozenset({408, 429})
# Characters of a refusing answer's body kept in the step's error message.
BODY_TAIL_CHARS = 500
# Connections kept open to all targets together, and idle ones per target host.
MAX_CONNECTIONS = 100
MAX_KEEPALIVE = 20


class PushFailed(Exception):
    """A target answered with a status that retries (408, 429, 5xx) and no Retry-After."""


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A Retry-After header's delay: seconds, or an HTTP date; None when absent or bad."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


def _tail(response: httpx.Response) -> str:
    return response.text[-BODY_TAIL_CHARS:].strip()


def outcome_of(response: httpx.Response) -> Any:
    """The step's result for a 2xx answer; raises for any other (see the module
    docstring for which retry)."""
    status = response.status_code
    if 200 <= status < 300:
        if not response.content.strip():
            return None
        try:
            return json.loads(response.content)
        except ValueError:
            raise PermanentFailure(f"HTTP {status}, but the body is not JSON") from None
    message = f"HTTP {status} from the push target: {_tail(response)}".rstrip(": ")
    if status in RETRIED_STATUSES or status >= 500:
        delay = retry_after_seconds(response.headers.get("retry-after"))
        if delay is not None:
            raise RetryAfter(message, delay)
        raise PushFailed(message)
    raise PermanentFailure(message)


class PushTargets:
    """Registers a handler per target, all sharing one pooled HTTP client; `aclose()`
    closes its connections."""

    def __init__(self, targets: tuple[PushTarget, ...]) -> None:
        self._targets = targets
        limits = httpx.Limits(
            max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_KEEPALIVE
        )
        self._client = httpx.AsyncClient(limits=limits, follow_redirects=False)

    def register(self, registry: HandlerRegistry) -> None:
        """A handler for each target's step type."""
        for target in self._targets:
            registry.add(target.step_type, self._handler(target))

    def _handler(self, target: PushTarget) -> Handler:
        timeout = httpx.Timeout(target.timeout)

        async def push(args: dict[str, Any], context: StepContext) -> Any:
            body = {
                "step_id": context.step_id,
                "attempt": context.attempt,
                "type": context.step_type,
                "args": args,
                "metadata": context.metadata,
            }
            headers = {
                "Idempotency-Key": context.idempotency_key,
                "X-FleetQ-Step-Id": context.step_id,
                "X-FleetQ-Attempt": str(context.attempt),
            }
            try:
                response = await self._client.post(
                    target.url, json=body, headers=headers, timeout=timeout
                )
            except httpx.TimeoutException:
                raise PushFailed(
                    f"no answer from the push target within {target.timeout:g}s"
                ) from None
            except httpx.TransportError as exc:
                raise PushFailed(f"push target unreachable: {exc!r}") from None
            return outcome_of(response)

        return push

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._client.aclose()
