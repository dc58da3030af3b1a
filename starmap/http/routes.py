"""The route table, and CORS over all of it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, NoReturn

import aiohttp_cors
from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp.web_urldispatcher import AbstractResource

from ..idempotency import REPLAYED_HEADER, KeysInFlight
from ..keys import FRONT, KEYS_IN_FLIGHT, LIST_CACHE, METRICS, SETTINGS
from . import admin, debug, health, page, sse, stars, users
from .jsonio import json_response
from .middleware import UNMATCHED, Front
from .openapi import build, doc

OPENAPI: Final[web.AppKey[dict[str, Any]]] = web.AppKey("openapi")

__all__ = ("setup_cors", "setup_routes")

# Headers a cross-origin page may read from our answers.
EXPOSED: tuple[str, ...] = (
    "Location",
    "Link",
    "Retry-After",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    REPLAYED_HEADER,
)


def setup_routes(app: web.Application, front: Front) -> None:
    """Every route, with and without a trailing slash (no redirect round trip), each handler
    in ``front``.

    Order matters for speed: aiohttp tries the routes under one prefix in the order
    they were added, so the hot ones (likes, one star) come first and the
    trailing-slash twins last. A fixed path comes before the ``{id}`` it would match.
    """
    app[LIST_CACHE] = stars.ListCache()
    app[KEYS_IN_FLIGHT] = KeysInFlight()
    routes: list[tuple[str, str, Handler]] = [
        ("POST", "/stars/{id}/like", stars.like_star),
        ("GET", "/stars/active", stars.active_stars),
        ("GET", "/stars/changes", stars.star_changes),
        ("GET", "/stars/popular", stars.popular_stars),
        ("GET", "/stars/batch/{ids}", stars.get_stars_batch),
        ("GET", "/stars/{id}", stars.get_star),
        ("DELETE", "/stars/{id}", stars.delete_star),
        ("GET", "/stars", stars.list_stars),
        ("POST", "/stars", stars.create_star),
        ("GET", "/events/stars/stream", sse.stars_stream),
        ("GET", "/events/users/stream", sse.users_stream),
        ("GET", "/events/stream", sse.combined_stream),
        ("GET", "/users/{id}/stars", users.user_stars),
        ("GET", "/users/{id}", users.get_user),
        ("PUT", "/users/{id}", users.update_user),
        ("DELETE", "/users/{id}", users.delete_user),
        ("GET", "/users", users.list_users),
        ("POST", "/users", users.create_user),
        ("GET", "/", page.index),
        ("GET", "/static/{name}", page.static),
        ("GET", "/config.json", page.config),
        ("GET", "/health", health.health),
        ("GET", "/health/liveness", health.liveness),
        ("GET", "/health/readiness", health.readiness),
        ("DELETE", "/admin/stars", admin.clear_stars),
        ("GET", "/admin/status", admin.admin_status),
        ("GET", "/metrics", metrics),
        ("GET", "/openapi.json", openapi_json),
        ("GET", "/docs", docs_page),
        ("GET", "/docs/assets/{name}", page.docs_asset),
    ]
    if not app[SETTINGS].is_production:
        routes += [
            ("GET", "/debug/actors", debug.actors),
            ("GET", "/debug/actors/{kind}/{key}", debug.actor),
            ("GET", "/debug/table-info", debug.table_info),
            ("GET", "/debug/active-stars", debug.active_stars),
            ("POST", "/debug/add-test-star", debug.add_test_star),
            ("GET", "/debug/cache-stats", debug.cache_stats),
        ]
    # HEAD wherever GET is: aiohttp answers it with the GET's headers and no body.
    routes += [("HEAD", path, handler) for method, path, handler in list(routes) if method == "GET"]
    # One resource per path, its methods on it (a resource per route made the router try
    # several for every request), in the order of each path's first route.
    by_path: dict[str, list[tuple[str, Handler]]] = {}
    for method, path, handler in routes:
        by_path.setdefault(path, []).append((method, handler))
    # Each route counted under its path, its twin under the same (one series per route),
    # named here once rather than looked up on every request.
    twins = [(path + "/", path, methods) for path, methods in by_path.items() if path != "/"]
    for path, counted, methods in [*((p, p, m) for p, m in by_path.items()), *twins]:
        resource = app.router.add_resource(path)
        for method, handler in methods:
            resource.add_route(method, front(handler, counted))
    sse.setup_sse(app)
    app.on_startup.append(_build_openapi)


def setup_misses(app: web.Application, front: Front) -> None:
    """The last route: any method on any path, for what no other route takes. Added after
    CORS, which has a preflight route put on every other resource and none on this one.
    At start-up, every route's handler must be in the front (``Front.check``)."""
    app.router.add_route("*", "/{tail:.*}", front(misses(app.router), UNMATCHED))
    app.on_startup.append(_check_front)


