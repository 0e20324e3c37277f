"""Bearer-token access control: FLEETQ_API_TOKEN for every RPC but health,
FLEETQ_ADMIN_TOKEN for the admin RPCs and FLEETQ_WORKER_TOKEN for the worker RPCs.

Which RPCs are admin is declared in the proto (`option (fleetq.v1.admin) = true`), so a new
admin RPC is protected by its own declaration; a new RPC of any other kind is covered by
the API token unless it is added to the open (health) methods. REST calls run the same
wrapped handlers, where the `Authorization` header arrives as `authorization` metadata.

Which token a method accepts:
- health (GetHealth): none needed, ever (probes and load balancers carry no token);
- admin RPCs: the admin token when one is set, else the API token when one is set;
- worker RPCs (`option (fleetq.v1.worker) = true`): the worker token or the admin token
  when a worker token is set; otherwise as every other RPC;
- every other RPC: the API token or the admin token when an API token is set (the admin
  token is the stronger of the two, so it grants everything); open otherwise.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from fleetq.v1 import fleetq_pb2
from google.protobuf.descriptor import ServiceDescriptor

from fleetq_server.api.interceptors import Behavior, StreamBehavior, UnaryInterceptor
from fleetq_server.errors import UnauthenticatedError

log = logging.getLogger(__name__)

AUTHORIZATION_KEY = "authorization"
_BEARER_SCHEME = "bearer"  # RFC 7235: the scheme is case-insensitive


def _marked(service: ServiceDescriptor, option: Any) -> frozenset[str]:
    """Full method names (`/package.Service/Method`) of the RPCs with the boolean
    method option `option` set in the proto."""
    return frozenset(
        f"/{service.full_name}/{method.name}"
        for method in service.methods
        if method.GetOptions().Extensions[option]
    )


def admin_methods(service: ServiceDescriptor) -> frozenset[str]:
    """The RPCs marked admin in the proto."""
    return _marked(service, fleetq_pb2.admin)


def worker_methods(service: ServiceDescriptor) -> frozenset[str]:
    """The RPCs marked worker in the proto (leased claims and their outcomes)."""
    return _marked(service, fleetq_pb2.worker)


def open_methods(service: ServiceDescriptor) -> frozenset[str]:
    """The RPCs no token ever guards: the health check."""
    return frozenset({f"/{service.full_name}/GetHealth"})


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The token of the first `authorization: Bearer <token>` entry, if that is what it holds."""
    for key, value in metadata or ():
        if key != AUTHORIZATION_KEY:
            continue
        if not isinstance(value, str):
            return None
        scheme, _, token = value.strip().partition(" ")
        token = token.strip()
        return token if scheme.lower() == _BEARER_SCHEME and token else None
    return None


class BearerTokenInterceptor(UnaryInterceptor):
    """Refuses a guarded method unless the call carries a token it accepts (see the module
    docstring for which).

    Place it after ErrorTranslationInterceptor in the chain: a refusal is raised as
    UnauthenticatedError and translated there like every other domain error. Tokens are
    compared in constant time and never logged.
    """

    def __init__(
        self,
        *,
        admin_token: str | None,
        api_token: str | None,
        admin_methods: Iterable[str],
        open_methods: Iterable[str],
        worker_token: str | None = None,
        worker_methods: Iterable[str] = (),
    ) -> None:
        if "" in (admin_token, api_token, worker_token):
            raise ValueError("a bearer token must not be empty")
        self._admin = admin_token.encode() if admin_token is not None else None
        self._api = api_token.encode() if api_token is not None else None
        self._worker = worker_token.encode() if worker_token is not None else None
        self._admin_methods = frozenset(admin_methods)
        self._open_methods = frozenset(open_methods)
        self._worker_methods = frozenset(worker_methods)

    def accepted_tokens(self, method: str) -> tuple[bytes, ...]:
        """The tokens that open `method`; empty when it needs none."""
        if method in self._open_methods:
            return ()
        if method in self._admin_methods:
            strongest = self._admin if self._admin is not None else self._api
            return () if strongest is None else (strongest,)
        if method in self._worker_methods and self._worker is not None:
            return tuple(token for token in (self._worker, self._admin) if token is not None)
        if self._api is None:
            return ()
        return tuple(token for token in (self._api, self._admin) if token is not None)

    def protected_methods(self, methods: Iterable[str]) -> frozenset[str]:
        """Those of `methods` that need a token."""
        return frozenset(method for method in methods if self.accepted_tokens(method))

    def _check(self, method: str) -> Callable[[Any], None] | None:
        """For a guarded method, what raises UnauthenticatedError unless a call (its
        context) carries a token the method accepts; None for a method open to all."""
        accepted = self.accepted_tokens(method)
        if not accepted:
            return None
        named = ((self._admin, "admin token"), (self._worker, "worker token"))
        needed = next((name for token, name in named if token is accepted[0]), "API token")

        def check(context: Any) -> None:
            presented = bearer_token(context.invocation_metadata())
            # Every candidate is compared, so the time taken does not say which matched.
            matches = [
                presented is not None and hmac.compare_digest(presented.encode(), token)
                for token in accepted
            ]
            if not any(matches):
                log.warning(
                    "refused %s from %s: missing or invalid bearer token", method, context.peer()
                )
                raise UnauthenticatedError(
                    f"this method requires an Authorization: Bearer <{needed}> header"
                )

        return check

    def wrap(self, method: str, inner: Behavior) -> Behavior:
        check = self._check(method)
        if check is None:
            return inner

        async def guarded(request: Any, context: Any) -> Any:
            check(context)
            return await inner(request, context)

        return guarded

    def wrap_stream(self, method: str, inner: StreamBehavior) -> StreamBehavior:
        check = self._check(method)
        if check is None:
            return inner

        async def guarded(request: Any, context: Any) -> AsyncIterator[Any]:
            check(context)
            async for response in inner(request, context):
                yield response

        return guarded
