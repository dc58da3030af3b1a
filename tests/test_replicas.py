"""Several replicas as one service: real processes on one Azurite and one Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from starmap.stars import STARS
from starmap.storage import TableStore

from .conftest import MakeProcess
from .rig import RedisServer, StarmapProcess
from .sse_client import open_stream
from .tables import star_key

pytestmark = pytest.mark.slow

Replicas = Callable[..., list[StarmapProcess]]


@pytest.fixture
def backend() -> str:
    return "azurite"


@pytest.fixture
def replicas(make_process: MakeProcess, redis_server: RedisServer) -> Replicas:
    """Start ``n`` replicas sharing this test's tables and this test's Redis key prefix."""
    prefix = f"t{uuid.uuid4().hex[:8]}:"

    def start(n: int, redis: RedisServer = redis_server, **env: str) -> list[StarmapProcess]:
        common = {**redis.env(prefix), **env}
        return [make_process(**common) for _ in range(n)]

    return start


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        yield session


async def get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as answer:
        assert answer.status == 200, await answer.text()
        return await answer.json()


async def create_star(http: aiohttp.ClientSession, base: str, sid: str) -> None:
    async with http.post(f"{base}/stars", json={"x": 0.1, "y": 0.1, "message": sid, "id": sid}) as answer:
        assert answer.status == 201, await answer.text()


async def eventually(check: Callable[[], Any], within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        if await check():
            return
        assert time.monotonic() < deadline, "not within the time allowed"
        await asyncio.sleep(0.05)


async def test_likes_spread_over_three_replicas_are_exact_everywhere(
    replicas: Replicas, http: aiohttp.ClientSession
) -> None:
    nodes = replicas(3, API_RATE_LIMIT_TIMES="100000")
    await create_star(http, nodes[0].url, "vega")

    async def like(base: str) -> int:
        async with http.post(f"{base}/stars/vega/like", json={}) as answer:
            return answer.status

    statuses = await asyncio.gather(*(like(node.url) for node in nodes for _ in range(100)))
    assert statuses == [200] * 300

    async def all_see_300() -> bool:
        counts = [(await get_json(http, f"{n.url}/stars/vega"))["likes"] for n in nodes]
        return counts == [300, 300, 300]

    await eventually(all_see_300, within=2)
    for node in nodes:  # the list (the index) agrees too, not only the point read
        listed = await get_json(http, f"{node.url}/stars")
        assert [s["likes"] for s in listed] == [300]


async def test_transactions_of_many_stars_stay_exact_when_replicas_collide(
    replicas: Replicas, http: aiohttp.ClientSession, store: TableStore
) -> None:
    """Likes of different stars share a partition's transaction; three replicas write the same
    rows at once, so transactions fail at one star's operation: that star alone goes again."""
    nodes = replicas(3, API_RATE_LIMIT_TIMES="100000")
    stars = [f"star{i}" for i in range(24)]  # three per partition of a new table
    for sid in stars:
        await create_star(http, nodes[0].url, sid)

    async def like(base: str, sid: str) -> int:
        async with http.post(f"{base}/stars/{sid}/like", json={}) as answer:
            return answer.status

    wanted = {sid: 0 for sid in stars}
    statuses: list[int] = []

    async def worker(base: str, first: int) -> None:  # a steady flow: every flush finds company
        for k in range(20):
            sid = stars[(first + 5 * k) % len(stars)]
            wanted[sid] += 1
            statuses.append(await like(base, sid))

    await asyncio.gather(*(worker(node.url, w) for node in nodes for w in range(12)))
    assert statuses == [200] * 720

    async def exact_everywhere() -> bool:
        for node in nodes:
            listed = await get_json(http, f"{node.url}/stars")
            if {s["id"]: s["likes"] for s in listed} != wanted:
                return False
        return True

    await eventually(exact_everywhere, within=5)
    # And in the store itself, read by this process: every acknowledged like was written.
    stored = {sid: (await store.get(STARS, *await star_key(store, sid))).entity["likes"] for sid in stars}
    assert stored == wanted


async def test_a_star_made_on_one_replica_is_seen_and_streamed_on_another(
    replicas: Replicas, http: aiohttp.ClientSession
) -> None:
    a, b = replicas(2)
    stream_b = await open_stream(http, f"{b.url}/events/stars/stream")
    await create_star(http, a.url, "deneb")
    assert (await get_json(http, f"{b.url}/stars/deneb"))["message"] == "deneb"
    [event] = await stream_b.take(1, timeout=5)
    assert event.json() == {"topic": "stars", "type": "create", "data": event.json()["data"]}
    assert event.json()["data"]["id"] == "deneb"

    async def listed_on_b() -> bool:
        return [s["id"] for s in await get_json(http, f"{b.url}/stars")] == ["deneb"]

    await eventually(listed_on_b, within=2)
    stream_b.response.close()


