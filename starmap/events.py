"""The broadcast hub: actors publish events, SSE streams subscribe.

Every mutation becomes one ``Event`` ``{"topic", "type", "data"}`` with an id
from one sequence shared by all topics, so any id resumes any stream. Ids are
Redis Stream ids (``<ms>-<seq>``), made by Redis when replicas share it and the
same way locally otherwise; an id from before this process started (or older
than the buffers) cannot be replayed exactly and gets a ``resync``.

Each event is serialised once, at publish, to the exact bytes of an SSE frame;
the same bytes go to every subscriber. Each topic keeps a ring buffer of recent
events for replay. A subscriber has a bounded queue; one that falls behind is
dropped (its stream closes; the browser reconnects and resumes) and never slows
the publisher or the other subscribers.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Final, Protocol

import attrs
import orjson

from .settings import SseSettings

__all__ = ("SEP", "TOPICS", "Event", "Hub", "Publisher", "Relay", "Subscription", "parse_event_id")

log = logging.getLogger(__name__)

TOPICS: Final = ("stars", "users")
SEP: Final = "\r\n"  # aiohttp-sse writes CRLF; one line ending throughout a stream
_END: Final = (SEP + SEP).encode()
Data = dict[str, Any]


def parse_event_id(value: str) -> tuple[int, int] | None:
    """``(epoch, seq)`` of an id this service could have made; None for anything else."""
    epoch, dash, seq = value.partition("-")
    if not dash or not epoch.isdigit() or not seq.isdigit() or len(value) > 40:
        return None
    return int(epoch), int(seq)


def frame(event_id: str | None, envelope: dict[str, Any]) -> bytes:
    """One SSE frame: an ``id:`` line, one ``data:`` line of JSON, no ``event:`` line."""
    head = f"id: {event_id}{SEP}data: " if event_id is not None else "data: "
    return head.encode() + orjson.dumps(envelope) + _END  # JSON has no raw newlines


@attrs.frozen
class Event:
    id: str
    seq: tuple[int, int]
    topic: str
    type: str
    data: dict[str, Any]
    payload: bytes = attrs.field(repr=False, eq=False)
    wire: bytes = attrs.field(repr=False, eq=False)  # the payload as one HTTP chunk


class Publisher(Protocol):
    """Where actors send what changed; they never know who listens."""

    def publish(
        self, topic: str, type_: str, data: dict[str, Any], meta: dict[str, Any] | None = None
    ) -> None:
        """Send one event to every subscriber; ``meta`` is for other replicas, not for clients."""


def chunk(payload: bytes) -> bytes:
    """A frame as one HTTP/1.1 chunk: what goes on the wire of a chunked stream."""
    return b"%x\r\n" % len(payload) + payload + b"\r\n"


class Transport(Protocol):
    def write(self, data: bytes) -> None: ...
    def get_write_buffer_size(self) -> int: ...
    def is_closing(self) -> bool: ...


class Subscription:
    """One stream's view of the hub.

    First its replay and whatever arrived meanwhile go through a bounded queue (the
    stream writes them, awaiting each). Once that queue is empty the stream goes
    *direct*: the hub writes to its socket itself, a flush tick at a time, the same
    bytes as to every other stream of its topics, with no task to wake per
    subscriber. A subscriber too far behind (its queue full, or its unsent bytes past
    ``limit`` KiB) is dropped.
    """

    __slots__ = (
        "_ended", "_queue", "closed", "direct", "dropped", "limit", "on_drop", "replay", "skip", "topics"
    )  # fmt: skip

    def __init__(self, topics: frozenset[str], limit: int, replay: list[bytes]) -> None:
        self.topics = topics
        self.limit = limit
        self.replay = replay
        # Bounded by `offer`; dropped when the subscription goes direct (10k streams, 10k queues fewer).
        self._queue: asyncio.Queue[bytes | None] | None = asyncio.Queue()
        self.dropped = False
        self.closed = False
        self.direct: Transport | None = None
        self.skip = 0  # chunks already pending in the hub when it went direct (sent by its queue)
        self._ended: asyncio.Future[None] | None = None
        self.on_drop: Callable[[], None] | None = None

    def offer(self, payload: bytes) -> bool:
        """Queue a frame (before going direct); False when this subscriber is dropped."""
        if self.closed:
            return True
        assert self._queue is not None  # not direct
        if self._queue.qsize() >= self.limit:
            return self._drop()
        self._queue.put_nowait(payload)
        return True

    def _drop(self) -> bool:
        self.dropped = True
        self.close()
        if self.on_drop is not None:
            self.on_drop()
        return False

    def write(self, data: bytes) -> bool:
        """Write to the socket (direct mode); False when this subscriber is dropped."""
        direct = self.direct
        if self.closed or direct is None:
            return True
        if direct.is_closing():  # the client went away
            self.close()
        elif direct.get_write_buffer_size() > self.limit * 1024:
            return self._drop()
        else:
            direct.write(data)
        return True

    def go_direct(self, transport: Transport) -> bool:
        """Switch to direct writes if nothing is queued (no await between check and switch)."""
        if self._queue is not None and self._queue.empty() and not self.closed:
            self.direct = transport
            self._ended = asyncio.get_running_loop().create_future()
            self._queue = None
            return True
        return False

    async def ended(self) -> None:
        """Wait, in direct mode, until the subscription is closed."""
        assert self._ended is not None
        await self._ended

    def close(self, last: bytes | None = None) -> None:
        """End the stream after ``last`` (e.g. a ``retry:`` hint); it always fits."""
        if self.closed:
            return
        self.closed = True
        if self.direct is not None:
            if last is not None and not self.direct.is_closing():
                self.direct.write(chunk(last))
            if self._ended is not None and not self._ended.done():
                self._ended.set_result(None)
            return
        assert self._queue is not None
        if last is not None:
            self._queue.put_nowait(last)
        self._queue.put_nowait(None)

    async def next(self) -> bytes | None:
        """The next frame to write (before going direct); None when the stream should end."""
        assert self._queue is not None
        return await self._queue.get()

    def pending(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0


EventId = tuple[int, int]


def _event(event_id: str, parsed: EventId, topic: str, type_: str, data: Data) -> Event:
    payload = frame(event_id, {"topic": topic, "type": type_, "data": data})
    return Event(event_id, parsed, topic, type_, data, payload, chunk(payload))


class Relay(Protocol):
    """Carries events between replicas (Redis); the hub falls back to local ids without it."""

    @property
    def up(self) -> bool:
        """True while events can be sent through it."""

    def send(self, topic: str, type_: str, data: dict[str, Any], meta: dict[str, Any]) -> None:
        """Queue one event; it comes back to every replica's hub through ``Hub.deliver``."""


