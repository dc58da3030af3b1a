"""Debug views, mounted only when ``ENVIRONMENT`` is not production."""

from __future__ import annotations

import random
import time

from aiohttp import web

from ..actors.messages import ActiveStars, CreateStar, GetStar, ReadStored
from ..keys import ACTORS, BRIGHTNESS, SETTINGS
from ..stars import Star
from .jsonio import json_response
from .openapi import PROBLEM_SCHEMA as P
from .openapi import doc
from .views import rounded, star_json

__all__ = ("active_stars", "actor", "actors", "add_test_star", "cache_stats", "table_info")


@doc("Live actors (not in production)", tag="debug", responses={200: "Any"})
async def actors(request: web.Request) -> web.Response:
    """Every live actor: kind, key, mailbox depth, processed, idle seconds, last error."""
    return json_response(request.app[ACTORS].system.snapshot())


@doc("One live actor's state (not in production)", tag="debug", responses={200: "Any", 404: P})
async def actor(request: web.Request) -> web.Response:
    """One live actor's snapshot with its state (a like counter: likes and pending batch)."""
    kind, key = request.match_info["kind"], request.match_info["key"]
    described = request.app[ACTORS].describe_actor(kind, key)
    if described is None:
        raise web.HTTPNotFound(text=f"no live actor {kind}/{key}")
    return json_response(described)


@doc("Tables and entity counts (not in production)", tag="debug", responses={200: "Any", 503: P})
async def table_info(request: web.Request) -> web.Response:
    """Tables, their entity counts (a full scan each: debugging only), where they live."""
    info = await request.app[ACTORS].table_info()
    return json_response({**info, "table_prefix": request.app[SETTINGS].storage.table_prefix})


@doc("The active computation explained (not in production)", tag="debug", responses={200: "Any", 503: P})
async def active_stars(request: web.Request) -> web.Response:
    """The active computation explained: the cut-off, and each active star's last like."""
    window = request.app[SETTINGS].redis.popularity_window
    now = time.time()
    cutoff = now - window
    stars = await request.app[ACTORS].registry.ask(ActiveStars(cutoff))
    model = request.app[BRIGHTNESS]
    return json_response(
        {
            "now": now,
            "window_seconds": window,
            "cutoff": cutoff,
            "rule": "last_liked >= cutoff (last_liked is created_at until the first like); brightest first",
            "stars": [
                {
                    "id": s.id,
                    "last_liked": s.last_liked,
                    "seconds_ago": round(now - s.last_liked, 3),
                    "brightness": rounded(model.at(s.b0, s.t0, now)),
                    "likes": s.likes,
                }
                for s in stars
            ],
        }
    )


@doc("Create a test star and read it back (not in production)", tag="debug", responses={201: "Any", 503: P})
async def add_test_star(request: web.Request) -> web.Response:
    """Create a star, then read it back through the registry and from the store."""
    registry = request.app[ACTORS].registry
    command = CreateStar(
        x=round(random.uniform(-1, 1), 4),  # noqa: S311
        y=round(random.uniform(-1, 1), 4),  # noqa: S311
        message="a test star",
        brightness=100.0,
        user_id=None,
        id=None,
    )
    created = await registry.ask(command)
    assert isinstance(created, Star), "no Idempotency-Key: the star itself"
    via_registry = await registry.ask(GetStar(created.id))
    stored = await registry.ask(ReadStored(created.id))
    model, now = request.app[BRIGHTNESS], time.time()
    return json_response(
        {
            "created": star_json(created, model, now, is_popular=False),
            "registry": star_json(via_registry, model, now, is_popular=False),
            "store": stored,
            "consistent": via_registry == created and stored["likes"] == created.likes,
        },
        status=201,
    )


@doc("Redis mirror and relay statistics (not in production)", tag="debug", responses={200: "Any"})
async def cache_stats(request: web.Request) -> web.Response:
    """The Redis mirror and event relay: hits, misses, state."""
    return json_response(request.app[ACTORS].cache_stats())
