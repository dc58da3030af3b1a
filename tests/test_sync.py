"""Delta sync (``GET /stars/changes``) and viewport streams (``?bbox=`` on the event streams)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from .conftest import MakeClient, MakeProcess
from .load import create_star
from .rig import RedisServer, assert_problem
from .sse_client import SseStream, open_stream

Client = TestClient[web.Request, web.Application]
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def backend() -> str:
    """Events do not depend on the store (the star tests cover both): SQLite will do."""
    return "sqlite"


async def stream(client: Client, path: str = "/events/stars/stream", **kwargs: Any) -> SseStream:
    opened = await open_stream(client.session, str(client.make_url(path)), **kwargs)
    assert opened.response.status == 200, await opened.response.text()
    return opened


async def create(client: Client, sid: str, x: float = 0, y: float = 0) -> None:
    answer = await client.post("/stars", json={"x": x, "y": y, "message": f"star {sid}", "id": sid})
    assert answer.status == 201, await answer.text()


async def first_event(client: Client, sid: str, x: float = 0, y: float = 0) -> tuple[SseStream, str]:
    """A live stream, and the id of the event of ``sid``'s creation it got: where a test starts."""
    live = await stream(client)
    await create(client, sid, x, y)
    [first] = await live.take(1)
    assert first.id is not None
    return live, first.id


async def changes(client: Client, since: str, **query: Any) -> dict[str, Any]:
    answer = await client.get("/stars/changes", params={"since": since, **query})
    assert answer.status == 200, await answer.text()
    body: dict[str, Any] = await answer.json()
    return body


# -- delta sync ---------------------------------------------------------------------------------------


async def test_changes_since_an_id_are_what_the_stream_sent_after_it(client: Client) -> None:
    live, first_id = await first_event(client, "a")
    await create(client, "b")
    await client.post("/stars/a/like", data="{}", headers=JSON)
    await client.delete("/stars/b")
    sent = await live.take(3)
    body = await changes(client, first_id)
    assert body["changes"] == [e.json() for e in sent]  # the same objects, in order
    assert [c["type"] for c in body["changes"]] == ["create", "update", "delete"]
    assert body["last_event_id"] == sent[-1].id
    assert await changes(client, body["last_event_id"]) == {"last_event_id": sent[-1].id, "changes": []}
    live.response.close()


async def test_changes_come_in_pages_without_gap_or_duplicate(client: Client) -> None:
    live, first_id = await first_event(client, "first")
    for i in range(7):
        await create(client, f"s{i}")
    got: list[dict[str, Any]] = []
    answer = await client.get("/stars/changes", params={"since": first_id, "limit": "3"})
    pages = 0
    while True:
        pages += 1
        body = await answer.json()
        got += body["changes"]
        if "Link" not in answer.headers:
            break
        assert len(body["changes"]) == 3
        next_url = answer.headers["Link"].split(";")[0].strip("<>")
        assert f"since={body['last_event_id']}" in next_url
        answer = await client.get(next_url)
    assert pages == 3
    assert [c["data"]["id"] for c in got] == [f"s{i}" for i in range(7)]
    live.response.close()


@pytest.mark.parametrize("since", ["nonsense", "1-2-3", "99999999999999-0", "", "1-0"])
async def test_an_id_not_kept_is_410_gone(client: Client, since: str) -> None:
    await create(client, "a")
    body = await assert_problem(await client.get("/stars/changes", params={"since": since}), 410)
    assert "fetch GET /stars again" in body["detail"]


async def test_an_id_older_than_the_buffer_is_410_and_a_missing_one_422(make_client: MakeClient) -> None:
    client = await make_client(SSE_REPLAY_BUFFER="5")
    live, first_id = await first_event(client, "a")
    for i in range(6):
        await create(client, f"s{i}")
    await assert_problem(await client.get("/stars/changes", params={"since": first_id}), 410)
    await assert_problem(await client.get("/stars/changes"), 422)
    await assert_problem(await client.get("/stars/changes", params={"since": first_id, "limit": "0"}), 422)
    live.response.close()


async def test_catch_up_by_rest_then_go_live_by_sse_from_the_id_it_gave(client: Client) -> None:
    live, first_id = await first_event(client, "a")
    await create(client, "b")  # missed while away
    body = await changes(client, first_id)
    assert [c["data"]["id"] for c in body["changes"]] == ["b"]
    again = await stream(client, last_event_id=body["last_event_id"])
    await create(client, "c")
    [event] = await again.take(1)
    assert event.json()["data"]["id"] == "c"  # nothing twice, nothing lost
    live.response.close()
    again.response.close()


