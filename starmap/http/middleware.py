"""The front of every handler: a request id for the logs, every error as problem+json,
metrics, and every answer finished (304 for a held ETag, JSON compressed when it may be).

Request ids are honoured when a client (or the ingress) sends a sane one, made
otherwise. One wrapper for all of it, put around each route's handler when the routes
are added (``setup_routes``), not an aiohttp middleware: aiohttp runs a middleware
through a cached chain of partials and a middleware of its own that keeps
``current_app``, ~15,000 instructions per request under callgrind (a bare handler's
283,000 against 298,000 with one middleware that only awaits), where this wrapper is one
coroutine frame. Requests no route takes reach a last, catch-all route (``misses``),
wrapped the same way.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import re
import time
import uuid
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from ..logs import REQUEST_ID, REQUEST_ID_HEADER
from ..metrics import METHODS, Metrics
from .problems import answer_error
from .representation import finish

__all__ = ("UNMATCHED", "Front", "add_request_id_header")

log = logging.getLogger(__name__)

# nginx's "client closed request": counted apart from the answers we gave (never a 500).
CLIENT_CLOSED: Final = 499
# Anything else (CR/LF, quotes, very long) is replaced: the id goes into logs and headers.
SANE: Final = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# A made id: this process (random, so replicas differ) and a counter; no syscall per request.
_PROCESS: Final = uuid.uuid4().hex[:12]
_COUNTER: Final = itertools.count(1)
UNMATCHED: Final = "unmatched"  # the metrics' route of a request no route took


class Front:
    """What wraps each handler: give each request its id (every log line, and echoed on the
    answer), answer its errors as problems (``answer_error``), count and time it.

    The app keeps it (``FRONT``) for every route added later; start-up stops if a route's
    handler is not in it (``check``), as it does for a route without ``@doc``."""

    def __init__(self, metrics: Metrics, *, verbose_errors: bool = False) -> None:
        self._metrics = metrics
        self._verbose_errors = verbose_errors
        self._wrapped: dict[tuple[Handler, str | None], Handler] = {}

    def __call__(self, handler: Handler, route: str | None = None) -> Handler:
        """``handler`` in the front; the same handler is wrapped once (CORS checks a preflight
        handler by identity). ``route``: what the metrics count it under (the routes name their
        path); without one, the path of the resource each request matched."""
        found = self._wrapped.get((handler, route))
        if found is None:
            found = self._wrapped[handler, route] = _observed(
                handler, self._metrics, self._verbose_errors, route
            )
        return found

    def check(self, app: web.Application) -> None:
        """Refuse an app with a route whose handler is not in the front: its errors would be
        answered as text, its requests uncounted and without an id."""
        fronted = set(self._wrapped.values())
        bare = sorted(f"{r.method} {r.resource.canonical if r.resource else '?'}"
                      for r in app.router.routes() if r.handler not in fronted)  # fmt: skip
        if bare:
            raise RuntimeError(f"routes without the front (wrap them in app[FRONT]): {', '.join(bare)}")


def _observed(handler: Handler, metrics: Metrics, verbose_errors: bool, route: str | None) -> Handler:
    observe_request = metrics.observe_request

    @functools.wraps(handler)  # its @doc and name, for the OpenAPI document
    async def observe(request: web.Request) -> web.StreamResponse:
        offered = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = offered if offered and SANE.fullmatch(offered) else f"{_PROCESS}-{next(_COUNTER):x}"
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status = 500
        try:
            try:
                response = finish(request, await handler(request))
            except ConnectionResetError:  # the client hung up (mid-body, say): nobody to answer
                log.debug("%s %r: the client went away before its answer", request.method, request.path)
                response = web.Response(status=CLIENT_CLOSED)
            except Exception as exc:
                response = answer_error(request, exc, verbose=verbose_errors)
            status = response.status
            if not response.prepared:  # an event stream was prepared (with its id) by its handler
                response.headers[REQUEST_ID_HEADER] = request_id
            return response
        except web.HTTPException as exc:  # a redirect, raised again
            status = exc.status
            exc.headers[REQUEST_ID_HEADER] = request_id
            raise
        except asyncio.CancelledError:  # aiohttp cancels the handler when the client hangs up
            status = CLIENT_CLOSED
            log.debug("%s %r: the client went away before its answer", request.method, request.path)
            raise
        finally:
            REQUEST_ID.reset(token)
            if route is not None:
                counted = route
            else:  # a route added without its name (a test's probe): its resource's
                resource = request.match_info.route.resource
                counted = resource.canonical if resource is not None else UNMATCHED
            method = request.method
            observe_request(
                method if method in METHODS else "OTHER", counted, status, time.perf_counter() - started
            )

    return observe


def add_request_id_header(response: web.StreamResponse) -> None:
    """The request's id on an answer its handler prepares itself (an event stream), from
    inside the handler; the front puts it on every other answer (a plain call: a
    response-prepare signal costs every request ~3 % of its CPU)."""
    response.headers[REQUEST_ID_HEADER] = REQUEST_ID.get()
