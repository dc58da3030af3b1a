"""Server-Sent Events: the live streams, with exact resume, written by aiohttp-sse.

A stream is one of ``Streams`` (``starmap.http.streams``), a sink of the hub: its
replay (what the client missed after ``Last-Event-ID``) is written first, then live
frames. Frames are the hub's pre-serialised bytes, the same object for every stream.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Final

from aiohttp import web
from aiohttp_sse import EventSourceResponse

from ..errors import ValidationFailed
from ..events import SEP, TOPICS
from ..keys import SETTINGS, STREAMS
from ..stars import BBox
from .middleware import add_request_id_header
from .openapi import PROBLEM_SCHEMA as P
from .openapi import Param, doc
from .schemas import check_topics
from .stars import BBOX, client_identity, parse_bbox
from .streams import Stream, Streams

STREAM: Final = {200: ("An event stream", "Event", "text/event-stream")}
LAST_ID: Final = Param(
    "last_event_id", "query", {"type": "string"}, "resume after this id (or the Last-Event-ID header)"
)
TOPICS_PARAM: Final = Param(
    "topics", "query", {"type": "string", "pattern": "^(stars|users)(,(stars|users))*$"}, "comma-separated"
)

__all__ = ("combined_stream", "setup_sse", "stars_stream", "users_stream")

log = logging.getLogger(__name__)


def _retry(ms: int) -> bytes:
    return f"retry: {ms}{SEP}{SEP}".encode()


def _box(request: web.Request) -> BBox | None:
    """``?bbox=`` of a stream; a bad one is a 400 before the stream starts."""
    try:
        return parse_bbox(request.query.get("bbox"))
    except ValidationFailed as exc:
        raise web.HTTPBadRequest(text=f"bbox {exc.errors['bbox']}") from None


async def _stream(request: web.Request, topics: frozenset[str]) -> web.StreamResponse:
    box = _box(request)
    settings = request.app[SETTINGS].sse
    if request.method == "HEAD":  # what a GET would start with, and no stream
        return web.Response(content_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    streams = request.app[STREAMS]
    client = client_identity(request)
    if len(streams) >= settings.max_streams or streams.held_by(client) >= settings.max_streams_per_client:
        # 200, not 503: an EventSource gives up for good on any other status.
        busy = web.Response(body=_retry(settings.retry_ms * 5), content_type="text/event-stream")
        busy.headers["Cache-Control"] = "no-cache"
        return busy
    last_id = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    response = EventSourceResponse(ping_interval=settings.ping_interval, send_timeout=settings.send_timeout)
    stream = streams.open(topics, last_id, response, client, box)
    try:
        add_request_id_header(response)
        await response.prepare(request)
        stream.transport = request.transport
        await _pump(response, streams, stream, _retry(settings.retry_ms), settings.send_timeout)
    except (ConnectionResetError, TimeoutError):
        pass  # the client went away, or stalled and was cut off
    finally:
        streams.finish(stream)
    return response


async def _pump(
    response: EventSourceResponse, streams: Streams, stream: Stream, first: bytes, send_timeout: float
) -> None:
    """Write the retry hint, the replay, then live frames until the stream ends."""

    async def write(payload: bytes) -> None:
        async with asyncio.timeout(send_timeout):  # a stalled client is cut off, not waited on
            await response.write(payload)

    await write(first)
    replay, stream.replay = stream.replay, []
    for payload in replay:
        await write(payload)
    while not streams.join_group(stream):
        live = await stream.next()
        if live is None:
            return
        await write(live)
    # Caught up: its group writes each tick to the socket. The stream ends when it is
    # closed (dropped, shutdown: stop_streaming) or aiohttp-sse's ping finds the socket
    # dead; both end the ping task that wait() awaits. No task per subscriber.
    await response.wait()


@doc("Live star events (SSE); `bbox`: only those inside it", tag="events", params=(BBOX, LAST_ID),
     responses={**STREAM, 400: P})  # fmt: skip
async def stars_stream(request: web.Request) -> web.StreamResponse:
    return await _stream(request, frozenset({"stars"}))


@doc("Live user events (SSE)", tag="events", params=(LAST_ID,), responses=STREAM)
async def users_stream(request: web.Request) -> web.StreamResponse:
    return await _stream(request, frozenset({"users"}))


@doc(
    "Live events of several topics on one connection (SSE)",
    tag="events",
    params=(TOPICS_PARAM, BBOX, LAST_ID),
    responses={**STREAM, 400: P, 422: P},
)
async def combined_stream(request: web.Request) -> web.StreamResponse:
    """``?topics=stars,users`` (default: every topic): one connection per browser tab."""
    raw = request.query.get("topics")
    topics = check_topics(raw) if raw is not None else frozenset(TOPICS)
    return await _stream(request, topics)


async def _close_streams(app: web.Application) -> None:
    """On shutdown: every stream gets a jittered ``retry:`` and ends, so clients spread out."""
    retry_ms = app[SETTINGS].sse.retry_ms
    closed = app[STREAMS].close_all(lambda: _retry(int(retry_ms * random.uniform(1.0, 3.0))))  # noqa: S311
    if closed:
        log.info("closing %d event streams", closed)


def setup_sse(app: web.Application) -> None:
    app.on_shutdown.append(_close_streams)
