"""The typed ``web.AppKey``s the views use: settings, the actors facade, the hub, metrics.

Views reach state only through these: the table store, Redis, the mirror and the
relay are the app's wiring (``starmap.app``), reached through the actors facade.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from .actors import Actors
from .events import Hub
from .http.middleware import Front
from .http.streams import Streams
from .idempotency import KeysInFlight
from .metrics import Metrics
from .settings import Settings
from .stars import Brightness

__all__ = (
    "ACTORS",
    "BRIGHTNESS",
    "FRONT",
    "HUB",
    "KEYS_IN_FLIGHT",
    "LIST_CACHE",
    "METRICS",
    "SETTINGS",
    "STREAMS",
)

SETTINGS: Final = web.AppKey("settings", Settings)
HUB: Final = web.AppKey("hub", Hub)
ACTORS: Final = web.AppKey("actors", Actors)
BRIGHTNESS: Final = web.AppKey("brightness", Brightness)
METRICS: Final = web.AppKey("metrics", Metrics)
# What every handler is wrapped in (request id, problems, metrics): routes added later too.
FRONT: Final = web.AppKey("front", Front)
# The rendered whole list of stars (see starmap.http.stars.ListCache).
LIST_CACHE: Final[web.AppKey[Any]] = web.AppKey("list_cache")
# This replica's open event streams (the hub's sinks).
STREAMS: Final = web.AppKey("streams", Streams)
# The keyed writes this replica is answering now (see starmap.idempotency).
KEYS_IN_FLIGHT: Final = web.AppKey("keys_in_flight", KeysInFlight)
