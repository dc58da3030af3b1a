"""``python -m starmap``: read the settings, then serve until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from aiohttp import web

from .app import create_app
from .errors import SettingsError, StarmapError
from .logs import AccessLogger, configure_logging
from .settings import load_settings
from .storage import describe_store

log = logging.getLogger("starmap")


def _event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (Linux, macOS): the same asyncio, a faster loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def main() -> int:
    """Run the service; the exit code (2: bad settings, 1: failed start)."""
    try:
        settings = load_settings(os.environ)
    except SettingsError as exc:
        print(f"starmap: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)
    server = settings.server
    log.info(
        "%s %s (%s) on http://%s:%d, storage: %s",
        server.project_name,
        settings.version,
        server.environment.value,
        server.host,
        server.port,
        describe_store(settings),
    )
    try:
        web.run_app(
            create_app(settings),
            host=server.host,
            port=server.port,
            shutdown_timeout=server.shutdown_timeout,
            access_log_class=AccessLogger,
            backlog=1024,  # thousands of event streams may (re)connect at once
            loop=_event_loop(),
            print=None,
        )
    except StarmapError as exc:
        log.error("start-up failed: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
