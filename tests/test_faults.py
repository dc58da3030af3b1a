"""Faults survived, with the real servers stopped and started under load."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from starmap.settings import load_settings
from starmap.stars import STARS
from starmap.storage import open_store

from .conftest import MakeProcess
from .load import LikeStorm, create_star, likes_of
from .rig import Azurite, RedisServer, StarmapProcess
from .sse_client import open_stream
from .tables import star_key

pytestmark = pytest.mark.slow


async def get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url) as answer:
        return answer.status, await answer.json(content_type=None)


async def wait_until(check: Any, within: float) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "not within the time allowed"
        await asyncio.sleep(0.1)


async def test_a_storage_outage_under_a_like_storm(tmp_path: Path) -> None:
    """Azurite stops mid-storm and comes back: 503s meanwhile, reads from memory, nothing lost."""
    azurite = Azurite(tmp_path / "azurite", persist=True)
    azurite.start()
    proc = StarmapProcess(
        tmp_path / "proc",
        {
            "ENVIRONMENT": "test",
            "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
            "API_RATE_LIMIT_TIMES": "1000000",
            "LIKE_WRITE_DEADLINE": "1",
            "STORAGE_TIMEOUT": "2",
        },
    )
    proc.start()
    try:
        stars = ["a", "b", "c"]
        for star in stars:
            await create_star(proc.url, star)
        storm = LikeStorm([proc.url], stars, concurrency=16)
        async with storm:
            await asyncio.sleep(1.0)
            azurite.stop()
            down_since = storm.statuses[503]
            await wait_until(lambda: _more(storm, 503, down_since + 20), within=20)
            status, ready = await get(f"{proc.url}/health/readiness")
            assert (status, ready["status"]) == (503, "not_ready")
            status, listed = await get(f"{proc.url}/stars")  # reads come from memory
            assert status == 200
            assert sorted(s["id"] for s in listed) == stars
            assert (await get(f"{proc.url}/stars/a"))[0] == 200

            azurite.start()
            await wait_until(lambda: _ready(proc.url), within=20)
            back_at = storm.statuses[200]
            await wait_until(lambda: _more(storm, 200, back_at + 50), within=20)  # recovered, no restart
        assert storm.statuses[503] >= 20
        assert storm.retry_after_seen == storm.statuses[503]  # every 503 said when to come back
        assert set(storm.statuses) <= {200, 503}
        served = {star: await likes_of(proc.url, star) for star in stars}
        proc.stop()
        # Durability is read from Azurite itself, by this (another) process, not from the
        # service's memory: what was acknowledged is in the table.
        store = open_store(load_settings({"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}))
        try:
            stored = {
                star: (await store.get(STARS, *await star_key(store, star))).entity["likes"] for star in stars
            }
        finally:
            await store.close()
        assert stored == served
        for star in stars:
            assert stored[star] >= storm.acked[star], star  # no acknowledged like lost
        excess = sum(stored.values()) - storm.total_acked
        assert 0 <= excess <= storm.concurrency  # at most the batches cut off in flight
    finally:
        proc.stop()
        azurite.stop()


async def _more(storm: LikeStorm, status: int, than: int) -> bool:
    return storm.statuses[status] >= than


async def _ready(url: str) -> bool:
    return (await get(f"{url}/health/readiness"))[0] == 200


@pytest.mark.parametrize("backend", ["azurite"])
async def test_a_replica_lost_its_stream_clients_resume_on_another(
    make_process: MakeProcess, redis_server: RedisServer, backend: str
) -> None:
    env = redis_server.env()
    a, b = make_process(**env), make_process(**env)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        on_a = await open_stream(http, f"{a.url}/events/stream")
        for star in ("s1", "s2"):
            await create_star(b.url, star)
        seen = await on_a.take(2, timeout=5)
        a.kill()  # the replica dies under its client
        for star in ("s3", "s4", "s5"):  # life goes on elsewhere meanwhile
            await create_star(b.url, star)
        assert await on_a.ended(timeout=5)
        on_a.response.close()
        # What a browser does: reconnect (the load balancer sends it to b) with the last id.
        on_b = await open_stream(http, f"{b.url}/events/stream", last_event_id=seen[-1].id)
        await create_star(b.url, "s6")
        resumed = [e.json()["data"]["id"] for e in await on_b.take(4, timeout=5)]
        assert resumed == ["s3", "s4", "s5", "s6"]  # nothing missed, nothing twice
        on_b.response.close()
