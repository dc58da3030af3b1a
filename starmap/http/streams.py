"""The sockets of the event streams: the hub's sinks, on this side of the HTTP line.

The hub (``starmap.events``) knows topics, ids, replay and fan-out; it hands each
event's frame to ``Sink``s. Here a stream first is a sink of its own: a bounded
queue that its handler writes through aiohttp-sse (the replay, then whatever
arrived meanwhile). Once that queue is empty the stream joins its *group*, the one
sink of every caught-up stream of the same topics: a group takes each frame once
and, on a flush tick, writes what gathered as one HTTP chunk to each member's
socket: the same bytes for every stream, one write per stream per tick, no task to
wake per subscriber. A stream that falls behind (its queue full, or its unsent
bytes past ``limit`` KiB) is dropped: its connection is aborted and the browser
reconnects and resumes.

A viewport stream (``box``) takes only the star events whose point is inside its box
(events without one, users', ``clear`` and ``resync``, always); it shares a group
with the streams of the same topics and the same box. Filtering looks at the point
the hub hands over beside each frame: nothing is encoded again per stream.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Iterable
from typing import Final, Protocol

from aiohttp_sse import EventSourceResponse

from ..events import Hub, Point
from ..stars import BBox

__all__ = ("SWEEP_EVERY", "Stream", "Streams", "chunk")

log = logging.getLogger(__name__)

SWEEP_EVERY: Final = 1.0  # seconds between looks for streams whose client went away


def chunk(payload: bytes) -> bytes:
    """Bytes as one HTTP/1.1 chunk: what goes on the wire of a chunked stream."""
    return b"%x\r\n" % len(payload) + payload + b"\r\n"


class Transport(Protocol):
    def write(self, data: bytes) -> None: ...
    def get_write_buffer_size(self) -> int: ...
    def is_closing(self) -> bool: ...
    def abort(self) -> None: ...


class Stream:
    """One open event stream: a queue until it has caught up, then a member of its group."""

    __slots__ = (
        "_queue", "box", "client", "closed", "group", "limit", "owner", "replay", "response", "skip",
        "topics", "transport",
    )  # fmt: skip

    def __init__(
        self,
        owner: Streams,
        topics: frozenset[str],
        limit: int,
        response: EventSourceResponse,
        client: str,
        box: BBox | None = None,
    ) -> None:
        self.owner = owner
        self.box = box
        self.client = client
        self.topics = topics
        self.limit = limit
        self.response = response
        self.replay: list[bytes] = []
        # Bounded by `send`; dropped when the stream joins its group (10k streams, 10k queues fewer).
        self._queue: asyncio.Queue[bytes | None] | None = asyncio.Queue()
        self.transport: Transport | None = None
        self.group: Group | None = None
        self.skip = 0  # frames pending in the group when it joined (its queue had them already)
        self.closed = False

    def wants(self, point: Point | None) -> bool:
        return inside(self.box, point)

    def send(self, payload: bytes, point: Point | None = None) -> bool:
        """The hub's sink while queued; False (and the stream dropped) when it is too far behind."""
        if self.closed or not inside(self.box, point):
            return True
        assert self._queue is not None
        if self._queue.qsize() >= self.limit:
            self.drop()
            return False
        self._queue.put_nowait(payload)
        return True

    async def next(self) -> bytes | None:
        """The next frame to write while queued; None when the stream should end."""
        assert self._queue is not None
        return await self._queue.get()

    def caught_up(self) -> bool:
        return (
            self._queue is not None and self._queue.empty() and not self.closed and self.transport is not None
        )

    def write(self, data: bytes) -> bool:
        """A group's write to the socket; False when the stream is dropped for falling behind."""
        transport = self.transport
        if self.closed or transport is None:
            return True
        if transport.is_closing():  # the client went away
            self.close()
        elif transport.get_write_buffer_size() > self.limit * 1024:
            self.drop()
            return False
        else:
            transport.write(data)
        return True

    def drop(self) -> None:
        """Cut a stream that fell behind: its pending write may never drain."""
        if self.transport is not None:
            self.transport.abort()
        self.close()
        self.owner.dropped_one(self)

    def close(self, last: bytes | None = None) -> None:
        """End the stream after ``last`` (e.g. a ``retry:`` hint); it always fits."""
        if self.closed:
            return
        self.closed = True
        if self._queue is not None:
            if last is not None:
                self._queue.put_nowait(last)
            self._queue.put_nowait(None)
            return
        if last is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.write(chunk(last))
        if self.response.is_connected():
            self.response.stop_streaming()  # its handler, waiting on response.wait(), returns


def inside(box: BBox | None, point: Point | None) -> bool:
    """Whether a stream with ``box`` takes an event at ``point`` (no box, or no point: yes)."""
    return box is None or point is None or box.contains(*point)


