"""``create_app(settings)``: the aiohttp application and its resources."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Final

from aiohttp import web

from .errors import StorageUnavailable
from .http.problems import error_middleware
from .http.routes import setup_cors, setup_routes
from .keys import SETTINGS, STORE
from .settings import Settings
from .storage import TABLES, describe_store, open_store

__all__ = ("create_app",)

log = logging.getLogger(__name__)

STORAGE_STARTUP_DEADLINE: Final = 30.0


async def _storage(app: web.Application) -> AsyncIterator[None]:
    """Open the table store and create missing tables; retry a slow store with warnings."""
    settings = app[SETTINGS]
    store = open_store(settings)
    deadline = time.monotonic() + STORAGE_STARTUP_DEADLINE
    delay = 0.25
    try:
        while True:
            try:
                await store.ensure_tables(TABLES)
                break
            except StorageUnavailable as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("table store not reachable yet (%s); retrying in %.2gs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
    except BaseException:
        await store.close()
        raise
    log.info("table store: %s", describe_store(settings))
    app[STORE] = store
    yield
    await store.close()


def create_app(settings: Settings) -> web.Application:
    """The whole service; resources open on start-up and close in reverse on clean-up."""
    app = web.Application(client_max_size=settings.server.max_body_bytes, middlewares=[error_middleware])
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_storage)
    setup_routes(app)
    setup_cors(app, settings.server.cors_origins)
    return app
