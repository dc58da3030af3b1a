"""The typed ``web.AppKey``s: every resource the app holds, in one place."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from .settings import Settings
from .storage import TableStore

__all__ = ("SETTINGS", "STORE")

SETTINGS: Final = web.AppKey("settings", Settings)
STORE: Final = web.AppKey("store", TableStore)