class Group:
    """The hub's one sink for every caught-up stream of a set of topics (and a box, if any)."""

    __slots__ = ("box", "members", "pending", "streams", "topics")

    def __init__(self, topics: frozenset[str], streams: Streams, box: BBox | None = None) -> None:
        self.topics = topics
        self.box = box
        self.streams = streams
        self.members: set[Stream] = set()
        self.pending: list[bytes] = []

    def send(self, payload: bytes, point: Point | None = None) -> bool:
        if self.members and inside(self.box, point):
            self.pending.append(payload)
            self.streams.schedule_flush()
        return True

    def flush(self) -> None:
        """One write per member: the frames since the last tick, as one chunk, framed once."""
        frames, self.pending = self.pending, []
        if not frames:
            return
        data = chunk(b"".join(frames))
        for stream in list(self.members):
            part = (
                data
                if not stream.skip
                else (chunk(b"".join(frames[stream.skip :])) if len(frames) > stream.skip else b"")
            )
            stream.skip = 0
            if part:
                stream.write(part)  # a stream too far behind drops itself


class Streams:
    """Every open event stream of this replica, its groups, and the flush tick."""

    def __init__(self, hub: Hub, *, queue_limit: int, flush_interval: float) -> None:
        self.hub = hub
        self.queue_limit = queue_limit
        # Caught-up streams get what was published since the last tick in one write, at most
        # every `flush_interval` s: 2k streams x 100 events/s is then 2k writes a tick, not
        # 200k syscalls a second. A first event after a quiet spell goes out at once.
        self.flush_interval = flush_interval
        self._open: set[Stream] = set()
        self._per_client: collections.Counter[str] = collections.Counter()
        self._groups: dict[tuple[frozenset[str], BBox | None], Group] = {}
        self._flush_handle: asyncio.Handle | None = None
        self._last_flush = 0.0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._open)

    def subscribers(self, topic: str) -> int:
        return sum(topic in s.topics for s in self._open)

    def held_by(self, client: str) -> int:
        """Streams this client has open."""
        return self._per_client[client]

    def open(
        self,
        topics: Iterable[str],
        last_event_id: str | None,
        response: EventSourceResponse,
        client: str,
        box: BBox | None = None,
    ) -> Stream:
        """A stream subscribed to the hub, its replay (what it missed, in its box) ready to write."""
        stream = Stream(self, frozenset(topics), self.queue_limit, response, client, box)
        wants = stream.wants if box is not None else None
        stream.replay = self.hub.subscribe(stream.topics, last_event_id, stream, wants)
        self._open.add(stream)
        self._per_client[client] += 1
        return stream

    def _release(self, stream: Stream) -> None:
        """Free the stream's slot (once), in the count and in its client's."""
        if stream in self._open:
            self._open.discard(stream)
            self._per_client[stream.client] -= 1
            if not self._per_client[stream.client]:
                del self._per_client[stream.client]

    async def sweep(self, every: float = SWEEP_EVERY) -> None:
        """Free the slots of streams whose client went away, within a second or so.

        A queued stream's handler waits on its queue and a caught-up one on aiohttp-sse's
        ping: neither notices a reset connection before something is written. The
        transport knows at once; one look per second at every stream costs little.
        """
        while True:
            await asyncio.sleep(every)
            for stream in list(self._open):
                if stream.transport is not None and stream.transport.is_closing():
                    self.finish(stream)

    def join_group(self, stream: Stream) -> bool:
        """Hand a caught-up stream's writes to its group (no await between check and switch)."""
        if not stream.caught_up():
            return False
        self.hub.unsubscribe(stream.topics, stream)
        key = (stream.topics, stream.box)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = Group(stream.topics, self, stream.box)
            self.hub.subscribe(stream.topics, None, group)
        stream._queue = None
        stream.group = group
        stream.skip = len(group.pending)
        group.members.add(stream)
        return True

    def finish(self, stream: Stream) -> None:
        """The stream's handler is done: it leaves the hub, its group, and this replica's count."""
        stream.close()
        self._release(stream)
        if stream.group is not None:
            stream.group.members.discard(stream)
        else:
            self.hub.unsubscribe(stream.topics, stream)

    def dropped_one(self, stream: Stream) -> None:
        self.dropped += 1
        self._release(stream)  # its slot is free now, not when its handler notices
        if stream.group is not None:
            stream.group.members.discard(stream)
        log.info("dropped an SSE subscriber that fell behind (%d events or KiB)", stream.limit)

    def schedule_flush(self) -> None:
        if self._flush_handle is not None:
            return
        loop = asyncio.get_running_loop()
        due = self._last_flush + self.flush_interval
        if loop.time() >= due:
            self._flush_handle = loop.call_soon(self.flush)
        else:
            self._flush_handle = loop.call_at(due, self.flush)

    def flush(self) -> None:
        self._flush_handle = None
        self._last_flush = asyncio.get_running_loop().time()
        for group in list(self._groups.values()):
            group.flush()

    def close_all(self, last: Callable[[], bytes]) -> int:
        """End every stream after what is pending and one frame from ``last`` (a jittered ``retry:``)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self.flush()
        streams = list(self._open)
        for stream in streams:
            stream.close(last())
        return len(streams)
