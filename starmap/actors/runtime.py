"""A small actor runtime on asyncio (pykka's semantics, without threads).

An actor is one task that takes envelopes off a bounded mailbox one at a time, so
its state needs no locks. ``tell`` puts a message; ``ask`` puts it with a future
and waits for the answer. An exception while handling an ask goes back to the
asker and the actor keeps its last good state. A full mailbox fails fast with
``Overloaded``. Idle actors are passivated, so memory follows the active set.

Group commit: messages of the types an actor lists in ``batchable`` that wait in
the mailbox together are handed to ``receive_batch`` at once, so an actor can
turn many requests into one write and answer them all after it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Final, TypeVar, cast

import aiojobs

from ..batching import take_batch
from ..errors import ActorStopped, Overloaded
from .messages import Ask

__all__ = ("Actor", "ActorRef", "ActorStopped", "ActorSystem", "Envelope")

log = logging.getLogger(__name__)

R = TypeVar("R")

MAX_BATCH: Final = 1000


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

    @property
    def abandoned(self) -> bool:
        return self.reply_to is not None and self.reply_to.cancelled()


_STOP: Final = Envelope(object())


class Actor:
    """Base class: override ``receive`` (and ``receive_batch`` for ``batchable`` messages).

    ``on_start`` runs before the first message (load state; an error fails the
    waiting asks and the actor does not start); ``on_stop`` runs after the last.
    """

    kind: ClassVar[str] = "actor"
    # None: never passivated (singletons whose refs are held for the app's life).
    idle_timeout: ClassVar[float | None] = None
    batchable: ClassVar[tuple[type, ...]] = ()

    def __init__(self, key: str) -> None:
        self.key = key

    async def on_start(self) -> None:
        """Load state before the first message."""

    async def on_stop(self) -> None:
        """Flush or release what the actor holds."""

    async def receive(self, message: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not handle {type(message).__name__}")

    async def receive_batch(self, messages: Sequence[Any]) -> list[Any]:
        """Handle several batchable messages; one result (or exception) per message."""
        return [await self.receive(m) for m in messages]

    def state(self) -> dict[str, Any]:
        """The actor's state for the debug endpoints (JSON-able)."""
        return {}


