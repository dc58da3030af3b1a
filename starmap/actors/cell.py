"""The runtime side of one actor: its mailbox of envelopes, its task, its counters."""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import operator
import time
from typing import TYPE_CHECKING, Any, Final

from ..errors import ActorStopped, Overloaded

if TYPE_CHECKING:
    from .runtime import Actor, ActorSystem

__all__ = ("STOP", "Cell", "Envelope")

log = logging.getLogger(__name__)

MAX_BATCH: Final = 1000  # messages taken off a mailbox at once
_MESSAGE: Final = operator.attrgetter("message")  # in C: a comprehension is a frame of its own (3.11)


class Envelope:
    """A message and, for an ask, the future its answer goes to."""

    __slots__ = ("deadline", "message", "reply_to")

    def __init__(
        self, message: Any, reply_to: asyncio.Future[Any] | None = None, deadline: float = math.inf
    ) -> None:
        self.message = message
        self.reply_to = reply_to
        # An ask still queued at its deadline is answered Overloaded instead of handled.
        # Once the actor has started on it, the asker waits for the outcome: "503" never
        # hides a write that happened.
        self.deadline = deadline


STOP: Final = Envelope(object())


class Mailbox:
    """A cell's queue: a deque and the one task that waits on it.

    What a cell needs of ``asyncio.Queue``, without its generality: no getter and
    putter lists, no count of unfinished tasks, and no ``QueueEmpty`` raised to end
    every batch. Every like passes through one of these (its counter's).
    """

    __slots__ = ("_items", "_loop", "_waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._items: collections.deque[Envelope] = collections.deque()
        # The cell's loop, kept: on Python 3.11 asyncio.get_running_loop() makes a getpid()
        # system call each time (~200 ns); every like waits on a mailbox and makes an ask.
        self._loop = loop
        self._waiter: asyncio.Future[None] | None = None

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, envelope: Envelope) -> None:
        self._items.append(envelope)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():  # cancelled with its task: nobody waits
                waiter.set_result(None)

    def get_nowait(self) -> Envelope:
        return self._items.popleft()

    def wait(self) -> asyncio.Future[None]:
        """What the cell's task awaits while the mailbox is empty: set by the next ``put_nowait``.
        A future, not a coroutine: no frame made and resumed per batch (every like's counter waits)."""
        waiter = self._waiter = self._loop.create_future()
        return waiter

    def drain(self, limit: int) -> tuple[list[Envelope], bool]:
        """What is queued, at most ``limit``, and whether ``STOP`` came (it ends the batch and
        is not part of it; anything behind it stays queued)."""
        items = self._items
        batch: list[Envelope] = []
        while items and len(batch) < limit:
            envelope = items.popleft()
            if envelope is STOP:
                return batch, True
            batch.append(envelope)
        return batch, False


class Cell:
    """The runtime side of one actor: mailbox, task and counters."""

    def __init__(self, system: ActorSystem, kind: str, actor: Actor, mailbox_size: int) -> None:
        self.system = system
        self.kind = kind  # as registered: the system's name for it
        self.actor = actor
        self.loop = asyncio.get_running_loop()  # the actor's; its asks' futures are made on it
        # Unbounded, bounded by `put`: a stop request always fits.
        self.mailbox = Mailbox(self.loop)
        self.mailbox_size = mailbox_size
        self.processed = 0
        self.last_error: str | None = None
        self.last_active = time.monotonic()
        self.stopped = False
        self.busy = False
        self.done = self.loop.create_future()

    def put(self, envelope: Envelope) -> None:
        if self.stopped:
            raise ActorStopped(f"{self.kind}/{self.actor.key} has stopped")
        if self.mailbox.qsize() >= self.mailbox_size:
            raise Overloaded(f"{self.kind}/{self.actor.key}: mailbox full")
        self.mailbox.put_nowait(envelope)

    async def run(self, predecessor: asyncio.Future[None] | None) -> None:
        try:
            if predecessor is not None:
                await asyncio.shield(predecessor)  # a passivating twin flushes first
            try:
                await self.actor.on_start()
            except Exception as exc:
                self.last_error = repr(exc)
                self._retire()
                self._fail_pending(exc)
                return
            await self._loop()
            await self.actor.on_stop()
        finally:
            self._retire()
            self._fail_pending(ActorStopped(f"{self.kind}/{self.actor.key} stopped"))
            if not self.done.done():
                self.done.set_result(None)

    async def _loop(self) -> None:
        mailbox = self.mailbox
        while True:
            # No timer per message: the system's reaper passivates.
            while mailbox.empty():
                await mailbox.wait()
            batch, stop = mailbox.drain(MAX_BATCH)
            if stop:
                if batch:
                    await self._handle(batch)
                return
            self.busy = True
            try:
                await self._handle(batch)
            finally:
                self.busy = False

    @property
    def idle_for(self) -> float:
        """Seconds with nothing to do (0 while busy or with mail waiting)."""
        if self.busy or not self.mailbox.empty():
            return 0.0
        return time.monotonic() - self.last_active

    async def _handle(self, envelopes: list[Envelope]) -> None:
        """Handle in order; runs of batchable messages go to ``receive_batch`` together.

        The groups are formed first and handled in this one coroutine: no coroutine of
        its own per group (a like counter's batch is one group, every like pays it)."""
        now = time.monotonic()
        batchable = self.actor.batchable
        groups: list[tuple[list[Envelope], bool]] = []  # consecutive batchable messages: one group
        for envelope in envelopes:
            reply_to = envelope.reply_to
            if reply_to is not None and reply_to.cancelled():  # the asker is gone
                continue
            if envelope.deadline < now:
                self._reply(envelope, Overloaded(f"{self.kind}/{self.actor.key} did not get to it in time"))
                continue
            batch = bool(batchable) and isinstance(envelope.message, batchable)
            if batch and groups and groups[-1][1]:
                groups[-1][0].append(envelope)
            else:
                groups.append(([envelope], batch))
        for group, batch in groups:
            try:
                if batch:
                    results: list[Any] = await self.actor.receive_batch(list(map(_MESSAGE, group)))
                else:
                    results = [await self.actor.receive(group[0].message)]
            except Exception as exc:
                results = [exc] * len(group)
            if len(results) != len(group):  # a receive_batch that miscounts: each asker told, the actor kept
                miscount = RuntimeError(f"{len(results)} answers to {len(group)} messages")
                results = [miscount] * len(group)
            # By index, not zip(strict=True): its keyword cost every like ~1,700 instructions.
            for i, envelope in enumerate(group):
                self._reply(envelope, results[i])
            self.processed += len(group)
            self.last_active = time.monotonic()

    def _reply(self, envelope: Envelope, result: Any) -> None:
        failed = isinstance(result, BaseException)
        if failed:
            self.last_error = repr(result)
            if envelope.reply_to is None:
                log.warning("%s/%s: %r", self.kind, self.actor.key, result)
        future = envelope.reply_to
        if future is None or future.done():
            return
        if failed:
            future.set_exception(result)
        else:
            future.set_result(result)

    def _retire(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.system.forget(self)

    def _fail_pending(self, exc: BaseException) -> None:
        while not self.mailbox.empty():
            envelope = self.mailbox.get_nowait()
            if envelope.reply_to is not None and not envelope.reply_to.done():
                envelope.reply_to.set_exception(exc)

    def snapshot(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "key": self.actor.key,
            "mailbox": self.mailbox.qsize(),
            "processed": self.processed,
            "idle_seconds": round(time.monotonic() - self.last_active, 3),
            "last_error": self.last_error,
        }
