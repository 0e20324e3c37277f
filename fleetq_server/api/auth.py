"""Bearer-token access control for the admin RPCs, when FLEETQ_ADMIN_TOKEN is set.

Which RPCs are admin is declared in the proto (`option (fleetq.v1.admin) = true`), so a new
admin RPC is protected by its own declaration. REST calls run the same wrapped handlers,
where the `Authorization` header arrives as `authorization` metadata.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterable
from typing import Any

from fleetq.v1 import fleetq_pb2
from google.protobuf.descriptor import ServiceDescriptor

from fleetq_server.api.interceptors import Behavior, UnaryInterceptor
from fleetq_server.errors import UnauthenticatedError

log = logging.getLogger(__name__)

AUTHORIZATION_KEY = "authorization"
_BEARER_SCHEME = "bearer"  # RFC 7235: the scheme is case-insensitive


def admin_methods(service: ServiceDescriptor) -> frozenset[str]:
    """Full method names (`/package.Service/Method`) of the RPCs marked admin in the proto."""
    return frozenset(
        f"/{service.full_name}/{method.name}"
        for method in service.methods
        if method.GetOptions().Extensions[fleetq_pb2.admin]
    )


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


class AdminTokenInterceptor(UnaryInterceptor):
    """Refuses the protected methods unless the call carries the admin bearer token.

    Place it after ErrorTranslationInterceptor in the chain: a refusal is raised as
    UnauthenticatedError and translated there like every other domain error. The token is
    compared in constant time and never logged.
    """

    def __init__(self, token: str, protected_methods: Iterable[str]) -> None:
        if not token:
            raise ValueError("the admin token must not be empty")
        self._token = token.encode()
        self._protected = frozenset(protected_methods)

    def _authorised(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> bool:
        presented = bearer_token(metadata)
        return presented is not None and hmac.compare_digest(presented.encode(), self._token)

    def wrap(self, method: str, inner: Behavior) -> Behavior:
        if method not in self._protected:
            return inner

        async def guarded(request: Any, context: Any) -> Any:
            if not self._authorised(context.invocation_metadata()):
                log.warning(
                    "refused %s from %s: missing or invalid admin bearer token",
                    method,
                    context.peer(),
                )
                raise UnauthenticatedError(
                    "this method requires an Authorization: Bearer <admin token> header"
                )
            return await inner(request, context)

        return guarded
