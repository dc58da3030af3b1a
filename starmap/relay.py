"""Events between replicas: one Redis Stream for all topics.

Every replica ``XADD``s its events to ``{prefix}events`` (``MAXLEN ~`` the replay
size, the topic as a field) and reads the stream with one ``XREAD BLOCK`` loop
from the last id it saw. What it reads goes to its own hub, so every replica
streams the same events under the same ids (the stream ids): ``Last-Event-ID``
from any replica resumes on any other. Events from other replicas are also
applied to this replica's registries (every event, in stream order, so the
indexes converge), and a read here reflects a write there.

When Redis is away, the hub numbers events itself and they stay on this replica;
when it is back, every stream is told to ``resync`` and the registries reload
from the table store, since what happened meanwhile did not travel.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any, Final

from .backoff import Backoff
from .batching import take_batch
from .events import Data, Hub
from .redis import REDIS_ERRORS, RedisLink, drained

__all__ = ("RedisRelay",)

log = logging.getLogger(__name__)

OUTBOX: Final = 10_000
# Under the client's 2 s socket timeout, or every idle read would count as a failure.
READ_BLOCK_MS: Final = 1000
SEND_BATCH: Final = 200  # events in one XADD pipeline at most
READ_RETRY: Final = Backoff(base=0.1, cap=1.0)
# (topic, type, data, meta, remote): remote is False for this replica's own events.
EventHandler = Callable[[str, str, Data, Data, bool], None]


class RedisRelay:
    """The ``Relay`` of a hub, over a Redis Stream."""

    def __init__(self, link: RedisLink, hub: Hub, *, maxlen: int, on_event: EventHandler) -> None:
        self.link = link
        self.hub = hub
        self.maxlen = maxlen
        self.on_event = on_event
        self.origin = uuid.uuid4().hex[:12]  # this replica, to tell its own events apart
        self.stream = link.key("events")
        self.last_read = "0-0"
        self._outbox: asyncio.Queue[tuple[str, str, Data, Data]] = asyncio.Queue()
        self.sent = 0
        self.received = 0
        self.busy = False

    @property
    def up(self) -> bool:
        return self.link.up

    def send(self, topic: str, type_: str, data: Data, meta: Data) -> None:
        if self._outbox.qsize() >= OUTBOX:  # Redis too slow to keep up: stay local
            self.hub.deliver(self.hub.next_local_id(), topic, type_, data)
            return
        self._outbox.put_nowait((topic, type_, data, meta))

    async def drain(self, within: float) -> None:
        """At shutdown: XADD what is still queued, so other replicas get this replica's last events."""
        await drained(self._outbox, lambda: self.busy, within)

    async def prime(self) -> None:
        """Fill the hub's replay buffers from the stream, and read on from its newest entry."""
        try:
            entries = await self.link.call(
                lambda: self.link.client.xrevrange(self.stream, "+", "-", count=self.maxlen)
            )
        except REDIS_ERRORS:
            return
        decoded = [self._decode(raw_id, fields) for raw_id, fields in reversed(entries)]
        self.hub.prime((event_id, topic, type_, data) for event_id, topic, type_, data, _, _ in decoded)
        if decoded:
            self.last_read = decoded[-1][0]

    async def write_loop(self) -> None:
        """XADD what the actors published, in order, pipelined; local delivery if Redis fails."""
        while True:
            batch, _ = take_batch(await self._outbox.get(), self._outbox.get_nowait, SEND_BATCH)
            pipe = self.link.client.pipeline(transaction=False)
            for topic, type_, data, meta in batch:
                fields = {"topic": topic, "type": type_, "data": json.dumps(data), "origin": self.origin}
                if meta:
                    fields["meta"] = json.dumps(meta)
                pipe.xadd(self.stream, fields, maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]
            self.busy = True
            try:
                await self.link.call(pipe.execute)
                self.sent += len(batch)
            except REDIS_ERRORS:
                for topic, type_, data, _ in batch:  # they reach this replica's streams at least
                    self.hub.deliver(self.hub.next_local_id(), topic, type_, data)
            finally:
                self.busy = False

    async def read_loop(self) -> None:
        """One XREAD BLOCK loop from the last id seen; reconnects by itself."""
        delays = READ_RETRY.delays()
        while True:
            try:
                answer = await self.link.call(
                    lambda: self.link.client.xread(
                        {self.stream: self.last_read}, count=500, block=READ_BLOCK_MS
                    )
                )
            except REDIS_ERRORS:
                await asyncio.sleep(next(delays))
                continue
            delays = READ_RETRY.delays()
            for _stream, entries in answer or ():
                for raw_id, fields in entries:
                    self._receive(raw_id, fields)

    def _receive(self, raw_id: bytes, fields: dict[bytes, bytes]) -> None:
        try:
            event_id, topic, type_, data, meta, origin = self._decode(raw_id, fields)
        except (KeyError, ValueError):
            log.warning("skipping a malformed stream entry %r", raw_id)
            self.last_read = raw_id.decode()
            return
        self.last_read = event_id
        self.received += 1
        self.hub.deliver(event_id, topic, type_, data)
        try:
            self.on_event(topic, type_, data, meta, origin != self.origin)
        except Exception:
            log.exception("could not apply a %s/%s event from the stream", topic, type_)

    @staticmethod
    def _decode(raw_id: bytes, fields: dict[bytes, bytes]) -> tuple[str, str, str, Data, Data, str]:
        text = {k.decode(): v.decode() for k, v in fields.items()}
        meta: dict[str, Any] = json.loads(text["meta"]) if "meta" in text else {}
        return (
            raw_id.decode(),
            text["topic"],
            text["type"],
            json.loads(text["data"]),
            meta,
            text.get("origin", ""),
        )

    def stats(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "received": self.received,
            "outbox": self._outbox.qsize(),
            "last": self.last_read,
        }
