"""Unit tests of the actor runtime: ask/tell, errors, overload, passivation, shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final

import aiojobs
import attrs
import pytest

from starmap.actors.cell import STOP, Envelope, Mailbox
from starmap.actors.messages import Ask
from starmap.actors.runtime import Actor, ActorSystem, each_outcome
from starmap.errors import ActorStopped, Overloaded
from starmap.settings import ActorSettings


@attrs.frozen
class Add(Ask[int]):
    n: int


@attrs.frozen
class Get(Ask[int]):
    pass


@attrs.frozen
class Boom(Ask[int]):
    pass


@attrs.frozen
class Slow(Ask[int]):
    seconds: float


@attrs.frozen
class Batched(Ask[int]):
    value: int


class Counter(Actor):
    kind = "counter"
    batchable = (Batched,)

    def __init__(self, key: str, log: list[str], idle: float | None = None) -> None:
        super().__init__(key)
        self.total = 0
        self.log = log
        self.batches: list[list[int]] = []
        self.idle_timeout = idle  # type: ignore[misc]

    async def on_start(self) -> None:
        if self.key == "broken":
            raise LookupError("cannot load")
        self.log.append(f"start {self.key}")

    async def on_stop(self) -> None:
        self.log.append(f"stop {self.key} total={self.total}")

    async def receive(self, message: Any) -> Any:
        match message:
            case Add(n):
                self.total += n
                return self.total
            case Get():
                return self.total
            case Boom():
                self.total = -999  # must not stick: the error happens after...
                raise ValueError("boom")
            case Slow(seconds):
                await asyncio.sleep(seconds)
                self.total += 1
                return self.total
        return await super().receive(message)

    async def receive_batch(self, messages: Sequence[Any]) -> list[Any]:
        self.batches.append([m.value for m in messages])
        await asyncio.sleep(0.01)  # a write in flight: more batchable messages queue up
        return [m.value * 10 if m.value >= 0 else ValueError("negative") for m in messages]

    def state(self) -> dict[str, Any]:
        return {"total": self.total}


class KeepState(Counter):
    """Restores its state when a handler fails: what a real actor does with a write that failed."""

    async def receive(self, message: Any) -> Any:
        before = self.total
        try:
            return await super().receive(message)
        except Exception:
            self.total = before
            raise


@pytest.fixture
async def scheduler() -> AsyncIterator[aiojobs.Scheduler]:
    scheduler = aiojobs.Scheduler()
    yield scheduler
    await scheduler.close()


# The settings' defaults (ACTOR_MAILBOX_SIZE, ACTOR_ASK_TIMEOUT).
TUNING: Final[dict[str, Any]] = {
    "mailbox_size": ActorSettings().mailbox_size,
    "ask_timeout": ActorSettings().ask_timeout,
}


def make_system(scheduler: aiojobs.Scheduler, log: list[str], **kwargs: Any) -> ActorSystem:
    idle = kwargs.pop("idle", None)
    system = ActorSystem(scheduler, **{**TUNING, **kwargs})
    system.register("counter", lambda key: KeepState(key, log, idle))
    return system


async def test_ask_and_tell_in_order(scheduler: aiojobs.Scheduler) -> None:
    log: list[str] = []
    system = make_system(scheduler, log)
    ref = await system.get("counter", "a")
    ref.tell(Add(2))
    ref.tell(Add(3))
    assert await ref.ask(Get()) == 5
    assert log == ["start a"]
    assert (await system.get("counter", "a"))._cell is ref._cell  # one actor per key
    await system.stop()


async def test_an_error_goes_to_the_asker_and_the_actor_keeps_its_state(scheduler: aiojobs.Scheduler) -> None:
    system = make_system(scheduler, [])
    ref = await system.get("counter", "a")
    await ref.ask(Add(7))
    with pytest.raises(ValueError, match="boom"):
        await ref.ask(Boom())
    assert await ref.ask(Get()) == 7
    [snapshot] = system.snapshot()
    assert snapshot["kind"] == "counter"
    assert snapshot["key"] == "a"
    assert snapshot["processed"] == 3
    assert "boom" in snapshot["last_error"]
    await system.stop()


async def test_a_failed_start_fails_the_asks(scheduler: aiojobs.Scheduler) -> None:
    system = make_system(scheduler, [])
    ref = await system.get("counter", "broken")
    with pytest.raises(LookupError, match="cannot load"):
        await ref.ask(Get())
    assert system.describe("counter", "broken") is None
    await system.stop()


async def test_a_full_mailbox_fails_fast(scheduler: aiojobs.Scheduler) -> None:
    system = make_system(scheduler, [], mailbox_size=3)
    ref = await system.get("counter", "a")
    slow = asyncio.ensure_future(ref.ask(Slow(0.2)))
    await asyncio.sleep(0.01)  # the actor is busy with it
    for _ in range(3):
        ref.tell(Add(1))
    with pytest.raises(Overloaded):
        ref.tell(Add(1))
    refused = ref.ask(Get())  # an ask is refused at its await, as any answer is, not at the call
    with pytest.raises(Overloaded):
        await refused
    # So asks made together (a like's relations to its likers) each get an outcome.
    outcomes = await each_outcome(ref.ask(Get()), ref.ask(Get()))
    assert [type(o) for o in outcomes] == [Overloaded, Overloaded]
    assert await slow == 1
    assert await ref.ask(Get()) == 4  # the three that fitted, nothing more
    await system.stop()


async def test_an_ask_still_queued_at_its_timeout_is_skipped(scheduler: aiojobs.Scheduler) -> None:
    system = make_system(scheduler, [])
    ref = await system.get("counter", "a")
    slow = asyncio.ensure_future(ref.ask(Slow(0.2)))
    await asyncio.sleep(0.01)
    with pytest.raises(Overloaded):
        await ref.ask(Add(100), timeout=0.05)
    assert await slow == 1
    assert await ref.ask(Get()) == 1  # the abandoned Add(100) never ran
    await system.stop()


async def test_an_ask_the_actor_started_on_is_not_timed_out(scheduler: aiojobs.Scheduler) -> None:
    system = make_system(scheduler, [])
    ref = await system.get("counter", "a")
    assert await ref.ask(Slow(0.1), timeout=0.02) == 1  # taken: the outcome is awaited
    await system.stop()


async def test_batchable_messages_that_queue_together_form_one_batch(scheduler: aiojobs.Scheduler) -> None:
    system = ActorSystem(scheduler, **TUNING)
    actor = Counter("b", [])
    system.register("counter", lambda key: actor)
    ref = await system.get("counter", "b")
    first = asyncio.ensure_future(ref.ask(Batched(1)))
    await asyncio.sleep(0)  # the first batch starts alone
    rest = [asyncio.ensure_future(ref.ask(Batched(v))) for v in (2, 3, -1, 4)]
    results = await asyncio.gather(first, *rest, return_exceptions=True)
    assert results[:3] == [10, 20, 30]
    assert isinstance(results[3], ValueError)
    assert results[4] == 40
    assert actor.batches == [[1], [2, 3, -1, 4]]
    await system.stop()


class Miscounts(Counter):
    """Answers a batch of more than one with one answer too few: a bug in an actor."""

    async def receive_batch(self, messages: Sequence[Any]) -> list[Any]:
        answers = await super().receive_batch(messages)
        return answers[:-1] if len(answers) > 1 else answers


async def test_a_batch_answered_with_the_wrong_count_fails_each_asker_and_the_actor_goes_on(
    scheduler: aiojobs.Scheduler,
) -> None:
    system = ActorSystem(scheduler, **TUNING)
    system.register("counter", lambda key: Miscounts(key, []))
    ref = await system.get("counter", "m")
    first = asyncio.ensure_future(ref.ask(Batched(1)))
    await asyncio.sleep(0)  # the first batch starts alone; the next three queue together
    rest = [asyncio.ensure_future(ref.ask(Batched(v))) for v in (2, 3, 4)]
    results = await asyncio.gather(first, *rest, return_exceptions=True)
    assert results[0] == 10
    assert all(isinstance(r, RuntimeError) and "2 answers to 3 messages" in str(r) for r in results[1:])
    assert await ref.ask(Batched(5)) == 50  # the actor still runs
    await system.stop()


async def test_idle_actors_are_passivated_and_come_back(scheduler: aiojobs.Scheduler) -> None:
    log: list[str] = []
    system = make_system(scheduler, log, idle=0.05)
    ref = await system.get("counter", "a")
    await ref.ask(Add(1))
    await asyncio.sleep(0.2)
    assert system.describe("counter", "a") is None
    assert log == ["start a", "stop a total=1"]
    assert await ref.ask(Get()) == 0  # a new activation (state would be reloaded from storage)
    assert log[-1] == "start a"
    await system.stop()


async def test_stop_drains_pending_asks_then_stops_in_order(scheduler: aiojobs.Scheduler) -> None:
    log: list[str] = []
    system = make_system(scheduler, log)
    system.register("later", lambda key: KeepState(key, log))
    later = await system.get("later", "second")  # started first, stopped last
    first = await system.get("counter", "first")
    pending = [asyncio.ensure_future(first.ask(Slow(0.01))) for _ in range(5)]
    await asyncio.sleep(0)
    await system.stop(["counter", "later"])
    assert [await p for p in pending] == [1, 2, 3, 4, 5]
    assert log[-2:] == ["stop first total=5", "stop second total=0"]
    with pytest.raises(Overloaded):
        await system.get("counter", "third")
    with pytest.raises(ActorStopped):
        later.tell(Add(1))


async def test_a_mailbox_hands_out_what_is_queued_up_to_the_limit_and_stops_at_stop() -> None:
    mailbox = Mailbox(asyncio.get_running_loop())
    waiting = mailbox.wait()
    await asyncio.sleep(0)
    assert not waiting.done()  # nothing queued: the cell's task waits
    first = [Envelope(i) for i in range(5)]
    for envelope in first:
        mailbox.put_nowait(envelope)
    assert waiting.done()  # the first put wakes it
    assert mailbox.drain(3) == (first[:3], False)  # at most the limit
    mailbox.put_nowait(STOP)
    late = Envelope("after the stop")
    mailbox.put_nowait(late)
    assert mailbox.drain(10) == (first[3:], True)  # the stop ends the batch, not part of it
    assert mailbox.qsize() == 1 and mailbox.get_nowait() is late  # left for the stopping cell to fail


async def test_a_mailbox_whose_waiter_was_cancelled_still_takes_mail() -> None:
    mailbox = Mailbox(asyncio.get_running_loop())
    waiting = mailbox.wait()
    waiting.cancel()  # with the cell's task
    envelope = Envelope("hello")
    mailbox.put_nowait(envelope)  # the cancelled waiter is skipped, not set
    assert mailbox.drain(10) == ([envelope], False)
