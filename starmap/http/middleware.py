"""Request ids: honoured when a client (or the ingress) sends a sane one, made otherwise."""

from __future__ import annotations

import itertools
import re
import uuid
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from ..logs import REQUEST_ID, REQUEST_ID_KEY

__all__ = ("HEADER", "add_request_id_header", "request_id_middleware")

HEADER: Final = "X-Request-ID"
# Anything else (CR/LF, quotes, very long) is replaced: the id goes into logs and headers.
SANE: Final = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# A made id: this process (random, so replicas differ) and a counter; no syscall per request.
_PROCESS: Final = uuid.uuid4().hex[:12]
_COUNTER: Final = itertools.count(1)


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Set the request's id for its log lines; the answer echoes it (see the prepare hook)."""
    offered = request.headers.get(HEADER, "")
    request_id = offered if offered and SANE.fullmatch(offered) else f"{_PROCESS}-{next(_COUNTER):x}"
    request[REQUEST_ID_KEY] = request_id
    token = REQUEST_ID.set(request_id)
    try:
        return await handler(request)
    finally:
        REQUEST_ID.reset(token)


async def add_request_id_header(request: web.Request, response: web.StreamResponse) -> None:
    """On every answer, streams and aiohttp's own errors included."""
    request_id = request.get(REQUEST_ID_KEY)
    if request_id is not None:
        response.headers[HEADER] = request_id
