"""Admin: ``X-API-Key`` against ``ADMIN_API_KEY``, compared in constant time."""

from __future__ import annotations

import asyncio
import hmac
import socket

from aiohttp import web

from ..actors.messages import ClearAll
from ..keys import ACTORS, SETTINGS
from .jsonio import json_response
from .openapi import PROBLEM_SCHEMA as P
from .openapi import Param, doc
from .problems import problem

API_KEY = Param("X-API-Key", "header", {"type": "string"}, "ADMIN_API_KEY")

__all__ = ("admin_status", "clear_stars")


def _refusal(request: web.Request) -> web.Response | None:
    """None when the key is right; else the answer: 503 (no key configured) or 401."""
    key = request.app[SETTINGS].server.admin_api_key
    if not key:
        return problem(503, "admin is not configured: set ADMIN_API_KEY")
    offered = request.headers.get("X-API-Key", "")
    # Header bytes that are not UTF-8 arrive as surrogate escapes: compare them as bytes.
    if not hmac.compare_digest(offered.encode("utf-8", "surrogateescape"), key.encode()):
        return problem(401, "a valid X-API-Key header is required", headers={"WWW-Authenticate": "ApiKey"})
    return None


@doc("Remove every star", tag="admin", params=(API_KEY,), responses={200: "AdminClear", 401: P, 503: P})
async def clear_stars(request: web.Request) -> web.Response:
    """Remove every star durably; one ``clear`` event tells every open map."""
    if (refused := _refusal(request)) is not None:
        return refused
    clearing = await request.app[ACTORS].registry.ask(ClearAll())
    count = await asyncio.shield(clearing)  # a client that hangs up does not stop the clear
    return json_response({"message": f"removed {count} stars", "count": count})


@doc("Admin status", tag="admin", params=(API_KEY,), responses={200: "AdminStatus", 401: P, 503: P})
async def admin_status(request: web.Request) -> web.Response:
    if (refused := _refusal(request)) is not None:
        return refused
    settings = request.app[SETTINGS]
    return json_response(
        {
            "admin_configured": True,
            "environment": settings.server.environment.value,
            "host": socket.gethostname(),
        }
    )
