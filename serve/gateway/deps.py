"""FastAPI dependencies of the public routes: the request context with (or without) identity."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cluster.settings import Settings
from serve.common.clients import Services
from serve.common.context import RequestContext
from serve.common.errors import Unauthorized
from serve.users.tokens import identity_from_access_token

bearer = HTTPBearer(auto_error=False, description="Access token from /api/v1/auth/*")


def base_context(request: Request) -> RequestContext:
    client = request.client.host if request.client else None
    return RequestContext(correlation_id=request.state.correlation_id, client_ip=client)


def optional_identity(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> RequestContext:
    """Public routes: the caller's identity when a valid token is sent, anonymous otherwise."""
    ctx = base_context(request)
    if credentials is None:
        return ctx
    settings: Settings = request.app.state.settings
    return replace(ctx, identity=identity_from_access_token(settings, credentials.credentials))


def require_identity(
    ctx: Annotated[RequestContext, Depends(optional_identity)],
) -> RequestContext:
    """Protected routes: 401 problem unless a valid access token was sent."""
    if ctx.identity is None:
        raise Unauthorized("send an access token: Authorization: Bearer <token>")
    return ctx


def services(request: Request) -> Services:
    result: Services = request.app.state.services
    return result


PublicContext = Annotated[RequestContext, Depends(optional_identity)]
UserContext = Annotated[RequestContext, Depends(require_identity)]
ServicesDep = Annotated[Services, Depends(services)]