async def _check_front(app: web.Application) -> None:
    app[FRONT].check(app)


def misses(router: web.UrlDispatcher) -> Handler:
    """The handler of a request no route took: 405 (with ``Allow``) when routes on its path take
    other methods, 404 otherwise, as aiohttp's router answers without a catch-all route. Only
    the resources under the path's first segment are asked (a miss is a hostile client's
    cheapest request)."""
    by_head: dict[str, list[AbstractResource]] = {}

    def head(path: str) -> str:
        first = path.split("/", 2)[1] if path.startswith("/") else ""
        return "{" if "{" in first else first  # a variable first segment: asked for every path

    async def miss(request: web.Request) -> NoReturn:
        if not by_head:  # the routes are final once requests come
            for resource in router.resources():
                if resource is not request.match_info.route.resource:
                    by_head.setdefault(head(resource.canonical), []).append(resource)
        allowed: set[str] = set()
        for resource in [*by_head.get(head(request.rel_url.path), ()), *by_head.get("{", ())]:
            allowed |= (await resource.resolve(request))[1]
        if allowed:
            raise web.HTTPMethodNotAllowed(request.method, allowed)
        raise web.HTTPNotFound()

    return miss


@doc("This document (OpenAPI 3.1)", tag="ops", responses={200: "Any"})
async def openapi_json(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI])


async def _build_openapi(app: web.Application) -> None:
    """Once, at start-up: the routes are final by then (a route without @doc stops start-up)."""
    settings = app[SETTINGS]
    app[OPENAPI] = build(app, title=settings.server.project_name, version=settings.version)


@doc(
    "The API documentation, for people (Swagger UI: schemas, examples, try it out)",
    tag="ops",
    responses={200: ("An HTML page", None, "text/html")},
)
async def docs_page(request: web.Request) -> web.FileResponse:
    return page.static_file("docs.html")


@doc("Prometheus metrics", tag="ops", responses={200: ("Prometheus text", "Any", "text/plain")})
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text."""
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


def setup_cors(app: web.Application, origins: Sequence[str], front: Front) -> None:
    """CORS for every route (EventSource included) per ``API_CORS_ORIGINS``; its preflight
    handler in ``front`` too."""
    if not origins:
        return
    options = aiohttp_cors.ResourceOptions(  # type: ignore[no-untyped-call]
        allow_credentials=False, expose_headers=EXPOSED, allow_headers="*", allow_methods="*", max_age=600
    )
    defaults = {origin: options for origin in origins}
    adapter = _FrontedPreflights(app.router, defaults, front)
    cors = aiohttp_cors.CorsConfig(app, defaults=defaults, router_adapter=adapter)
    for route in list(app.router.routes()):
        cors.add(route)


class _FrontedPreflights(aiohttp_cors.urldispatcher_router_adapter.ResourcesUrlDispatcherRouterAdapter):
    """aiohttp-cors's adapter for the router, its preflight handler put in ``front`` like every
    other handler (request id, problems, metrics)."""

    def __init__(self, router: web.UrlDispatcher, defaults: Any, front: Front) -> None:
        super().__init__(router, defaults)
        self._front = front

    def add_preflight_handler(self, routing_entity: Any, handler: Handler, *rest: Any) -> None:
        super().add_preflight_handler(routing_entity, self._front(handler), *rest)
