"""The like counter as a unit: committed likes are answered 200 whatever happens after."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiojobs
import pytest

from starmap.actors.likes import LikeCounter
from starmap.actors.messages import Like, StarChanged
from starmap.actors.popularity import PopularityTracker
from starmap.actors.runtime import Actor, ActorSystem
from starmap.errors import Overloaded
from starmap.events import Hub
from starmap.http.views import WireViews
from starmap.settings import SseSettings
from starmap.stars import STARS, Brightness, Star, StarPartitions, star_to_entity
from starmap.storage.sqlite import SqliteStore

PARTITIONS = StarPartitions(8)


class Stuck(Actor):
    """A registry that never gets through its mail."""

    async def receive(self, message: Any) -> Any:
        await asyncio.sleep(3600)


@pytest.fixture
async def scheduler() -> AsyncIterator[aiojobs.Scheduler]:
    scheduler = aiojobs.Scheduler()
    yield scheduler
    await scheduler.close()


async def test_a_busy_registry_never_turns_committed_likes_into_503(
    tmp_path: Path, scheduler: aiojobs.Scheduler
) -> None:
    store = SqliteStore(data_dir=tmp_path, table_prefix="")
    await store.ensure_tables([STARS])
    star = Star("s", 0, 0, "m", 50.0, 0.0, 0, 0.0, 0.0)
    await store.insert(STARS, star_to_entity(star, PARTITIONS.of("s")))
    system = ActorSystem(scheduler, mailbox_size=1, ask_timeout=10.0)
    system.register("stars", Stuck)
    tracker = PopularityTracker("local", window=3600, threshold=5)
    registry = await system.get("stars", "registry")
    registry.tell("first")  # taken: the actor is stuck on it
    await asyncio.sleep(0)
    registry.tell("second")  # the mailbox is full now
    with pytest.raises(Overloaded):
        registry.tell("third")
    hub = Hub.from_settings(SseSettings())
    counter = LikeCounter(
        "s",
        store=store,
        partitions=PARTITIONS,
        publisher=hub,
        brightness=Brightness(3600, 20, 20),
        views=WireViews(Brightness(3600, 20, 20)),
        star_saved=lambda saved: registry.tell(StarChanged(saved)),  # as while the index reloads
        count_likes=tracker.count_likes,
        users=registry,  # no user in these likes: never asked
        write_deadline=1,
        idle_timeout=60,
    )
    system.register("likes", lambda key: counter)
    likes = await system.get("likes", "s")
    answer = await likes.ask(Like())
    assert isinstance(answer, Star)
    assert answer.likes == 1  # answered as the durable write it was
    assert (await store.get(STARS, PARTITIONS.of("s"), "s")).entity["likes"] == 1
    assert [e.type for e in hub.recent] == ["update"]  # and still announced to streams
    await store.close()
