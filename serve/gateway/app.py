"""The public FastAPI application. Built inside the gateway replica by ``create_app``.

Routes call service methods through ``Services`` (DeploymentHandles in the cluster, fakes in
unit tests), so this module never imports Ray.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import time
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cluster.settings import Settings, reveal
from serve.common.context import (
    RequestContext,
    accept_correlation_id,
    correlation_id_var,
)
from serve.common.errors import Forbidden, ProblemError
from serve.common.health import UP, check_amqp, check_redis, failure, overall, probe
from serve.common.logs import get_logger
from serve.common.problems import problem, response_headers, status_of
from serve.gateway import messaging_metrics, openapi
from serve.gateway.bodylimit import BodyLimit
from serve.gateway.cache import ResponseCacheMiddleware, build_cache
from serve.gateway.changefeed import ReadChanges
from serve.gateway.deps import base_context, enforce_authentication
from serve.gateway.fastpath import ReserveFastPath
from serve.gateway.localcache import LocalReadCache
from serve.gateway.metrics import GatewayMetrics
from serve.gateway.nulcheck import RefuseNul
from serve.gateway.ratelimit import RateLimitMiddleware, build_limiter
from serve.gateway.routes import all_routers
from serve.gateway.services import Services

PROBLEM_JSON = "application/problem+json"
log = get_logger("gateway")

_STATUS_SLUGS = {404: ("not-found", "Not found"), 405: ("method-not-allowed", "Method not allowed"),
                 401: ("unauthorized", "Authentication required"), 403: ("forbidden", "Forbidden")}


class CorrelationAndMetrics:
    """Pure ASGI middleware: correlation id in and out, request metrics by route template."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = None
        for key, value in scope["headers"]:
            if key == b"x-correlation-id":
                header = value.decode("latin-1")
                break
        cid = accept_correlation_id(header)
        scope.setdefault("state", {})["correlation_id"] = cid
        token = correlation_id_var.set(cid)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"],
                                      (b"x-correlation-id", cid.encode("latin-1"))]
            await send(message)

        started_response = False

        async def send_tracked(message: Message) -> None:
            nonlocal started_response
            started_response = started_response or message["type"] == "http.response.start"
            await send_with_id(message)

        try:
            await self.app(scope, receive, send_tracked)
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if started_response:
                raise
            await internal_error(scope, cid)(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            self.metrics.observe(scope["method"], template, status, time.perf_counter() - started)
            correlation_id_var.reset(token)


def internal_error(scope: Scope, cid: str) -> JSONResponse:
    body = problem(500, "internal-error", "Internal server error",
                   "the server failed to handle the request; it has been logged",
                   scope["path"], correlation_id=cid)
    return JSONResponse(body, status_code=500, media_type=PROBLEM_JSON)


def problem_response(status: int, slug: str, title: str, detail: str, request: Request,
                     headers: dict[str, str] | None = None, **extensions: Any) -> JSONResponse:
    body = problem(status, slug, title, detail, str(request.url.path), **extensions)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        status, title = status_of(exc)
        return problem_response(status, exc.slug, title, exc.detail, request,
                                headers=response_headers(exc), **exc.extensions)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
                  for e in exc.errors()]
        return problem_response(422, "validation-error", "Unprocessable content",
                                "the request does not match the schema", request, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug, title = _STATUS_SLUGS.get(exc.status_code, ("http-error", "HTTP error"))
        detail = exc.detail if isinstance(exc.detail, str) else title
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"nothing is served at {request.method} {request.url.path}"
        return problem_response(exc.status_code, slug, title, detail, request,
                                headers=getattr(exc, "headers", None))


class Unlabelled:
    """The gateway's FastAPI app behind a plain ASGI callable.

    For an app with ``routes`` Serve finds each request's route template by walking the app's
    routes, only to label its own request metrics and logs. With that walk the gateway spent
    0.61-0.68 ms of CPU per cached read, without it 0.38 ms (wrk, 64 connections, on
    ``GET /api/v1/events/{id}``). The gateway's own metrics carry the template
    (``afisha_http_requests{route=...}`` on ``/actuator/prometheus``); Serve's carry the route
    prefix.
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def create_app(settings: Settings, services: Services,
               read_changes: ReadChanges | None = None) -> FastAPI:
    """``read_changes``: the replica's feed of the event service's read changes, which lets
    its read cache keep answers until they change (``serve.gateway.localcache``)."""
    app = FastAPIOffline(  # Swagger UI and ReDoc from the package: /docs works offline
        title="Afisha API",
        version="0.1.0",
        description="Events, tickets, payments and check-in. Errors are RFC 9457 "
                    "`application/problem+json`; every response carries `X-Correlation-ID`.",
    )
    metrics = GatewayMetrics()
    app.state.settings = settings
    app.state.services = services
    # Outermost last: correlation id and metrics, rate limiting, this replica's read cache,
    # the shared (Redis) response cache, then the reservation fast path. A replica that hears
    # the read changes keeps its answers until they change and has no use for the shared
    # cache, whose answers a change reaches only through the event service's own writes.
    app.add_middleware(ReserveFastPath, state=app.state, routes=app.router.routes)
    cache = build_cache(settings) if read_changes is None else None
    if cache is not None:
        app.add_middleware(ResponseCacheMiddleware, redis=cache, prefix=settings.redis_key_prefix,
                           ttl=settings.response_cache_ttl_seconds)
    if settings.local_cache_ttl_seconds:
        app.add_middleware(LocalReadCache, ttl=settings.local_cache_ttl_seconds,
                           max_ttl=settings.local_cache_max_seconds, feed=read_changes)
    app.add_middleware(RateLimitMiddleware, settings=settings, limiter=build_limiter(settings))
    app.add_middleware(BodyLimit, limit=settings.max_request_body_bytes)
    app.add_middleware(RefuseNul)
    app.add_middleware(CorrelationAndMetrics, metrics=metrics)
    install_error_handlers(app)
    openapi.install(app)
    for router in all_routers():
        app.include_router(router, dependencies=[Depends(enforce_authentication)])

    @app.get("/actuator/health", tags=["operations"], summary="Platform health")
    async def health(request: Request) -> JSONResponse:
        body = await platform_health(settings, services, base_context(request))
        if read_changes is not None:  # this replica's read cache hears the read changes
            body["services"]["gateway"]["read_changes"] = (
                "listening" if read_changes.listening else "reconnecting")
        return JSONResponse(body, status_code=200 if body["status"] == UP else 503)

    @app.get("/actuator/prometheus", tags=["operations"], summary="Prometheus metrics",
             response_class=Response)
    async def prometheus(request: Request) -> Response:
        if not metrics_allowed(settings, request):
            raise Forbidden("metrics are served to AFISHA_METRICS_NETWORKS or with "
                            "Authorization: Bearer <AFISHA_METRICS_TOKEN>",
                            slug="metrics-forbidden")
        statuses = await messaging_statuses(services, base_context(request))
        body = metrics.render() + messaging_metrics.render(statuses)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    return app


def metrics_allowed(settings: Settings, request: Request) -> bool:
    header = request.headers.get("authorization", "")
    token = reveal(settings.metrics_token)
    if token and hmac.compare_digest(header.encode(), f"Bearer {token}".encode()):
        return True
    try:
        client = ipaddress.ip_address(request.client.host if request.client else "")
    except ValueError:
        return False
    return any(client in ipaddress.ip_network(net, strict=False)
               for net in settings.metrics_networks)


async def messaging_statuses(services: Services, ctx: RequestContext) -> dict[str, Any]:
    """Each reachable service's ``messaging_status()`` (unreachable ones are left out)."""
    async def one(name: str) -> Any:
        try:
            return await asyncio.wait_for(getattr(services, name).messaging_status(ctx), 5)
        except Exception as exc:
            log.warning("no messaging status from %s: %s", name, exc)
            return None

    names = [name for name, _ in services.items()]
    results = await asyncio.gather(*(one(n) for n in names))
    return {n: r for n, r in zip(names, results, strict=True) if isinstance(r, dict)}


async def platform_health(settings: Settings, services: Services,
                          ctx: RequestContext) -> dict[str, Any]:
    async def service_health(name: str) -> dict[str, Any]:
        try:
            result: dict[str, Any] = await asyncio.wait_for(
                getattr(services, name).health(ctx), 5)
            return result
        except Exception as exc:
            return failure(exc)

    names = [name for name, _ in services.items()]
    results = await asyncio.gather(*(service_health(n) for n in names))
    service_status: dict[str, dict[str, Any]] = {"gateway": {"status": UP}}
    service_status.update(zip(names, results, strict=True))

    dependencies: dict[str, dict[str, Any]] = {}
    if settings.amqp_url:
        dependencies["broker"] = await probe(lambda: check_amqp(str(settings.amqp_url)))
    else:
        dependencies["broker"] = {"status": UP, "transport": "embedded"}
    if settings.redis_url:
        dependencies["redis"] = await probe(lambda: check_redis(str(settings.redis_url)))
    status = overall({**service_status, **dependencies})
    return {"status": status, "services": service_status, "dependencies": dependencies}
