"""Health: is the process up (liveness), can it serve (readiness)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Final

from aiohttp import web

from ..keys import ACTORS, SETTINGS
from .jsonio import json_response
from .openapi import doc

__all__ = ("health", "liveness", "readiness")

log = logging.getLogger(__name__)

READINESS_TIMEOUT: Final = 2.0


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@doc("Service health", tag="health", responses={200: "Health"})
async def health(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    return json_response(
        {
            "status": "healthy",
            "version": settings.version,
            "environment": settings.server.environment.value,
            "timestamp": _now(),
        }
    )


@doc("Liveness: the process answers", tag="health", responses={200: "Liveness"})
async def liveness(request: web.Request) -> web.Response:
    return json_response({"status": "alive", "timestamp": _now()})


@doc(
    "Readiness: the table store answers (Redis never gates it)",
    tag="health",
    responses={200: "Readiness", 503: ("Not ready", "Readiness", "application/json")},
)
async def readiness(request: web.Request) -> web.Response:
    """Ready when the table store answers within a short timeout; Redis never gates it."""
    actors = request.app[ACTORS]
    problem = await actors.check_store(READINESS_TIMEOUT)
    if problem is not None:
        log.warning("readiness: table store unreachable: %s", problem)
    storage = "healthy" if problem is None else f"unhealthy: {problem}"
    ready = problem is None
    redis = await actors.check_redis(READINESS_TIMEOUT)
    body = {
        "status": "ready" if ready else "not_ready",
        "services": {"storage": storage, "redis": redis},
        "timestamp": _now(),
    }
    return json_response(body, status=200 if ready else 503)
