"""Health endpoints on each backend, and readiness that really reaches the store."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from starmap import __version__
from starmap.app import create_app
from starmap.settings import load_settings

from .rig import Azurite

Client = TestClient[web.Request, web.Application]


def _is_iso_utc(value: str) -> bool:
    return (
        value.endswith("Z") and datetime.fromisoformat(value.replace("Z", "+00:00")).utcoffset() is not None
    )


async def test_health(client: Client) -> None:
    answer = await client.get("/health")
    assert answer.status == 200
    body = await answer.json()
    assert body["status"] == "healthy"
    assert body["version"] == __version__
    assert body["environment"] == "test"
    assert _is_iso_utc(body["timestamp"])


async def test_liveness(client: Client) -> None:
    body = await (await client.get("/health/liveness")).json()
    assert body["status"] == "alive"
    assert _is_iso_utc(body["timestamp"])


async def test_readiness_reaches_the_store(client: Client) -> None:
    answer = await client.get("/health/readiness")
    assert answer.status == 200
    body = await answer.json()
    assert body["status"] == "ready"
    assert body["services"] == {"storage": "healthy", "redis": "not configured"}


async def test_readiness_follows_the_store_down_and_back(tmp_path: Path, aiohttp_client: Any) -> None:
    azurite = Azurite(tmp_path / "azurite")
    azurite.start()
    try:
        settings = load_settings(
            {"ENVIRONMENT": "test", "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string},
            root=tmp_path,
        )
        client: Client = await aiohttp_client(create_app(settings))
        assert (await client.get("/health/readiness")).status == 200

        azurite.stop()
        down = await client.get("/health/readiness")
        assert down.status == 503
        body = await down.json()
        assert body["status"] == "not_ready"
        assert body["services"]["storage"].startswith("unhealthy")
        assert (await client.get("/health/liveness")).status == 200  # alive all the same

        azurite.start()
        assert (await client.get("/health/readiness")).status == 200
    finally:
        azurite.stop()
