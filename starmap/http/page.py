"""The star map page: static files inside the package, and the config it reads."""

from __future__ import annotations

import importlib.resources
import time
from pathlib import Path
from typing import Final

from aiohttp import web

from ..keys import SETTINGS
from .jsonio import json_response
from .openapi import PROBLEM_SCHEMA as P
from .openapi import doc

__all__ = ("STATIC", "config", "docs_asset", "index", "static", "static_file")

STATIC: Final = Path(__file__).resolve().parent.parent / "static"
# Only these are served: nothing else under the package can be reached by a path.
ASSETS: Final = {
    "app.js": "application/javascript",
    "style.css": "text/css",
    "index.html": "text/html",
    "docs.html": "text/html",
}


# Swagger UI, from the swagger-ui-py package's data (the files /docs loads, nothing else).
SWAGGER_UI: Final = Path(str(importlib.resources.files("swagger_ui") / "static"))
DOCS_ASSETS: Final = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "application/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
}


def static_file(name: str) -> web.FileResponse:
    """One of the package's assets, with its type, always revalidated."""
    return web.FileResponse(
        STATIC / name, headers={"Content-Type": f"{ASSETS[name]}; charset=utf-8", "Cache-Control": "no-cache"}
    )


@doc("The star map page", tag="page", responses={200: ("An HTML page", None, "text/html")})
async def index(request: web.Request) -> web.FileResponse:
    return static_file("index.html")


@doc("The page's script and style", tag="page", responses={200: ("A file", None, "text/plain"), 404: P})
async def static(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    if name not in ASSETS:
        raise web.HTTPNotFound(text=f"no asset {name!r}")
    return static_file(name)


@doc(
    "Swagger UI's own files, for /docs",
    tag="ops",
    responses={200: ("A file", None, "application/javascript"), 404: P},
)
async def docs_asset(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    if name not in DOCS_ASSETS:
        raise web.HTTPNotFound(text=f"no asset {name!r}")
    # The package's version pins the files: a day's caching is safe.
    headers = {"Content-Type": DOCS_ASSETS[name], "Cache-Control": "public, max-age=86400"}
    return web.FileResponse(SWAGGER_UI / name, headers=headers)


@doc("What the page needs to draw as the server computes", tag="page", responses={200: "Any"})
async def config(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    stars = settings.stars
    return json_response(
        {
            "brightness_half_life": stars.brightness_half_life,
            "like_boost": stars.like_boost,
            "min_brightness": stars.min_brightness,
            "popularity_threshold": settings.redis.popularity_threshold,
            "popularity_window": settings.redis.popularity_window,
            "rate_limit": {"times": settings.rate_limit.times, "seconds": settings.rate_limit.seconds},
            # The server's clock (epoch seconds): a client fades `base_brightness` from
            # `last_liked` by this clock, not its own, however far its own is off.
            "server_time": time.time(),
        },
        headers={"Cache-Control": "no-store"},
    )
