"""Redis mode in one process: the global limiter at extreme settings, and what degrades the link."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from starmap.app import REDIS
from starmap.keys import ACTORS

from .conftest import MakeClient
from .rig import RedisServer

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
