"""The route table, and CORS over all of it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import aiohttp_cors
from aiohttp import web
from aiohttp.typedefs import Handler

from ..keys import LIST_CACHE, METRICS, SETTINGS
from . import admin, debug, health, page, sse, stars, users
from .jsonio import json_response
from .openapi import build, doc

OPENAPI: Final[web.AppKey[dict[str, Any]]] = web.AppKey("openapi")

__all__ = ("add_route", "setup_cors", "setup_routes")

# Headers a cross-origin page may read from our answers.
EXPOSED: tuple[str, ...] = (
    "Location",
    "Link",
    "Retry-After",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
)


def add_route(app: web.Application, method: str, path: str, handler: Handler) -> None:
    """Serve ``path`` with and without a trailing slash (no redirect round trip)."""
    app.router.add_route(method, path, handler)
    if path != "/":
        app.router.add_route(method, path + "/", handler)


def setup_routes(app: web.Application) -> None:
    app[LIST_CACHE] = stars.ListCache()
    add_route(app, "GET", "/", page.index)
    add_route(app, "GET", "/static/{name}", page.static)
    add_route(app, "GET", "/config.json", page.config)
    add_route(app, "GET", "/health", health.health)
    add_route(app, "GET", "/health/liveness", health.liveness)
    add_route(app, "GET", "/health/readiness", health.readiness)
    # The fixed paths first: they would otherwise match /stars/{id}.
    add_route(app, "GET", "/stars/active", stars.active_stars)
    add_route(app, "GET", "/stars/popular", stars.popular_stars)
    add_route(app, "GET", "/stars/batch/{ids}", stars.get_stars_batch)
    add_route(app, "GET", "/stars", stars.list_stars)
    add_route(app, "POST", "/stars", stars.create_star)
    add_route(app, "GET", "/stars/{id}", stars.get_star)
    add_route(app, "DELETE", "/stars/{id}", stars.delete_star)
    add_route(app, "POST", "/stars/{id}/like", stars.like_star)
    add_route(app, "GET", "/users", users.list_users)
    add_route(app, "POST", "/users", users.create_user)
    add_route(app, "GET", "/users/{id}", users.get_user)
    add_route(app, "PUT", "/users/{id}", users.update_user)
    add_route(app, "DELETE", "/users/{id}", users.delete_user)
    add_route(app, "GET", "/users/{id}/stars", users.user_stars)
    add_route(app, "GET", "/events/stars/stream", sse.stars_stream)
    add_route(app, "GET", "/events/users/stream", sse.users_stream)
    add_route(app, "GET", "/events/stream", sse.combined_stream)
    sse.setup_sse(app)
    add_route(app, "DELETE", "/admin/stars", admin.clear_stars)
    add_route(app, "GET", "/admin/status", admin.admin_status)
    add_route(app, "GET", "/metrics", metrics)
    add_route(app, "GET", "/openapi.json", openapi_json)
    add_route(app, "GET", "/docs", docs_page)
    app.on_startup.append(_build_openapi)
    if not app[SETTINGS].is_production:
        add_route(app, "GET", "/debug/actors", debug.actors)
        add_route(app, "GET", "/debug/actors/{kind}/{key}", debug.actor)
        add_route(app, "GET", "/debug/table-info", debug.table_info)
        add_route(app, "GET", "/debug/active-stars", debug.active_stars)
        add_route(app, "POST", "/debug/add-test-star", debug.add_test_star)
        add_route(app, "GET", "/debug/cache-stats", debug.cache_stats)


@doc("This document (OpenAPI 3.1)", tag="ops", responses={200: "Any"})
async def openapi_json(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI])


async def _build_openapi(app: web.Application) -> None:
    """Once, at start-up: the routes are final by then (a route without @doc stops start-up)."""
    settings = app[SETTINGS]
    app[OPENAPI] = build(app, title=settings.server.project_name, version=settings.version)


@doc("The API documentation, for people", tag="ops", responses={200: ("An HTML page", None, "text/html")})
async def docs_page(request: web.Request) -> web.FileResponse:
    return page.static_file("docs.html")


@doc("Prometheus metrics", tag="ops", responses={200: ("Prometheus text", "Any", "text/plain")})
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text."""
    body = request.config_dict[METRICS].render()
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
