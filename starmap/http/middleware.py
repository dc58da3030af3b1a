"""The one middleware: a request id for the logs, every error as problem+json, metrics,
and every answer finished (304 for a held ETag, JSON compressed when it may be).

Request ids are honoured when a client (or the ingress) sends a sane one, made
otherwise. One middleware for all three: aiohttp wraps every middleware in a
coroutine of its own per request, and this is the hot path of every request.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time
import uuid
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ..logs import REQUEST_ID, REQUEST_ID_KEY
from ..metrics import METHODS, Metrics
from .problems import answer_error
from .representation import finish

__all__ = ("HEADER", "add_request_id_header", "front_middleware")

log = logging.getLogger(__name__)

HEADER: Final = "X-Request-ID"
# nginx's "client closed request": counted apart from the answers we gave (never a 500).
CLIENT_CLOSED: Final = 499
# Anything else (CR/LF, quotes, very long) is replaced: the id goes into logs and headers.
SANE: Final = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# A made id: this process (random, so replicas differ) and a counter; no syscall per request.
_PROCESS: Final = uuid.uuid4().hex[:12]
_COUNTER: Final = itertools.count(1)


def front_middleware(metrics: Metrics, *, verbose_errors: bool = False) -> Middleware:
    """Give each request its id (every log line, and echoed on the answer), answer its errors
    as problems (``answer_error``), count and time it."""

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        offered = request.headers.get(HEADER, "")
        request_id = offered if offered and SANE.fullmatch(offered) else f"{_PROCESS}-{next(_COUNTER):x}"
        request[REQUEST_ID_KEY] = request_id
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
                response.headers[HEADER] = request_id
            return response
        except web.HTTPException as exc:  # a redirect, raised again
            status = exc.status
            exc.headers[HEADER] = request_id
            raise
        except asyncio.CancelledError:  # aiohttp cancels the handler when the client hangs up
            status = CLIENT_CLOSED
            log.debug("%s %r: the client went away before its answer", request.method, request.path)
            raise
        finally:
            REQUEST_ID.reset(token)
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else "unmatched"
            method = request.method if request.method in METHODS else "OTHER"  # no label explosion
            metrics.observe_request(method, route, status, time.perf_counter() - started)

    return observe


def add_request_id_header(request: web.Request, response: web.StreamResponse) -> None:
    """The request's id on an answer its handler prepares itself (an event stream); the
    middleware puts it on every other answer (a plain call: a response-prepare signal costs
    every request ~3 % of its CPU)."""
    response.headers[HEADER] = request[REQUEST_ID_KEY]
