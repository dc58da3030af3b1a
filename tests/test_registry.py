"""The star registry as a unit: index updates (one per like) and creates handled in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiojobs
import pytest

from starmap.actors.messages import CreateStar, Ready, Reload, StarChanged
from starmap.actors.registry import StarRegistry
from starmap.actors.runtime import Actor, ActorSystem
from starmap.events import Hub
from starmap.http.views import WireViews
from starmap.settings import SseSettings
from starmap.stars import STARS, Brightness, Star, StarPartitions
from starmap.storage.sqlite import SqliteStore

MODEL = Brightness(3600.0, 10.0, 1.0)


class NoUsers(Actor):
    """Creates without a user never ask the users' registry."""

    async def receive(self, message: Any) -> Any:
        raise AssertionError(f"the users' registry was asked: {message!r}")


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[StarRegistry]:
    scheduler = aiojobs.Scheduler()
    store = SqliteStore(data_dir=tmp_path, table_prefix="")
    await store.ensure_tables([STARS])
    system = ActorSystem(scheduler, mailbox_size=100, ask_timeout=10.0)
    system.register("users", NoUsers)
    actor = StarRegistry(
        "registry",
        store=store,
        partitions=StarPartitions(8),
        publisher=Hub.from_settings(SseSettings()),
        brightness=MODEL,
        views=WireViews(MODEL),
        users=await system.get("users", "registry"),
        on_delete=lambda star_id: None,
    )
    system.register("stars", lambda key: actor)
    actor.me = await system.get("stars", "registry")  # as the app wires it
    await actor.me.ask(Ready())
    yield actor
    await system.stop()
    await scheduler.close()
    await store.close()


def create(star_id: str) -> CreateStar:
    return CreateStar(0.5, 0.5, f"star {star_id}", 50.0, None, star_id)


def state(star_id: str, likes: int) -> Star:
    """A star's state as a like counter (or another replica) reports it."""
    return Star(star_id, 0.5, 0.5, f"star {star_id}", 50.0, 1.0, likes, 1.0, 1.0)


async def test_index_updates_and_creates_that_queue_together_keep_their_order(registry: StarRegistry) -> None:
    # An update queued behind the create of its star applies after it; one queued before the
    # create finds nothing (it is no upsert) and the create's star stands.
    results = await registry.receive_batch(
        [create("a"), StarChanged(state("a", 7)), StarChanged(state("b", 9)), create("b")]
    )
    assert [type(r) for r in results] == [Star, type(None), type(None), Star]
    a, b = registry.index.get("a"), registry.index.get("b")
    assert a is not None and a.likes == 7
    assert b is not None and b.likes == 0
    # Likes only grow: states arriving late never overwrite a newer one.
    await registry.receive_batch([StarChanged(state("a", 8)), StarChanged(state("a", 3))])
    a = registry.index.get("a")
    assert a is not None and a.likes == 8
    # A state from another replica (an upsert) adds a star the index lacks.
    assert await registry.receive_batch([StarChanged(state("c", 2), upsert=True)]) == [None]
    c = registry.index.get("c")
    assert c is not None and c.likes == 2


async def test_a_like_counters_state_goes_into_the_index_at_once_and_behind_a_reload(
    registry: StarRegistry,
) -> None:
    """``saved`` (a like counter's plain call) applies a new state at once; while the index is
    being loaded again it is queued behind the load instead, so the new index has it."""
    await registry.receive_batch([create("a")])
    registry.saved(state("a", 5))
    found = registry.index.get("a")
    assert found is not None and found.likes == 5  # no message, no task switch: at once
    registry.saved(state("a", 4))  # an older state arriving late changes nothing
    assert registry.index.get("a") == found

    assert registry.me is not None
    gate = asyncio.Event()
    fill = registry._fill

    async def slow_fill(*, warm: bool) -> None:
        await gate.wait()
        await fill(warm=warm)

    registry._fill = slow_fill  # type: ignore[method-assign]
    reloading = asyncio.ensure_future(registry.me.ask(Reload()))
    await asyncio.sleep(0.05)
    assert registry._loading
    registry.saved(state("a", 9))  # during the load: queued behind it, not into the old index
    assert registry.index.get("a") == found
    gate.set()
    await reloading
    await registry.me.ask(Ready())  # the queued change has been handled by now
    after = registry.index.get("a")
    assert after is not None and after.likes == 9  # the row says 0 likes: the state came after
