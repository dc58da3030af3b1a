"""The route table, and CORS over all of it."""

from __future__ import annotations

from collections.abc import Sequence

import aiohttp_cors
from aiohttp import web
from aiohttp.typedefs import Handler

from . import health, sse, stars, users

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
