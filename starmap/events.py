"""The broadcast hub: actors publish events, SSE streams subscribe.

Every mutation becomes one ``Event`` ``{"topic", "type", "data"}`` with an id
from one sequence shared by all topics, so any id resumes any stream. Ids look
like Redis Stream ids, ``<boot ms>-<seq>``: an id from an earlier process is
recognised as unknown instead of being confused with a new one.

Each event is serialised once, at publish, to the exact bytes of an SSE frame;
the same bytes go to every subscriber. Each topic keeps a ring buffer of recent
events for replay. A subscriber has a bounded queue; one that falls behind is
dropped (its stream closes; the browser reconnects and resumes) and never slows
the publisher or the other subscribers.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Final, Protocol

import attrs

__all__ = ("TOPICS", "Event", "Hub", "Publisher", "Subscription", "parse_event_id")

log = logging.getLogger(__name__)

TOPICS: Final = ("stars", "users")
DEFAULT_BUFFER: Final = 10_000
SEP: Final = "\r\n"  # aiohttp-sse writes CRLF; one line ending throughout a stream


def parse_event_id(value: str) -> tuple[int, int] | None:
    """``(epoch, seq)`` of an id this service could have made; None for anything else."""
    epoch, dash, seq = value.partition("-")
    if not dash or not epoch.isdigit() or not seq.isdigit() or len(value) > 40:
        return None
    return int(epoch), int(seq)


def frame(event_id: str | None, envelope: dict[str, Any]) -> bytes:
    """One SSE frame: an ``id:`` line, one ``data:`` line of JSON, no ``event:`` line."""
    data = json.dumps(envelope, ensure_ascii=False, separators=(",", ":"))  # no raw newlines
    head = f"id: {event_id}{SEP}" if event_id is not None else ""
    return f"{head}data: {data}{SEP}{SEP}".encode()


@attrs.frozen
class Event:
    id: str
    seq: int
    topic: str
    type: str
    data: dict[str, Any]
    payload: bytes = attrs.field(repr=False, eq=False)

    def envelope(self) -> dict[str, Any]:
        return {"topic": self.topic, "type": self.type, "data": self.data}


class Publisher(Protocol):
    """Where actors send what changed; they never know who listens."""

    def publish(self, topic: str, type_: str, data: dict[str, Any]) -> Event:
        """Record and fan out one event; the event with its id."""


class Subscription:
    """One stream's view of the hub: replay first, then live frames from a bounded queue."""

    __slots__ = ("_queue", "closed", "dropped", "limit", "on_drop", "replay", "topics")

    def __init__(self, topics: frozenset[str], limit: int, replay: list[bytes]) -> None:
        self.topics = topics
        self.limit = limit
        self.replay = replay
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()  # bounded by `offer`
        self.dropped = False
        self.closed = False
        self.on_drop: Callable[[], None] | None = None

    def offer(self, payload: bytes) -> bool:
        """Queue a frame; False (and the subscription dropped) when it is too far behind."""
        if self.closed:
            return True
        if self._queue.qsize() >= self.limit:
            self.dropped = True
            self.close()
            if self.on_drop is not None:
                self.on_drop()
            return False
        self._queue.put_nowait(payload)
        return True

    def close(self, last: bytes | None = None) -> None:
        """End the stream after ``last`` (e.g. a ``retry:`` hint); always fits the queue."""
        if not self.closed:
            self.closed = True
            if last is not None:
                self._queue.put_nowait(last)
            self._queue.put_nowait(None)

    async def next(self) -> bytes | None:
        """The next frame to write; None when the stream should end."""
        return await self._queue.get()

    def pending(self) -> int:
        return self._queue.qsize()


class Hub:
    """The in-process broadcast hub."""

    def __init__(self, *, buffer_size: int = DEFAULT_BUFFER, subscriber_queue: int = 1000) -> None:
        self.epoch = int(time.time() * 1000)
        self._seq = 0
        self.buffer_size = buffer_size
        self.subscriber_queue = subscriber_queue
        self._buffers: dict[str, collections.deque[Event]] = {t: collections.deque() for t in TOPICS}
        self._evicted: dict[str, int] = dict.fromkeys(TOPICS, 0)  # highest seq no longer replayable
        self._subscribers: dict[str, set[Subscription]] = {t: set() for t in TOPICS}
        self.published = 0
        self.dropped = 0

    @property
    def last_id(self) -> str | None:
        return f"{self.epoch}-{self._seq}" if self._seq else None

    @property
    def recent(self) -> list[Event]:
        """Every buffered event of every topic, in id order."""
        return sorted((e for b in self._buffers.values() for e in b), key=lambda e: e.seq)

    def subscribers(self, topic: str) -> int:
        return len(self._subscribers[topic])

    def publish(self, topic: str, type_: str, data: dict[str, Any]) -> Event:
        self._seq += 1
        event_id = f"{self.epoch}-{self._seq}"
        envelope = {"topic": topic, "type": type_, "data": data}
        event = Event(event_id, self._seq, topic, type_, data, frame(event_id, envelope))
        buffer = self._buffers[topic]
        if len(buffer) >= self.buffer_size:
            self._evicted[topic] = buffer.popleft().seq
        buffer.append(event)
        self.published += 1
        for sub in list(self._subscribers[topic]):
            if not sub.offer(event.payload):
                self.dropped += 1
                log.info("dropped an SSE subscriber %d events behind", sub.limit)
        return event

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

    def close_all(self, last: Callable[[], bytes]) -> int:
        """End every stream after one frame from ``last`` (e.g. a jittered ``retry:``)."""
        subs = {s for subs in self._subscribers.values() for s in subs}
        for sub in subs:
            sub.close(last())
        return len(subs)

    def _missed(self, topics: frozenset[str], last_event_id: str) -> list[Event] | None:
        """The events after that id, or None when they cannot all be replayed."""
        parsed = parse_event_id(last_event_id)
        if parsed is None or parsed[0] != self.epoch or parsed[1] > self._seq:
            return None
        after = parsed[1]
        if any(self._evicted[t] > after for t in topics):
            return None
        missed = [e for t in topics for e in self._buffers[t] if e.seq > after]
        missed.sort(key=lambda e: e.seq)
        return missed

    def _resync(self, topics: frozenset[str]) -> bytes:
        topic = ",".join(t for t in TOPICS if t in topics)
        return frame(self.last_id, {"topic": topic, "type": "resync", "data": {}})
