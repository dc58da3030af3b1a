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
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, TypeVar, cast

import aiojobs

from ..errors import ActorStopped, Overloaded
from .cell import STOP, Cell, Envelope
from .messages import Ask

__all__ = ("Actor", "ActorRef", "ActorStopped", "ActorSystem", "each_outcome")

log = logging.getLogger(__name__)

R = TypeVar("R")
T = TypeVar("T")


async def each_outcome(*work: Awaitable[T]) -> list[T | Exception]:
    """Run ``work`` together: each one's result, or the exception it raised (one answer per
    asker, as ``receive_batch`` gives). Cancellation and the like are raised, not answered."""
    outcomes = await asyncio.gather(*work, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
            raise outcome
    return cast(list[T | Exception], outcomes)


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


class ActorRef:
    """How the rest of the code talks to an actor."""

    __slots__ = ("_cell", "_system", "key", "kind")

    def __init__(self, system: ActorSystem, cell: Cell) -> None:
        self._system = system
        self._cell = cell
        self.kind = cell.kind
        self.key = cell.actor.key

    def tell(self, message: object) -> None:
        """Send without waiting; ``Overloaded`` if the mailbox is full."""
        self._cell.put(Envelope(message))

    def ask(self, message: Ask[R], *, timeout: float | None = None) -> Awaitable[R]:
        """Send; the answer (or the exception the actor raised), an ``R``, to await.

        A plain call handing back the answer's future: an ask costs no coroutine of its own
        (asks are the hot path). A full mailbox or a stopped actor is an exception at the
        await, as for any answer, never at the call."""
        if self._cell.stopped:  # passivated since this ref was taken: wake it again
            return self._ask_again(message, timeout)
        future: asyncio.Future[R] = self._cell.loop.create_future()
        deadline = time.monotonic() + (timeout or self._system.ask_timeout)
        try:
            self._cell.put(Envelope(message, future, deadline))
        except (Overloaded, ActorStopped) as exc:
            future.set_exception(exc)
        # No timer per ask (the hot path): the actor checks the deadline when it gets to
        # the message; a cancelled asker (a client gone) leaves a future it skips.
        return future

    async def _ask_again(self, message: Ask[R], timeout: float | None) -> R:  # noqa: ASYNC109
        self._cell = (await self._system.get(self.kind, self.key))._cell
        return await self.ask(message, timeout=timeout)


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
        self._cells: dict[tuple[str, str], Cell] = {}
        self._stopping: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._closed = False
        self._reaper: aiojobs.Job[None] | None = None

    def register(self, kind: str, factory: Callable[[str], Actor]) -> None:
        self._factories[kind] = factory

    def live(self, kind: str, key: str) -> ActorRef | None:
        """The actor of that kind and key if it is live, else None: a lookup, no activation."""
        cell = self._cells.get((kind, key))
        return None if cell is None else ActorRef(self, cell)

    async def get(self, kind: str, key: str) -> ActorRef:
        """The actor of that kind and key, activated if it is not live."""
        cell = self._cells.get((kind, key))
        if cell is None:
            if self._closed:
                raise Overloaded("the service is shutting down")
            factory = self._factories[kind]
            cell = Cell(self, kind, factory(key), self.mailbox_size)
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
        cell.mailbox.put_nowait(STOP)
        return cell.done

    def forget(self, cell: Cell) -> None:
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
