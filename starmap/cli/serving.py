"""``starmap serve`` and ``starmap dev``."""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
from pathlib import Path
from typing import Final

from ..errors import StarmapError
from .common import log, read_settings, with_logging

__all__ = ("dev", "serve")

# The cyclic garbage collector's thresholds (Python's are 700, 10, 10): a pass every 700
# net container allocations. Requests allocate many short-lived containers that reference
# counting frees anyway, so under likes the collector ran ~80 times a second, each pass a
# pause for every request in flight. Measured (ops/bench likes, back to back): with these
# and the freeze at ready, 12 % less CPU per like and p99 ~75 ms instead of ~135.
GC_THRESHOLDS: Final = (10_000, 20, 100)


def _event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (Linux, macOS): the same asyncio, a faster loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def serve(args: argparse.Namespace) -> int:
    """Run the service until SIGTERM or SIGINT."""
    from aiohttp import web

    from ..app import SERVER_ARGS, create_app
    from ..logs import AccessLogger
    from ..storage import describe_store

    settings = with_logging()
    gc.set_threshold(*GC_THRESHOLDS)
    # Start-up builds what lives as long as the process (a million stars' index: ~10M
    # objects), and the collector would walk it again and again as it grows (~6 % of that
    # start-up). Off until ready, when the freeze takes it all out of the collector's sight.
    gc.disable()
    server = settings.server
    log.info(
        "starting %s %s (%s), storage: %s",
        server.project_name,
        settings.version,
        server.environment.value,
        describe_store(settings),
    )

    def ready(banner: str) -> None:
        """aiohttp calls this once every site is bound, after start-up (indexes loaded)."""
        # What start-up built (modules, the indexes) lives as long as the process: out of
        # the collector's sight, its full passes no longer walk it (a 115 ms pause was seen).
        gc.freeze()
        gc.enable()
        log.info("ready: listening on http://%s:%d", server.host, server.port)

    loop = _event_loop()
    loop.set_debug(server.debug)  # DEBUG=true: asyncio's slow-callback and never-awaited warnings
    try:
        web.run_app(
            create_app(settings),
            host=server.host,
            port=server.port,
            shutdown_timeout=server.shutdown_timeout,
            access_log_class=AccessLogger,
            backlog=1024,  # thousands of event streams may (re)connect at once
            # Straight through to each connection's RequestHandler: aiohttp 3.14's run_app has
            # no handler_args any more, and a dict under that name made every connection fall
            # back to the defaults (a 3.75 s keep-alive) with a warning line each.
            **SERVER_ARGS,
            loop=loop,
            print=ready,
        )
    except StarmapError as exc:
        log.error("start-up failed: %s", exc)
        return 1
    return 0


def dev(args: argparse.Namespace) -> int:
    """Serve, and restart whenever a file of the package changes (watchfiles)."""
    from watchfiles import run_process

    read_settings()  # a bad setting is one clear line here, not a restart loop
    package = Path(__file__).resolve().parent.parent  # all of starmap/
    print(f"starmap dev: serving; restarting on changes under {package}", file=sys.stderr)
    run_process(package, target=f"{sys.executable} -m starmap serve", target_type="command")
    return 0
