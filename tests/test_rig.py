"""The test rig itself: the servers it starts are real, on their own ports."""

from __future__ import annotations

import redis.asyncio as aioredis

from starmap.storage.azure import AzureTableStore

from .rig import Azurite, RedisServer


async def test_redis_server_is_real_and_not_the_default_port(redis_server: RedisServer) -> None:
    assert redis_server.port != 6379
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        assert await client.ping()
        info = await client.info("server")
        assert int(info["tcp_port"]) == redis_server.port
    finally:
        await client.aclose()


async def test_azurite_is_real(azurite: Azurite) -> None:
    store = AzureTableStore.from_connection_string(
        azurite.connection_string, table_prefix="", max_concurrency=32, timeout=10.0
    )
    try:
        await store.ping()
    finally:
        await store.close()
