"""Hostile input: idle and slow connections, header and path injection, quotes, the admin key."""

from __future__ import annotations

import asyncio
import hmac
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from .conftest import MakeClient, MakeProcess
from .rig import RedisServer, StarmapProcess, raw_exchange

Client = TestClient[web.Request, web.Application]


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.mark.slow
async def test_thousands_of_idle_and_slow_connections_do_not_starve_the_server(
    make_process: MakeProcess,
) -> None:
    proc = make_process()
    loop = asyncio.get_running_loop()
    idle: list[socket.socket] = []
    for i in range(2000):
        sock = socket.socket()
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", proc.port))
        if i % 2:
            await loop.sock_sendall(sock, b"GET /health HTTP/1.1\r\nHo")  # slowloris: never finishes
        idle.append(sock)
    try:
        async with aiohttp.ClientSession() as http:
            for round_ in range(10):
                for sock in idle[1::2][round_ * 100 : (round_ + 1) * 100]:
                    await loop.sock_sendall(sock, b"s")  # a byte now and then, as slowloris does
                started = time.monotonic()
                async with http.get(f"{proc.url}/health/liveness") as answer:
                    assert answer.status == 200
                assert time.monotonic() - started < 1.0
    finally:
        for sock in idle:
            sock.close()


async def test_crlf_in_headers_and_paths_injects_nothing(client: Client) -> None:
    port = client.server.port
    assert port is not None
    answer = await asyncio.to_thread(
        raw_exchange,
        port,
        b"GET /stars/a%0D%0ASet-Cookie:%20evil=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"X-Request-ID: id%0D%0AX-Evil: 1\r\n\r\n",
    )
    head = answer.split(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 404")
    assert b"set-cookie" not in head
    assert b"x-evil" not in head
    made = [line for line in head.split(b"\r\n") if line.startswith(b"x-request-id:")]
    assert made and b"%" not in made[0]  # the offered id was not sane: replaced

    raw = await asyncio.to_thread(
        raw_exchange, port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Bad: a\rb\r\n\r\n"
    )
    assert raw.split(b"\r\n")[0].endswith(b" 400 Bad Request")  # a bare CR in a header: refused

    body = {"x": 0, "y": 0, "message": "m", "id": "a\r\nLocation: /evil"}
    refused = await client.post("/stars", json=body)
    assert refused.status == 422
    assert "evil" not in refused.headers.get("Location", "")


async def test_quotes_and_or_in_values_and_keys_round_trip(client: Client) -> None:
    email = "o'brien'or'1'eq'1@example.org"
    created = await client.post("/users", json={"name": "' or ''='", "email": email})
    assert created.status == 201
    user = await created.json()
    assert (user["name"], user["email"]) == ("' or ''='", email)
    again = await client.post("/users", json={"name": "Other", "email": email.upper()})
    assert again.status == 409  # the claim key with its quotes is matched exactly, not as a filter
    other = await client.post("/users", json={"name": "Other", "email": "o'brien@example.org"})
    assert other.status == 201
    message = "it's a \"quoted\" star' or PartitionKey ne '"
    star = await client.post("/stars", json={"x": 0, "y": 0, "message": message, "user_id": user["id"]})
    assert star.status == 201
    listed = await (await client.get(f"/users/{user['id']}/stars")).json()
    assert [s["message"] for s in listed] == [message]
    assert await (await client.get(f"/users/{(await other.json())['id']}/stars")).json() == []


async def test_the_admin_key_is_compared_in_constant_time(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def recording(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return original(a, b)

    monkeypatch.setattr("starmap.http.admin.hmac.compare_digest", recording)
    client = await make_client(ADMIN_API_KEY="the-admin-key")
    assert (await client.get("/admin/status", headers={"X-API-Key": "guess"})).status == 401
    assert (await client.get("/admin/status", headers={"X-API-Key": "the-admin-key"})).status == 200
    assert compared == [(b"guess", b"the-admin-key"), (b"the-admin-key", b"the-admin-key")]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["azurite"])
async def test_no_secret_in_any_log_line(make_process: MakeProcess, tmp_path: Path, backend: str) -> None:
    """Every secret configured, DEBUG logs, every path that logs; then grep."""
    redis = RedisServer(tmp_path / "redis", password="redis-pass-do-not-log")
    redis.start()
    try:
        proc: StarmapProcess = make_process(
            ADMIN_API_KEY="admin-key-do-not-log",
            **redis.env(),
            LOG_LEVEL="DEBUG",
            LOG_FORMAT="json",
        )
        async with aiohttp.ClientSession() as http:
            for method, path, headers in [
                ("GET", "/health/readiness", {}),
                ("GET", "/admin/status", {"X-API-Key": "wrong"}),
                ("GET", "/admin/status", {"X-API-Key": "admin-key-do-not-log"}),
                ("POST", "/stars", {}),
                ("GET", "/nope", {}),
            ]:
                async with http.request(method, f"{proc.url}{path}", headers=headers) as answer:
                    await answer.read()
        redis.stop()  # a Redis error path logs too
        async with aiohttp.ClientSession() as http, http.get(f"{proc.url}/health/readiness") as answer:
            assert (await answer.json())["services"]["redis"].startswith("degraded")
        proc.stop()
    finally:
        redis.stop()
    log = proc.log()
    assert '"level":"DEBUG"' in log or '"level":"INFO"' in log
    conn = proc.environ["AZURE_STORAGE_CONNECTION_STRING"]
    account_key = conn.split("AccountKey=")[1].split(";")[0]
    for secret in ("admin-key-do-not-log", "redis-pass-do-not-log", conn, account_key):
        assert secret not in log
