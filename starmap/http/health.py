"""Health: is the process up (liveness), can it serve (readiness)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Final

from aiohttp import web

from ..errors import StorageUnavailable
from ..keys import REDIS, SETTINGS, STORE
from ..redis import REDIS_ERRORS
from .jsonio import json_response
from .openapi import doc

__all__ = ("health", "liveness", "readiness")

log = logging.getLogger(__name__)

READINESS_TIMEOUT: Final = 2.0


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@doc("Service health", tag="health", responses={200: "Health"})
async def health(request: web.Request) -> web.Response:
    settings = request.config_dict[SETTINGS]
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
    store, link = request.config_dict[STORE], request.config_dict[REDIS]
    try:
        async with asyncio.timeout(READINESS_TIMEOUT):
            await store.ping()
        storage = "healthy"
    except (TimeoutError, StorageUnavailable) as exc:
        log.warning("readiness: table store unreachable: %s", exc)
        storage = f"unhealthy: {exc or f'no answer within {READINESS_TIMEOUT:g}s'}"
    ready = storage == "healthy"
    redis = "not configured"
    if link is not None:
        with contextlib.suppress(*REDIS_ERRORS):  # a failed ping marks the link degraded
            async with asyncio.timeout(READINESS_TIMEOUT):
                await link.call(link.client.ping)
        redis = link.describe()
    body = {
        "status": "ready" if ready else "not_ready",
        "services": {"storage": storage, "redis": redis},
        "timestamp": _now(),
    }
    return json_response(body, status=200 if ready else 503)
