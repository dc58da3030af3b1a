"""The typed ``web.AppKey``s: every resource the app holds, in one place."""

from __future__ import annotations

import weakref
from typing import Any, Final

from aiohttp import web
from aiohttp_sse import EventSourceResponse
from aiojobs import Scheduler

from .actors import Actors
from .events import Hub
from .metrics import Metrics
from .redis import Mirror, RedisLink
from .relay import RedisRelay
from .settings import Settings
from .stars import Brightness
from .storage import TableStore

__all__ = (
    "ACTORS",
    "BRIGHTNESS",
    "HUB",
    "LIST_CACHE",
    "METRICS",
    "MIRROR",
    "REDIS",
    "RELAY",
    "SCHEDULER",
    "SETTINGS",
    "STORE",
    "STREAMS",
)

SETTINGS: Final = web.AppKey("settings", Settings)
STORE: Final = web.AppKey("store", TableStore)
SCHEDULER: Final = web.AppKey("scheduler", Scheduler)
HUB: Final = web.AppKey("hub", Hub)
ACTORS: Final = web.AppKey("actors", Actors)
BRIGHTNESS: Final = web.AppKey("brightness", Brightness)
METRICS: Final = web.AppKey("metrics", Metrics)
# The rendered whole list of stars (see starmap.http.stars.ListCache).
LIST_CACHE: Final[web.AppKey[Any]] = web.AppKey("list_cache")
# None without REDIS_HOST.
REDIS: Final[web.AppKey[RedisLink | None]] = web.AppKey("redis")
# Only with Redis.
MIRROR: Final = web.AppKey("mirror", Mirror)
RELAY: Final = web.AppKey("relay", RedisRelay)
# Open event streams (weak: a finished stream leaves by itself).
STREAMS: Final[web.AppKey[weakref.WeakSet[EventSourceResponse]]] = web.AppKey("streams")
