"""Crash safety with real processes: a like acknowledged is a like kept, kill -9 or not.

What "exactly" can mean: a like answered 200 was committed first, so it is never
lost; a like is counted once, whatever the retries (batch ids on the entity). The
only likes a client cannot know about are those committed in the instant between
the commit and the answer when the process dies: at most one batch per star, never
more than the requests in flight, and the tests bound them so.
"""

from __future__ import annotations

import asyncio

import pytest

from .conftest import MakeProcess
from .load import LikeStorm, create_star, likes_of
from .rig import RedisServer

pytestmark = pytest.mark.slow

LIKES = {"API_RATE_LIMIT_TIMES": "1000000"}
STARS = [f"s{i}" for i in range(5)]


async def storm_until(storm: LikeStorm, acknowledged: int) -> None:
    while storm.total_acked < acknowledged:  # noqa: ASYNC110 - waiting on another process's answers
        await asyncio.sleep(0.02)


async def test_acknowledged_likes_survive_kill_9(make_process: MakeProcess) -> None:
    first = make_process(**LIKES)
    for star in STARS[:2]:
        await create_star(first.url, star)
    async with LikeStorm([first.url], STARS[:2], concurrency=24) as storm:
        await storm_until(storm, 240)
    assert storm.statuses.keys() == {200}
    first.kill()  # every answer is in: nothing was in flight

    second = make_process(**LIKES)
    for star in STARS[:2]:
        assert await likes_of(second.url, star) == storm.acked[star]


async def test_kill_9_during_a_storm_on_several_stars_loses_and_doubles_nothing(
    make_process: MakeProcess,
) -> None:
    first = make_process(**LIKES)
    for star in STARS:
        await create_star(first.url, star)
    storm = LikeStorm([first.url], STARS, concurrency=32)
    async with storm:
        await storm_until(storm, 400)
        first.kill()  # mid-storm: requests in flight, some answers never sent
    second = make_process(**LIKES)
    kept = {star: await likes_of(second.url, star) for star in STARS}
    for star in STARS:
        assert kept[star] >= storm.acked[star], star  # none lost
    assert sum(kept.values()) - storm.total_acked <= storm.concurrency  # only what was in flight


@pytest.mark.parametrize("backend", ["azurite"])
async def test_two_replicas_one_killed_mid_storm(
    make_process: MakeProcess, redis_server: RedisServer, backend: str
) -> None:
    env = {**LIKES, **redis_server.env()}
    a, b = make_process(**env), make_process(**env)
    for star in STARS[:3]:
        await create_star(a.url, star)
    storm = LikeStorm([a.url, b.url], STARS[:3], concurrency=32)
    async with storm:
        await storm_until(storm, 200)
        a.kill()
        await storm_until(storm, storm.total_acked + 100)  # b carries on alone
    kept = {star: await likes_of(b.url, star) for star in STARS[:3]}
    restarted = make_process(**env)  # and from the store itself, on a fresh replica
    for star in STARS[:3]:
        stored = await likes_of(restarted.url, star)
        assert stored >= storm.acked[star], star
        assert stored >= kept[star]
    excess = sum([await likes_of(restarted.url, s) for s in STARS[:3]]) - storm.total_acked
    assert 0 <= excess <= storm.concurrency
