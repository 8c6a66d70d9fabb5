"""FastAPI dependencies of the public routes: the request context with (or without) identity.

Dependencies are ``async def``: FastAPI runs a plain ``def`` dependency in a worker thread, a
thread hop per dependency per request, which costs more than the work they do.

``create_app`` attaches ``enforce_authentication`` to every router, so a route needs an access
token unless ``serve.gateway.auth.is_public`` lists it. On a public route an invalid token is
ignored (the caller is anonymous); on any other route it is a 401.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cluster.settings import Settings
from serve.common.context import RequestContext
from serve.common.errors import Unauthorized
from serve.gateway.auth import client_ip, is_public
from serve.gateway.services import Services
from serve.users.tokens import identity_from_access_token

bearer = HTTPBearer(auto_error=False, description="Access token from /api/v1/auth/*")


def base_context(request: Request) -> RequestContext:
    """The request's context without identity (a helper, not a dependency)."""
    settings: Settings = request.app.state.settings
    return RequestContext(correlation_id=request.state.correlation_id,
                          client_ip=client_ip(request.scope, settings.forwarded_for_hops))


def _public(request: Request) -> bool:
    template = getattr(request.scope.get("route"), "path", request.url.path)
    return is_public(request.method, template)


async def optional_identity(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> RequestContext:
    """The caller's identity when a valid token is sent, anonymous otherwise.

    An invalid token is a 401, except on public routes, where it is ignored.
    """
    ctx = base_context(request)
    if credentials is None:
        return ctx
    settings: Settings = request.app.state.settings
    try:
        identity = identity_from_access_token(settings, credentials.credentials)
    except Unauthorized:
        if _public(request):
            return ctx
        raise
    return replace(ctx, identity=identity)


async def require_identity(
    ctx: Annotated[RequestContext, Depends(optional_identity)],
) -> RequestContext:
    """Protected routes: 401 problem unless a valid access token was sent."""
    if ctx.identity is None:
        raise Unauthorized("send an access token: Authorization: Bearer <token>")
    return ctx


async def enforce_authentication(
    request: Request, ctx: Annotated[RequestContext, Depends(optional_identity)],
) -> None:
    """Attached to every router: 401 unless the route is public or a valid token was sent."""
    if ctx.identity is None and not _public(request):
        raise Unauthorized("send an access token: Authorization: Bearer <token>")


async def services(request: Request) -> Services:
    result: Services = request.app.state.services
    return result


PublicContext = Annotated[RequestContext, Depends(optional_identity)]
UserContext = Annotated[RequestContext, Depends(require_identity)]
ServicesDep = Annotated[Services, Depends(services)]