class Hub:
    """The in-process broadcast hub.

    Alone, it numbers events itself, the way Redis numbers stream entries
    (``<ms>-<seq>``, never going backwards). With a relay, events go out through
    it and come back, numbered by Redis, through ``deliver`` on every replica, so
    each replica buffers and streams the same events under the same ids.
    """

    def __init__(self, *, buffer_size: int, subscriber_queue: int, flush_interval: float) -> None:
        self.buffer_size = buffer_size
        self.subscriber_queue = subscriber_queue
        # Direct streams get what was published since the last flush in one write, at most
        # every `flush_interval` s: 2k streams x 100 events/s is then 2k writes a tick, not
        # 200k syscalls a second. A first event after a quiet spell goes out at once.
        self.flush_interval = flush_interval
        self._direct: dict[frozenset[str], set[Subscription]] = {}
        self._pending: dict[frozenset[str], list[bytes]] = {}
        self._flush_handle: asyncio.Handle | None = None
        self._last_flush = 0.0
        self.relay: Relay | None = None
        self._last: EventId = (int(time.time() * 1000), 0)
        # Replay is exact after these ids: older ones were evicted, or came before this process.
        self._floor: dict[str, EventId] = dict.fromkeys(TOPICS, self._last)
        self._buffers: dict[str, collections.deque[Event]] = {t: collections.deque() for t in TOPICS}
        self._subscribers: dict[str, set[Subscription]] = {t: set() for t in TOPICS}
        self.published = 0
        self.dropped = 0

    @classmethod
    def from_settings(cls, sse: SseSettings) -> Hub:
        return cls(
            buffer_size=sse.replay_buffer,
            subscriber_queue=sse.subscriber_queue,
            flush_interval=sse.flush_ms / 1000,
        )

    @property
    def last_id(self) -> str | None:
        return f"{self._last[0]}-{self._last[1]}" if self._last[1] or self.published else None

    @property
    def recent(self) -> list[Event]:
        """Every buffered event of every topic, in id order."""
        return sorted((e for b in self._buffers.values() for e in b), key=lambda e: e.seq)

    def subscribers(self, topic: str) -> int:
        direct = sum(len(members) for group, members in self._direct.items() if topic in group)
        return len(self._subscribers[topic]) + direct

    def publish(
        self, topic: str, type_: str, data: dict[str, Any], meta: dict[str, Any] | None = None
    ) -> None:
        """Send one event to every subscriber of every replica (``meta`` travels beside it)."""
        if self.relay is not None and self.relay.up:
            self.relay.send(topic, type_, data, meta or {})
            return
        self.deliver(self.next_local_id(), topic, type_, data)

    def next_local_id(self) -> str:
        """The next id made here, after the last one seen: Redis's own rule."""
        now = int(time.time() * 1000)
        ms, seq = self._last
        return f"{now}-0" if now > ms else f"{ms}-{seq + 1}"

    def deliver(self, event_id: str, topic: str, type_: str, data: dict[str, Any]) -> Event | None:
        """Buffer one numbered event and fan it out; an id not past the last one is ignored."""
        parsed = parse_event_id(event_id)
        if parsed is None or parsed <= self._last or topic not in self._buffers:
            return None
        self._last = parsed
        event = _event(event_id, parsed, topic, type_, data)
        self._buffer(event)
        self.published += 1
        for sub in list(self._subscribers[topic]):
            if not sub.offer(event.payload):
                self._dropped(sub)
        self._to_direct(topic, event.wire)
        return event

    def _dropped(self, sub: Subscription) -> None:
        self.unsubscribe(sub)
        self.dropped += 1
        log.info("dropped an SSE subscriber that fell behind (%d events or KiB)", sub.limit)

    def go_direct(self, sub: Subscription, transport: Transport) -> bool:
        """Hand a stream's writes to the hub once its queue is empty (see ``Subscription``)."""
        if not sub.go_direct(transport):
            return False
        for topic in sub.topics:
            self._subscribers[topic].discard(sub)
        sub.skip = len(self._pending.get(sub.topics, ()))
        self._direct.setdefault(sub.topics, set()).add(sub)
        return True

    def _to_direct(self, topic: str, wire: bytes) -> None:
        for group, members in self._direct.items():
            if topic in group and members:
                self._pending.setdefault(group, []).append(wire)
                self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._flush_handle is not None:
            return
        loop = asyncio.get_running_loop()
        due = self._last_flush + self.flush_interval
        if loop.time() >= due:
            self._flush_handle = loop.call_soon(self._flush)
        else:
            self._flush_handle = loop.call_at(due, self._flush)

    def _flush(self) -> None:
        """One write per direct stream: the chunks since the last flush, joined once per group."""
        self._flush_handle = None
        self._last_flush = asyncio.get_running_loop().time()
        pending, self._pending = self._pending, {}
        for group, chunks in pending.items():
            data = b"".join(chunks)
            for sub in list(self._direct.get(group, ())):
                part = data if not sub.skip else b"".join(chunks[sub.skip :])
                sub.skip = 0
                if part and not sub.write(part):
                    self._dropped(sub)

    def prime(self, entries: Iterable[tuple[str, str, str, dict[str, Any]]]) -> None:
        """Fill the replay buffers from the shared stream at start-up (nothing is fanned out)."""
        first = True
        for event_id, topic, type_, data in entries:
            parsed = parse_event_id(event_id)
            if parsed is None or topic not in self._buffers:
                continue
            if first:  # replay is exact only from the oldest entry the stream still holds
                self._floor = dict.fromkeys(TOPICS, parsed)
                first = False
            if parsed > self._last:
                self._last = parsed
            self._buffer(_event(event_id, parsed, topic, type_, data))

    def _buffer(self, event: Event) -> None:
        buffer = self._buffers[event.topic]
        if len(buffer) >= self.buffer_size:
            self._floor[event.topic] = buffer.popleft().seq
        buffer.append(event)

    def subscribe(self, topics: Iterable[str], last_event_id: str | None = None) -> Subscription:
        """Register a subscriber; its replay holds what it missed after ``last_event_id``.

        Replay and registration happen in one step (no await), so nothing
        published in between can fall into a gap or arrive twice.
        """
        wanted = frozenset(topics)
        replay: list[bytes] = []
        if last_event_id is not None:
            missed = self._missed(wanted, last_event_id)
            replay = [self._resync(wanted)] if missed is None else [e.payload for e in missed]
        sub = Subscription(wanted, self.subscriber_queue, replay)
        for topic in wanted:
            self._subscribers[topic].add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        for topic in sub.topics:
            self._subscribers[topic].discard(sub)
        self._direct.get(sub.topics, set()).discard(sub)

    def resync_all(self) -> None:
        """Tell every stream to refetch: events may have been missed (the relay was down)."""
        for topic in TOPICS:
            frame_ = self._resync(frozenset({topic}))
            for sub in list(self._subscribers[topic]):
                sub.offer(frame_)
            self._to_direct(topic, chunk(frame_))

    def close_all(self, last: Callable[[], bytes]) -> int:
        """End every stream after what is pending and one frame from ``last`` (a jittered ``retry:``)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush()
        subs = {s for subs in self._subscribers.values() for s in subs}
        subs |= {s for members in self._direct.values() for s in members}
        for sub in subs:
            sub.close(last())
        return len(subs)

    def _missed(self, topics: frozenset[str], last_event_id: str) -> list[Event] | None:
        """The events after that id, or None when they cannot all be replayed."""
        after = parse_event_id(last_event_id)
        if after is None or after > self._last or any(after < self._floor[t] for t in topics):
            return None
        missed = [e for t in topics for e in self._buffers[t] if e.seq > after]
        missed.sort(key=lambda e: e.seq)
        return missed

    def _resync(self, topics: frozenset[str]) -> bytes:
        topic = ",".join(t for t in TOPICS if t in topics)
        return frame(self.last_id, {"topic": topic, "type": "resync", "data": {}})