@pytest.mark.parametrize("backend", ["azurite"])
async def test_changes_are_the_same_on_every_replica(
    make_process: MakeProcess, redis_server: RedisServer
) -> None:
    shared = redis_server.env()
    one, two = make_process(**shared), make_process(**shared)
    async with aiohttp.ClientSession() as http:
        live = await open_stream(http, f"{one.url}/events/stars/stream")
        await create_star(one.url, "a")
        [first] = await live.take(1)
        await create_star(two.url, "b")
        await create_star(one.url, "c")
        await live.take(2)
        bodies = []
        for url in (one.url, two.url):
            for _ in range(50):
                async with http.get(f"{url}/stars/changes", params={"since": first.id or ""}) as answer:
                    body = await answer.json()
                if len(body["changes"]) == 2:
                    break
                await asyncio.sleep(0.1)
            bodies.append(body)
        live.response.close()
        assert bodies[0] == bodies[1]
        assert [c["data"]["id"] for c in bodies[0]["changes"]] == ["b", "c"]


# -- viewport streams ---------------------------------------------------------------------------------

ADMIN = "an-admin-key-for-the-sync-tests-0123456789"


async def ids_and_types(sub: SseStream, count: int) -> list[tuple[str, str | None]]:
    return [(e.json()["type"], e.json()["data"].get("id")) for e in await sub.take(count)]


async def test_a_viewport_stream_gets_only_the_star_events_inside_its_box(make_client: MakeClient) -> None:
    client = await make_client(ADMIN_API_KEY=ADMIN)
    boxed = await stream(client, params={"bbox": "0,0,1,1"})
    everything = await stream(client)
    await create(client, "in", 0.5, 0.5)
    await create(client, "out", -0.5, -0.5)
    for star in ("out", "in"):
        assert (await client.post(f"/stars/{star}/like", data="{}", headers=JSON)).status == 200
    for star in ("out", "in"):
        assert (await client.delete(f"/stars/{star}")).status == 200
    await create(client, "edge", 1, 0)  # on the box's edge: inside
    assert (await client.delete("/admin/stars", headers={"X-API-Key": ADMIN})).status == 200
    assert await ids_and_types(boxed, 5) == [
        ("create", "in"),
        ("update", "in"),
        ("delete", "in"),
        ("create", "edge"),
        ("clear", None),
    ]
    assert len(await everything.take(8)) == 8  # 3 creates, 2 updates, 2 deletes, a clear
    boxed.response.close()
    everything.response.close()


async def test_resuming_a_viewport_stream_keeps_its_filter(client: Client) -> None:
    live, first_id = await first_event(client, "start", -0.9, -0.9)
    for i in range(4):
        await create(client, f"in{i}", 0.1 * i, 0.1)
        await create(client, f"out{i}", -0.1 * (i + 1), 0.1)
    resumed = await stream(client, params={"bbox": "0,0,1,1"}, last_event_id=first_id)
    await create(client, "in-live", 0.9, 0.9)
    await create(client, "out-live", -0.9, 0.9)
    await create(client, "in-last", 0.8, 0.8)
    assert [i for _, i in await ids_and_types(resumed, 6)] == [
        "in0",
        "in1",
        "in2",
        "in3",
        "in-live",
        "in-last",
    ]
    live.response.close()
    resumed.response.close()


@pytest.mark.parametrize("bbox", ["1,1,0,0", "a,b,c,d", "nan,0,1,1", "0,0,1", "0,0,1,inf"])
@pytest.mark.parametrize("path", ["/events/stars/stream", "/events/stream"])
async def test_a_bad_box_is_a_400_before_the_stream_starts(client: Client, path: str, bbox: str) -> None:
    answer = await client.get(path, params={"bbox": bbox})
    body = await assert_problem(answer, 400)
    assert "bbox" in body["detail"]


async def test_a_combined_viewport_stream_still_gets_every_user_event(client: Client) -> None:
    sub = await stream(client, "/events/stream", params={"bbox": "0,0,1,1"})
    await create(client, "out", -0.5, -0.5)
    assert (await client.post("/users", json={"name": "Ada", "email": "ada@example.org"})).status == 201
    await create(client, "in", 0.5, 0.5)
    events = [e.json() for e in await sub.take(2)]
    assert [(e["topic"], e["type"]) for e in events] == [("users", "create"), ("stars", "create")]
    sub.response.close()
