"""An SSE client that parses a stream the way a browser's EventSource does.

Lines end in LF, CRLF or CR; ``:`` lines are comments; a blank line dispatches
the event; ``data:`` lines join with LF; an event without data is not dispatched.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import attrs


@attrs.define
class SseEvent:
    id: str | None
    data: str
    event: str | None = None
    data_lines: int = 1

    def json(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.data)
        return parsed


@attrs.define
class SseStream:
    response: aiohttp.ClientResponse
    retry: int | None = None
    comments: int = 0
    last_id: str | None = None
    raw: bytearray = attrs.Factory(bytearray)
    _iter: AsyncIterator[SseEvent] | None = None

    async def lines(self) -> AsyncIterator[str]:
        buffer = b""
        while True:
            chunk = await self.response.content.readany()
            if not chunk:
                if buffer:
                    yield buffer.decode()
                return
            self.raw += chunk
            buffer += chunk
            while True:
                cut = min((i for i in (buffer.find(b"\r"), buffer.find(b"\n")) if i >= 0), default=-1)
                if cut < 0:
                    break
                line, rest = buffer[:cut], buffer[cut + 1 :]
                if buffer[cut : cut + 1] == b"\r":
                    if not rest and chunk:  # a CR at the end of a chunk: its LF may follow
                        more = await self.response.content.readany()
                        self.raw += more
                        rest = more
                    if rest.startswith(b"\n"):
                        rest = rest[1:]
                buffer = rest
                yield line.decode()

    async def events(self) -> AsyncIterator[SseEvent]:
        data: list[str] = []
        event_id: str | None = None
        event_type: str | None = None
        async for line in self.lines():
            if line == "":
                if data:
                    if event_id is not None:
                        self.last_id = event_id
                    yield SseEvent(event_id, "\n".join(data), event_type, len(data))
                data, event_id, event_type = [], None, None
                continue
            if line.startswith(":"):
                self.comments += 1
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "data":
                data.append(value)
            elif field == "id":
                event_id = value
            elif field == "event":
                event_type = value
            elif field == "retry" and value.isdigit():
                self.retry = int(value)

    async def take(self, count: int, timeout: float = 10.0) -> list[SseEvent]:
        """The next ``count`` events (one parser for the stream's life, so nothing is lost)."""
        if self._iter is None:
            self._iter = self.events()
        got: list[SseEvent] = []
        async with asyncio.timeout(timeout):
            while len(got) < count:
                got.append(await anext(self._iter))
        return got

    async def ended(self, timeout: float = 10.0) -> bool:
        """True when the server closes the stream (after any events still in flight)."""
        if self._iter is None:
            self._iter = self.events()
        async with asyncio.timeout(timeout):
            try:
                async for _ in self._iter:
                    pass
            except aiohttp.ClientPayloadError:
                pass  # cut mid-chunk (the server died): ended all the same, as a browser sees it
        return True


async def open_stream(
    session: aiohttp.ClientSession, url: str, *, last_event_id: str | None = None, **kwargs: Any
) -> SseStream:
    headers = dict(kwargs.pop("headers", {}))
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    response = await session.get(url, headers=headers, **kwargs)
    return SseStream(response)