async def test_last_event_id_from_one_replica_resumes_on_another(
    replicas: Replicas, http: aiohttp.ClientSession
) -> None:
    a, b = replicas(2)
    stream_a = await open_stream(http, f"{a.url}/events/stream")
    await create_star(http, a.url, "s1")
    [seen] = await stream_a.take(1, timeout=5)
    stream_a.response.close()
    for sid in ("s2", "s3"):
        await create_star(http, b.url, sid)
    async with http.post(f"{a.url}/users", json={"name": "Ada", "email": "ada@example.org"}) as answer:
        assert answer.status == 201
    resumed = await open_stream(http, f"{b.url}/events/stream", last_event_id=seen.id)
    events = [e.json() for e in await resumed.take(3, timeout=5)]
    assert [
        (e["topic"], e["type"], e["data"]["id"] if e["topic"] == "stars" else e["data"]["name"])
        for e in events
    ] == [
        ("stars", "create", "s2"),
        ("stars", "create", "s3"),
        ("users", "create", "Ada"),
    ]
    resumed.response.close()


async def test_the_rate_limit_holds_across_replicas(replicas: Replicas, http: aiohttp.ClientSession) -> None:
    nodes = replicas(3)
    await create_star(http, nodes[0].url, "polaris")
    statuses = []
    for i in range(6):
        async with http.post(f"{nodes[i % 3].url}/stars/polaris/like", json={}) as answer:
            statuses.append(answer.status)
            if answer.status == 429:
                assert int(answer.headers["Retry-After"]) >= 1
    assert statuses == [200] * 5 + [429]


async def test_redis_down_is_degraded_not_broken_and_recovers(
    replicas: Replicas, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    redis = RedisServer(tmp_path / "own-redis")
    redis.start()
    try:
        a, b = replicas(2, redis=redis, API_RATE_LIMIT_TIMES="1000")
        await create_star(http, a.url, "before")
        redis.stop()

        for i in range(5):  # every request still succeeds, on both replicas
            await create_star(http, a.url, f"during{i}")
            async with http.post(f"{b.url}/stars/during{i}/like", json={}) as answer:
                assert answer.status == 200
        ready = await get_json(http, f"{a.url}/health/readiness")
        assert ready["status"] == "ready"
        assert ready["services"]["redis"].startswith("degraded")

        redis.start()

        async def healthy_again() -> bool:
            states = [
                (await get_json(http, f"{n.url}/health/readiness"))["services"]["redis"] for n in (a, b)
            ]
            return states == ["healthy", "healthy"]

        await eventually(healthy_again, within=10)
        stream_b = await open_stream(http, f"{b.url}/events/stars/stream")
        await create_star(http, a.url, "after")
        events = [e.json() for e in await stream_b.take(1, timeout=5)]
        assert (events[0]["type"], events[0]["data"]["id"]) == ("create", "after")
        stream_b.response.close()

        async def b_lists_everything() -> bool:  # reloaded after the outage: nothing missing
            return len(await get_json(http, f"{b.url}/stars")) == 7

        await eventually(b_lists_everything, within=5)
    finally:
        redis.stop()


async def test_popularity_counts_likes_from_every_replica(
    replicas: Replicas, http: aiohttp.ClientSession
) -> None:
    a, b = replicas(2, REDIS_POPULARITY_THRESHOLD="4", API_RATE_LIMIT_TIMES="1000")
    await create_star(http, a.url, "hot")
    for node in (a, b, a, b):
        async with http.post(f"{node.url}/stars/hot/like", json={}) as answer:
            assert answer.status == 200

    async def popular_on_both() -> bool:
        ranked = [[s["id"] for s in await get_json(http, f"{n.url}/stars/popular")] for n in (a, b)]
        return ranked == [["hot"], ["hot"]]

    await eventually(popular_on_both, within=2)


async def test_a_new_replica_warms_its_index_from_the_mirror(
    replicas: Replicas, http: aiohttp.ClientSession
) -> None:
    [a] = replicas(1)
    for sid in ("m1", "m2", "m3"):
        await create_star(http, a.url, sid)
    await asyncio.sleep(0.3)  # the mirror is written in the background
    [b] = replicas(1)
    assert [s["id"] for s in await get_json(http, f"{b.url}/stars")] == ["m1", "m2", "m3"]

    async def logged() -> bool:  # log lines are written in batches (at most 0.25 s late)
        return "3 stars from the redis mirror" in b.log()

    await eventually(logged, within=2)
