"""The route table, and CORS over all of it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import aiohttp_cors
from aiohttp import web
from aiohttp.typedefs import Handler

from ..idempotency import REPLAYED_HEADER, KeysInFlight
from ..keys import KEYS_IN_FLIGHT, LIST_CACHE, METRICS, SETTINGS
from . import admin, debug, health, page, sse, stars, users
from .jsonio import json_response
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


def setup_routes(app: web.Application) -> None:
    """Every route, with and without a trailing slash (no redirect round trip).

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
    twins = [(path + "/", methods) for path, methods in by_path.items() if path != "/"]
    for path, methods in [*by_path.items(), *twins]:
        resource = app.router.add_resource(path)
        for method, handler in methods:
            resource.add_route(method, handler)
    sse.setup_sse(app)
    app.on_startup.append(_build_openapi)


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


def setup_cors(app: web.Application, origins: Sequence[str]) -> None:
    """CORS for every route (EventSource included) per ``API_CORS_ORIGINS``."""
    if not origins:
        return
    options = aiohttp_cors.ResourceOptions(  # type: ignore[no-untyped-call]
        allow_credentials=False, expose_headers=EXPOSED, allow_headers="*", allow_methods="*", max_age=600
    )
    cors = aiohttp_cors.setup(app, defaults={origin: options for origin in origins})
    for route in list(app.router.routes()):
        cors.add(route)
