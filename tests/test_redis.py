"""Redis mode in one process: the global limiter at extreme settings, and what degrades the link."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from starmap.app import REDIS
from starmap.keys import ACTORS

from .conftest import MakeClient, MakeProcess
from .rig import RedisServer
from .sse_client import open_stream

Client = TestClient[web.Request, web.Application]


@pytest.fixture
def backend() -> str:
    return "sqlite"


async def redis_client(make_client: MakeClient, redis_server: RedisServer, **env: str) -> Client:
    return await make_client(**redis_server.env(), **env)


async def test_a_huge_limit_stays_global_and_healthy(
    make_client: MakeClient, redis_server: RedisServer
) -> None:
    """A tiny GCRA interval once made the script's expiry 0 ms, which Redis refuses."""
    client = await redis_client(make_client, redis_server, API_RATE_LIMIT_TIMES="1000000000")
    assert (await client.post("/stars", json={"x": 0, "y": 0, "message": "m", "id": "s"})).status == 201
    answers = await asyncio.gather(*(client.post("/stars/s/like", json={}) for _ in range(50)))
    assert [a.status for a in answers] == [200] * 50
    readiness = await (await client.get("/health/readiness")).json()
    assert readiness["services"]["redis"] == "healthy"
    limiter = client.app[ACTORS].describe_actor("ratelimit", "local")
    assert limiter is not None
    state = limiter["state"]
    assert state["global_decisions"] == 50
    assert state["local_decisions"] == 0


async def test_a_command_redis_refuses_is_not_an_outage(
    make_client: MakeClient, redis_server: RedisServer
) -> None:
    client = await redis_client(make_client, redis_server)
    redis_link = client.app[REDIS]
    assert redis_link is not None
    with pytest.raises(Exception, match="unknown command"):
        await redis_link.call(lambda: redis_link.client.execute_command("NO-SUCH-COMMAND"))  # type: ignore[no-untyped-call]
    assert redis_link.up
    assert (await (await client.get("/health/readiness")).json())["services"]["redis"] == "healthy"


@pytest.mark.slow
async def test_resuming_from_an_id_the_stream_trimmed_is_a_resync(
    make_process: MakeProcess, redis_server: RedisServer
) -> None:
    """A replica primes its replay from the shared stream: what the stream no longer holds is
    answered with one resync, what it holds is replayed exactly."""
    import redis

    env = redis_server.env()
    first = make_process(**env)
    async with aiohttp.ClientSession() as http:
        live = await open_stream(http, f"{first.url}/events/stars/stream")
        for i in range(10):
            body = {"x": 0, "y": 0, "message": f"m{i}", "id": f"t{i}"}
            async with http.post(f"{first.url}/stars", json=body) as answer:
                assert answer.status == 201
        ids = [e.id for e in await live.take(10, timeout=10)]
        live.response.close()
        stream_key = f"{env['REDIS_KEY_PREFIX']}events"
        with redis.Redis(port=redis_server.port) as direct:
            assert direct.xtrim(stream_key, maxlen=3, approximate=False) == 7
        second = make_process(**env)  # primes from what the stream still holds: the last three
        trimmed = await open_stream(http, f"{second.url}/events/stars/stream", last_event_id=ids[0])
        [event] = await trimmed.take(1, timeout=10)
        assert event.json()["type"] == "resync"
        trimmed.response.close()
        kept = await open_stream(http, f"{second.url}/events/stars/stream", last_event_id=ids[7])
        assert [e.json()["data"]["id"] for e in await kept.take(2, timeout=10)] == ["t8", "t9"]
        kept.response.close()