class _Cell:
    """The runtime side of one actor: mailbox, task and counters."""

    def __init__(self, system: ActorSystem, kind: str, actor: Actor, mailbox_size: int) -> None:
        self.system = system
        self.kind = kind  # as registered: the system's name for it
        self.actor = actor
        # Unbounded queue, bounded by `put`: a stop request always fits.
        self.mailbox: asyncio.Queue[Envelope] = asyncio.Queue()
        self.mailbox_size = mailbox_size
        self.processed = 0
        self.last_error: str | None = None
        self.last_active = time.monotonic()
        self.stopped = False
        self.busy = False
        self.done = asyncio.get_running_loop().create_future()

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
        while True:
            first = await self.mailbox.get()  # no timer per message: the system's reaper passivates
            if first is _STOP:
                return
            batch, stop = take_batch(first, self.mailbox.get_nowait, MAX_BATCH, stop=_STOP)
            if stop:
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
        """Handle in order; runs of batchable messages go to ``receive_batch`` together."""
        now = time.monotonic()
        fresh = []
        for envelope in envelopes:
            if envelope.abandoned:
                continue
            if envelope.deadline < now:
                self._reply(envelope, Overloaded(f"{self.kind}/{self.actor.key} did not get to it in time"))
                continue
            fresh.append(envelope)
        envelopes = fresh
        batchable = self.actor.batchable
        i = 0
        while i < len(envelopes):
            is_batch = bool(batchable) and isinstance(envelopes[i].message, batchable)
            j = i + 1
            while is_batch and j < len(envelopes) and isinstance(envelopes[j].message, batchable):
                j += 1
            group = envelopes[i:j]
            try:
                if is_batch:
                    results: list[Any] = await self.actor.receive_batch([e.message for e in group])
                else:
                    results = [await self.actor.receive(group[0].message)]
            except Exception as exc:
                results = [exc] * len(group)
            for envelope, result in zip(group, results, strict=True):
                self._reply(envelope, result)
            self.processed += len(group)
            self.last_active = time.monotonic()
            i = j

    def _reply(self, envelope: Envelope, result: Any) -> None:
        if isinstance(result, BaseException):
            self.last_error = repr(result)
            if envelope.reply_to is None:
                log.warning("%s/%s: %r", self.kind, self.actor.key, result)
        future = envelope.reply_to
        if future is None or future.done():
            return
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)

    def _retire(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.system._forget(self)

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


class ActorRef:
    """How the rest of the code talks to an actor."""

    __slots__ = ("_cell", "_system", "key", "kind")

    def __init__(self, system: ActorSystem, cell: _Cell) -> None:
        self._system = system
        self._cell = cell
        self.kind = cell.kind
        self.key = cell.actor.key

    def tell(self, message: object) -> None:
        """Send without waiting; ``Overloaded`` if the mailbox is full."""
        self._cell.put(Envelope(message))

    async def ask(self, message: Ask[R], *, timeout: float | None = None) -> R:  # noqa: ASYNC109
        """Send and wait for the answer (or the exception the actor raised): an ``R``."""
        if self._cell.stopped:  # passivated since this ref was taken: wake it again
            self._cell = (await self._system.get(self.kind, self.key))._cell
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        deadline = time.monotonic() + (timeout or self._system.ask_timeout)
        self._cell.put(Envelope(message, future, deadline))
        # No timer per ask (the hot path): the actor checks the deadline when it gets to
        # the message; a cancelled asker (a client gone) leaves a future it skips.
        return cast(R, await future)  # the actor answers an Ask[R] with an R


class ActorSystem:
    """Activates actors on first use, runs them under an aiojobs scheduler, stops them in order."""

    def __init__(
        self,
        scheduler: aiojobs.Scheduler,
        *,
        mailbox_size: int,
        ask_timeout: float,
    ) -> None:
        self.scheduler = scheduler
        self.mailbox_size = mailbox_size
        self.ask_timeout = ask_timeout
        self._factories: dict[str, Callable[[str], Actor]] = {}
        self._cells: dict[tuple[str, str], _Cell] = {}
        self._stopping: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._closed = False
        self._reaper: aiojobs.Job[None] | None = None

    def register(self, kind: str, factory: Callable[[str], Actor]) -> None:
        self._factories[kind] = factory

    async def get(self, kind: str, key: str) -> ActorRef:
        """The actor of that kind and key, activated if it is not live."""
        cell = self._cells.get((kind, key))
        if cell is None:
            if self._closed:
                raise Overloaded("the service is shutting down")
            factory = self._factories[kind]
            cell = _Cell(self, kind, factory(key), self.mailbox_size)
            self._cells[(kind, key)] = cell
            predecessor = self._stopping.get((kind, key))
            await self.scheduler.spawn(cell.run(predecessor), name=f"actor {kind}/{key}")
            idle = cell.actor.idle_timeout
            if idle is not None and self._reaper is None:
                self._reaper = await self.scheduler.spawn(self._reap(idle), name="actor reaper")
        return ActorRef(self, cell)

    async def _reap(self, idle: float) -> None:
        """Passivate actors idle past their ``idle_timeout``: one loop, not a timer per message."""
        interval = min(5.0, max(0.01, idle / 2))
        while not self._closed:
            await asyncio.sleep(interval)
            for (kind, key), cell in list(self._cells.items()):
                timeout = cell.actor.idle_timeout
                if timeout is not None and cell.idle_for >= timeout:
                    self.stop_actor(kind, key)

    def describe(self, kind: str, key: str) -> dict[str, Any] | None:
        """A live actor's snapshot with its state; None if it is not live."""
        cell = self._cells.get((kind, key))
        return None if cell is None else {**cell.snapshot(), "state": cell.actor.state()}

    def stop_actor(self, kind: str, key: str) -> asyncio.Future[None] | None:
        """Ask one actor to stop after the messages already in its mailbox."""
        cell = self._cells.get((kind, key))
        if cell is None:
            return self._stopping.get((kind, key))
        cell._retire()
        cell.mailbox.put_nowait(_STOP)
        return cell.done

    def _forget(self, cell: _Cell) -> None:
        key = (cell.kind, cell.actor.key)
        if self._cells.get(key) is cell:
            del self._cells[key]
        self._stopping[key] = cell.done

        def gone(done: asyncio.Future[None]) -> None:
            if self._stopping.get(key) is done:
                del self._stopping[key]

        cell.done.add_done_callback(gone)

    def snapshot(self) -> list[dict[str, Any]]:
        return [cell.snapshot() for cell in self._cells.values()]

    async def stop(self, kinds_in_order: Sequence[str] = ()) -> None:
        """Drain and stop every actor: pending asks answered, ``on_stop`` run.

        Kinds named in ``kinds_in_order`` stop first, in that order (e.g. like
        counters before the registry they report to); the rest after.
        """
        self._closed = True
        if self._reaper is not None:
            await self._reaper.close()
        order = list(kinds_in_order)
        rest = sorted({kind for kind, _ in self._cells} - set(order))
        for kind in [*order, *rest]:
            waits = [self.stop_actor(k, key) for k, key in list(self._cells) if k == kind]
            waits += [f for (k, _), f in list(self._stopping.items()) if k == kind]
            pending = [w for w in waits if w is not None]
            if pending:
                await asyncio.gather(*pending)
