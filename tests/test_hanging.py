"""Dependencies that hang (accept, never answer), not just ones that refuse: Azurite and Redis
behind the rig's HangProxy, real processes, bounded answers, recovery without a restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from starmap.settings import load_settings
from starmap.stars import STARS
from starmap.storage import open_store

from .hangproxy import HangProxy
from .load import LikeStorm, create_star
from .rig import Azurite, RedisServer, StarmapProcess
from .tables import star_key

pytestmark = pytest.mark.slow

STORAGE_TIMEOUT = 2.0


@pytest.fixture
def azurite_behind_a_proxy(tmp_path: Path) -> Iterator[tuple[Azurite, HangProxy]]:
    azurite = Azurite(tmp_path / "azurite")
    azurite.start()
    proxy = HangProxy(azurite.port)
    proxy.start()
    yield azurite, proxy
    proxy.stop()
    azurite.stop()


def through(azurite: Azurite, proxy: HangProxy) -> str:
    return azurite.connection_string.replace(f":{azurite.port}/", f":{proxy.port}/")


async def timed_get(url: str) -> tuple[int, Any, float]:
    started = time.monotonic()
    async with aiohttp.ClientSession() as http, http.get(url) as answer:
        return answer.status, await answer.json(content_type=None), time.monotonic() - started


async def test_a_hanging_store_is_a_bounded_503_and_heals_without_a_restart(
    azurite_behind_a_proxy: tuple[Azurite, HangProxy], tmp_path: Path
) -> None:
    azurite, proxy = azurite_behind_a_proxy
    proc = StarmapProcess(tmp_path / "proc", {
        "ENVIRONMENT": "test", "AZURE_STORAGE_CONNECTION_STRING": through(azurite, proxy),
        "API_RATE_LIMIT_TIMES": "1000000", "LIKE_WRITE_DEADLINE": "1",
        "STORAGE_TIMEOUT": str(STORAGE_TIMEOUT),
    })  # fmt: skip
    proc.start()
    try:
        for star in ("a", "b"):
            await create_star(proc.url, star)
        storm = LikeStorm([proc.url], ["a", "b"], concurrency=8)
        async with storm:
            await asyncio.sleep(0.5)
            proxy.hang = True
            await asyncio.sleep(STORAGE_TIMEOUT + 1.5)  # what was in flight has answered by now
            started = time.monotonic()
            async with (
                aiohttp.ClientSession() as http,
                http.post(f"{proc.url}/stars/a/like", json={}) as answer,
            ):
                took = time.monotonic() - started
                assert answer.status == 503 and answer.headers["Retry-After"]
            # The write's timeout, the like's retry deadline, and a margin: not a hang.
            assert took < STORAGE_TIMEOUT + 1 + 2, took
            status, ready, took = await timed_get(f"{proc.url}/health/readiness")
            assert (status, ready["status"]) == (503, "not_ready") and took < 2 + 1
            status, _, _ = await timed_get(f"{proc.url}/stars")  # reads from memory
            assert status == 200
            proxy.hang = False
            deadline = time.monotonic() + 30
            while (await timed_get(f"{proc.url}/health/readiness"))[0] != 200:
                assert time.monotonic() < deadline, "readiness never came back"
                await asyncio.sleep(0.2)
            back = storm.statuses[200]
            while storm.statuses[200] < back + 20:
                assert time.monotonic() < deadline, "likes never came back"
                await asyncio.sleep(0.1)
        assert storm.statuses[503] and storm.retry_after_seen == storm.statuses[503]
        proc.stop()
        store = open_store(load_settings({"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}))
        try:  # read from Azurite directly, by another process than the service
            stored = {
                s: (await store.get(STARS, *await star_key(store, s))).entity["likes"] for s in ("a", "b")
            }
        finally:
            await store.close()
        for star, count in stored.items():
            assert count >= storm.acked[star], star  # nothing acknowledged was lost
    finally:
        proc.kill()


async def test_a_hanging_redis_degrades_like_a_missing_one_and_recovers(
    make_process: Any, redis_server: RedisServer
) -> None:
    proxy = HangProxy(redis_server.port)
    proxy.start()
    try:
        env = {**redis_server.env(), "REDIS_PORT": str(proxy.port), "API_RATE_LIMIT_TIMES": "1000000"}
        proc = make_process(**env)
        await create_star(proc.url, "r")
        status, ready, _ = await timed_get(f"{proc.url}/health/readiness")
        assert ready["services"]["redis"] == "healthy"
        proxy.hang = True
        status, ready, took = await timed_get(f"{proc.url}/health/readiness")
        assert status == 200 and took < 2 + 1.5  # Redis never gates readiness, nor stalls it
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 20
            while True:  # once the link is marked down, likes go the single-replica way, quickly
                started = time.monotonic()
                async with http.post(f"{proc.url}/stars/r/like", json={}) as answer:
                    assert answer.status == 200, await answer.text()
                if time.monotonic() - started < 0.5:
                    break
                assert time.monotonic() < deadline, "likes stayed slow with Redis hanging"
            status, ready, _ = await timed_get(f"{proc.url}/health/readiness")
            assert ready["services"]["redis"].startswith("degraded")
            proxy.hang = False
            while (await timed_get(f"{proc.url}/health/readiness"))[1]["services"]["redis"] != "healthy":
                assert time.monotonic() < deadline + 20, "Redis never came back"
                await asyncio.sleep(0.2)
            async with http.post(f"{proc.url}/stars/r/like", json={}) as answer:
                assert answer.status == 200
    finally:
        proxy.stop()
