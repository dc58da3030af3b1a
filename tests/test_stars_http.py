"""The star lifecycle over real HTTP, on the embedded store and on Azurite."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from starmap.app import STORE, create_app
from starmap.errors import NotFound
from starmap.keys import HUB
from starmap.stars import STARS
from starmap.storage import TableStore
from starmap.users import USER_STARS, USERS, User, user_to_entity

from .conftest import MakeClient, MakeSettings
from .faults import faulty_factory
from .tables import star_key

Client = TestClient[web.Request, web.Application]
MANY_LIKES = {"API_RATE_LIMIT_TIMES": "100000"}


async def create(client: Client, **body: Any) -> dict[str, Any]:
    answer = await client.post("/stars", json={"x": 0.1, "y": 0.2, "message": "hi", **body})
    assert answer.status == 201, await answer.text()
    star: dict[str, Any] = await answer.json()
    return star


async def stored_count(client: Client) -> int:
    return await client.app[STORE].count(STARS)


# -- create, read, list, delete ------------------------------------------------------


async def test_create_then_get(client: Client) -> None:
    answer = await client.post(
        "/stars", json={"x": -0.5, "y": 0.75, "message": "first light", "brightness": 80}
    )
    assert answer.status == 201
    star = await answer.json()
    assert answer.headers["Location"] == f"/stars/{star['id']}"
    assert set(star) == {
        "id", "x", "y", "message", "brightness", "base_brightness", "last_liked", "likes", "created_at",
        "user_id", "is_popular",
    }  # fmt: skip
    assert (star["x"], star["y"], star["message"], star["likes"], star["user_id"]) == (
        -0.5,
        0.75,
        "first light",
        0,
        None,
    )
    assert 79.9 < star["brightness"] <= 80
    assert star["last_liked"] == star["created_at"]
    assert star["is_popular"] is False
    got = await (await client.get(f"/stars/{star['id']}/")).json()
    assert {k: v for k, v in got.items() if k != "brightness"} == {
        k: v for k, v in star.items() if k != "brightness"
    }
    assert await stored_count(client) == 1


async def test_client_chosen_id_and_duplicate_is_409(client: Client) -> None:
    await create(client, id="sirius")
    again = await client.post("/stars", json={"x": 0, "y": 0, "message": "again", "id": "sirius"})
    assert again.status == 409
    assert again.content_type == "application/problem+json"
    assert (await (await client.get("/stars/sirius")).json())["message"] == "hi"


async def test_unknown_star_is_404(client: Client) -> None:
    for method, path in [("GET", "/stars/nope"), ("DELETE", "/stars/nope"), ("POST", "/stars/nope/like"),
                         ("GET", "/stars/bad%20id"), ("POST", "/stars/a'b/like")]:  # fmt: skip
        answer = await client.request(method, path, json={} if method == "POST" else None)
        assert answer.status == 404, (method, path)
        assert answer.content_type == "application/problem+json"


BAD_BODIES = [
    ({"x": True, "y": 0, "message": "m"}, 422),
    ({"x": "0", "y": 0, "message": "m"}, 422),
    ({"x": 2, "y": 0, "message": "m"}, 422),
    ({"x": 0, "y": 0, "message": ""}, 422),
    ({"x": 0, "y": 0, "message": "x" * 281}, 422),
    ({"x": 0, "y": 0, "message": "a\x1bb"}, 422),
    ({"x": 0, "y": 0, "message": "m", "brightness": 101}, 422),
    ({"x": 0, "y": 0, "message": "m", "id": "no/slash"}, 422),
    ({"x": 0, "y": 0, "message": "m", "user_id": "ghost"}, 404),
    ({"y": 0, "message": "m"}, 422),
    ([1, 2], 400),
    ("not json", 400),
]


@pytest.mark.parametrize(("body", "status"), BAD_BODIES, ids=[str(i) for i in range(len(BAD_BODIES))])
async def test_bad_input_is_refused_and_nothing_is_written(client: Client, body: object, status: int) -> None:
    if isinstance(body, str):
        answer = await client.post("/stars", data=body, headers={"Content-Type": "application/json"})
    else:
        answer = await client.post("/stars", json=body)
    assert answer.status == status
    assert answer.content_type == "application/problem+json"
    assert await (await client.get("/stars")).json() == []
    assert await stored_count(client) == 0


async def test_list_pages_with_a_link_header(client: Client) -> None:
    ids = [(await create(client, id=f"s{i}"))["id"] for i in range(7)]
    assert [s["id"] for s in await (await client.get("/stars")).json()] == ids
    seen: list[str] = []
    url: str | None = "/stars?limit=3"
    while url is not None:
        answer = await client.get(url)
        seen += [s["id"] for s in await answer.json()]
        link = answer.headers.get("Link")
        url = link[1 : link.index(">")] if link else None
        assert link is None or link.endswith('rel="next"')
    assert seen == ids


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=1001", "limit=x", "bbox=1,2,3", "bbox=0,0,-1,1", "bbox=a,b,c,d", "limit=2&cursor=zz"],
)
async def test_bad_list_parameters_are_422(client: Client, query: str) -> None:
    answer = await client.get(f"/stars?{query}")
    assert answer.status == 422
    assert answer.content_type == "application/problem+json"


async def test_bbox_keeps_the_viewport(client: Client) -> None:
    await create(client, id="in", x=0.5, y=0.5)
    await create(client, id="edge", x=0.0, y=0.0)
    await create(client, id="out", x=-0.5, y=0.5)
    inside = await (await client.get("/stars?bbox=0,0,1,1")).json()
    assert [s["id"] for s in inside] == ["in", "edge"]


async def test_batch_returns_the_stars_that_exist_in_the_order_asked(client: Client) -> None:
    for sid in ("a", "b", "c"):
        await create(client, id=sid)
    answer = await client.get("/stars/batch/c,nope,a,a,bad%27id")
    assert [s["id"] for s in await answer.json()] == ["c", "a"]
    too_many = ",".join(f"i{i}" for i in range(101))
    assert (await client.get(f"/stars/batch/{too_many}")).status == 422


async def test_delete(client: Client) -> None:
    await create(client, id="gone")
    answer = await client.delete("/stars/gone")
    assert (answer.status, await answer.json()) == (200, {"id": "gone", "status": "deleted"})
    assert (await client.get("/stars/gone")).status == 404
    assert (await client.post("/stars/gone/like", json={})).status == 404
    assert await stored_count(client) == 0
    await create(client, id="gone")  # the id is free again, with fresh likes
    assert (await (await client.post("/stars/gone/like", json={})).json())["likes"] == 1


# -- likes ------------------------------------------------------------------------------


async def test_200_concurrent_likes_are_all_counted(make_client: MakeClient) -> None:
    client = await make_client(**MANY_LIKES)
    await create(client, id="vega")
    answers = await asyncio.gather(*(client.post("/stars/vega/like", json={}) for _ in range(200)))
    assert [a.status for a in answers] == [200] * 200
    likes = [(await a.json())["likes"] for a in answers]
    assert max(likes) == 200
    star = await (await client.get("/stars/vega")).json()
    assert star["likes"] == 200
    stored = await client.app[STORE].get(STARS, *await star_key(client.app[STORE], "vega"))
    assert stored.entity["likes"] == 200
    updates = [e for e in client.app[HUB].recent if e.type == "update"]
    assert 1 <= len(updates) < 200  # conflated: one per flush, not one per like
    assert updates[-1].data["likes"] == 200


async def test_a_like_brightens_and_records_the_user(client: Client) -> None:
    store: TableStore = client.app[STORE]
    await store.insert(USERS, user_to_entity(User("ada", "Ada", "ada@example.org", 0.0)))
    await create(client, id="deneb", brightness=50)
    answer = await client.post("/stars/deneb/like", json={"user_id": "ada"})
    body = await answer.json()
    assert answer.status == 200
    assert set(body) == {"id", "brightness", "base_brightness", "last_liked", "likes"}
    assert body["likes"] == 1
    assert 69.9 < body["brightness"] <= 70
    relation = await store.get(USER_STARS, "ada", "liked:deneb")
    assert relation.entity["star_id"] == "deneb"
    ghost = await client.post("/stars/deneb/like", json={"user_id": "ghost"})
    assert ghost.status == 404
    assert (await (await client.get("/stars/deneb")).json())["likes"] == 1


async def test_a_star_placed_by_a_user_is_recorded(client: Client) -> None:
    store: TableStore = client.app[STORE]
    await store.insert(USERS, user_to_entity(User("bob", "Bob", "bob@example.org", 0.0)))
    star = await create(client, id="altair", user_id="bob")
    assert star["user_id"] == "bob"
    assert (await store.get(USER_STARS, "bob", "placed:altair")).entity["star_id"] == "altair"


@pytest.mark.parametrize("body", ["[1]", '{"user_id": 5}', '{"user_id": "a b"}'])
async def test_a_bad_like_body_changes_nothing(client: Client, body: str) -> None:
    await create(client, id="rigel")
    answer = await client.post("/stars/rigel/like", data=body, headers={"Content-Type": "application/json"})
    assert answer.status in (400, 422)
    assert (await (await client.get("/stars/rigel")).json())["likes"] == 0


# -- rate limits --------------------------------------------------------------------------


async def test_the_sixth_like_in_a_minute_is_429(client: Client) -> None:
    await create(client, id="polaris")
    statuses = []
    for _ in range(6):
        answer = await client.post("/stars/polaris/like", json={})
        statuses.append(answer.status)
        assert answer.headers["RateLimit-Limit"] == "5"
    assert statuses == [200] * 5 + [429]
    assert answer.content_type == "application/problem+json"
    assert 1 <= int(answer.headers["Retry-After"]) <= 12
    assert answer.headers["RateLimit-Remaining"] == "0"
    assert (await (await client.get("/stars/polaris")).json())["likes"] == 5


async def likes_as(client: Client, star: str, forwarded_for: str | None) -> list[int]:
    """Six likes with this X-Forwarded-For: the statuses (the limit is five a minute)."""
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for is not None else {}
    return [(await client.post(f"/stars/{star}/like", json={}, headers=headers)).status for _ in range(6)]


async def test_forwarded_for_is_ignored_from_a_client_talking_directly(make_client: MakeClient) -> None:
    direct = await make_client()  # no trusted proxies: the peer (127.0.0.1) is the client
    await create(direct, id="mira")
    statuses = [
        (await direct.post("/stars/mira/like", json={}, headers={"X-Forwarded-For": f"10.0.0.{i}"})).status
        for i in range(6)
    ]
    assert statuses == [200] * 5 + [429]  # a new header per like bought nothing


async def test_behind_one_proxy_the_hop_it_added_is_the_client(make_client: MakeClient) -> None:
    proxied = await make_client(API_TRUSTED_PROXIES="127.0.0.1")  # the test client plays the proxy
    await create(proxied, id="mira")
    assert await likes_as(proxied, "mira", "203.0.113.9") == [200] * 5 + [429]
    # The client wrote its own X-Forwarded-For; an appending proxy added the real address.
    forged = await proxied.post(
        "/stars/mira/like", json={}, headers={"X-Forwarded-For": "10.9.9.9, 203.0.113.9"}
    )
    assert forged.status == 429
    assert await likes_as(proxied, "mira", "198.51.100.7") == [200] * 5 + [429]  # another client: its own


async def test_behind_two_proxies_the_first_untrusted_hop_from_the_right_is_the_client(
    make_client: MakeClient,
) -> None:
    chain = await make_client(API_TRUSTED_PROXIES="127.0.0.1,10.1.0.0/16")
    await create(chain, id="mira")
    # client -> edge proxy (10.1.0.5, appends) -> us: the client is left of the inner proxy.
    assert await likes_as(chain, "mira", "198.51.100.7, 10.1.0.5") == [200] * 5 + [429]
    forged = "1.2.3.4, 198.51.100.7, 10.1.0.5"  # the client's own header, then the proxies'
    assert (await chain.post("/stars/mira/like", json={}, headers={"X-Forwarded-For": forged})).status == 429


# -- durability ------------------------------------------------------------------------------


async def test_restart_keeps_stars_likes_and_brightness(
    aiohttp_client: Callable[..., Awaitable[Client]], make_settings: MakeSettings
) -> None:
    settings = make_settings(**MANY_LIKES)
    first = await aiohttp_client(create_app(settings))
    for sid, x in (("a", -0.5), ("b", 0.5)):
        await create(first, id=sid, x=x, brightness=40)
    for _ in range(3):
        await first.post("/stars/b/like", json={})
    before = {s["id"]: s for s in await (await first.get("/stars")).json()}
    await first.close()

    second = await aiohttp_client(create_app(settings))
    after = {s["id"]: s for s in await (await second.get("/stars")).json()}
    assert set(after) == {"a", "b"}
    assert after["b"]["likes"] == 3
    for sid in ("a", "b"):
        assert after[sid]["brightness"] == pytest.approx(before[sid]["brightness"], abs=0.01)
        assert after[sid]["created_at"] == before[sid]["created_at"]
    assert [s["id"] for s in await (await second.get("/stars?bbox=0,-1,1,1")).json()] == ["b"]
    assert (await (await second.post("/stars/b/like", json={})).json())["likes"] == 4


async def test_a_storage_failure_fails_the_whole_batch_and_changes_nothing(
    aiohttp_client: Callable[..., Awaitable[Client]], make_settings: MakeSettings
) -> None:
    faulty, factory = faulty_factory()
    settings = make_settings(LIKE_WRITE_DEADLINE="0.3", **MANY_LIKES)
    client = await aiohttp_client(create_app(settings, store_factory=factory))
    await create(client, id="antares")
    assert (await (await client.post("/stars/antares/like", json={})).json())["likes"] == 1
    events_before = len(client.app[HUB].recent)

    faulty[0].down.add(("update", STARS))
    answers = await asyncio.gather(*(client.post("/stars/antares/like", json={}) for _ in range(20)))
    assert [a.status for a in answers] == [503] * 20
    assert all(a.headers["Retry-After"] for a in answers)
    assert all(a.content_type == "application/problem+json" for a in answers)
    assert faulty[0].refused >= 1
    assert (await (await client.get("/stars/antares")).json())["likes"] == 1
    assert (await faulty[0].inner.get(STARS, *await star_key(faulty[0].inner, "antares"))).entity[
        "likes"
    ] == 1
    assert len(client.app[HUB].recent) == events_before  # no event for what did not happen

    faulty[0].down.clear()
    assert (await (await client.post("/stars/antares/like", json={})).json())["likes"] == 2


async def test_a_like_answered_503_records_no_liked_relation(
    aiohttp_client: Callable[..., Awaitable[Client]], make_settings: MakeSettings
) -> None:
    """Who liked what is recorded only once the like is durable (by the user registry)."""
    faulty, factory = faulty_factory()
    client = await aiohttp_client(create_app(make_settings(LIKE_WRITE_DEADLINE="0.3"), store_factory=factory))
    await faulty[0].inner.insert(USERS, user_to_entity(User("vera", "Vera", "vera@example.org", 0.0)))
    await create(client, id="rigel")
    faulty[0].down.add(("update", STARS))
    failed = await client.post("/stars/rigel/like", json={"user_id": "vera"})
    assert failed.status == 503
    with pytest.raises(NotFound):
        await faulty[0].inner.get(USER_STARS, "vera", "liked:rigel")
    faulty[0].down.clear()
    assert (await client.post("/stars/rigel/like", json={"user_id": "vera"})).status == 200
    assert (await faulty[0].inner.get(USER_STARS, "vera", "liked:rigel")).entity["star_id"] == "rigel"


# -- active and popular ------------------------------------------------------------------------


async def test_active_and_popular(make_client: MakeClient) -> None:
    client = await make_client(REDIS_POPULARITY_THRESHOLD="3", **MANY_LIKES)
    await create(client, id="dim", brightness=10)
    await create(client, id="hot", brightness=30)
    await create(client, id="warm", brightness=50)
    for _ in range(4):
        await client.post("/stars/hot/like", json={})
    await client.post("/stars/warm/like", json={})
    active = await (await client.get("/stars/active")).json()
    assert [s["id"] for s in active] == ["hot", "warm", "dim"]  # brightest first
    popular = await (await client.get("/stars/popular")).json()
    assert [(s["id"], s["is_popular"]) for s in popular] == [("hot", True)]
    listed = {s["id"]: s["is_popular"] for s in await (await client.get("/stars")).json()}
    assert listed == {"dim": False, "hot": True, "warm": False}
    last_update = [e for e in client.app[HUB].recent if e.type == "update"][-1]
    assert last_update.data["id"] == "warm"


async def test_a_write_whose_answer_was_lost_is_not_counted_twice(
    aiohttp_client: Callable[..., Awaitable[Client]], make_settings: MakeSettings
) -> None:
    stores, factory = faulty_factory()
    client = await aiohttp_client(create_app(make_settings(**MANY_LIKES), store_factory=factory))
    await create(client, id="capella")
    stores[0].lost.add(("update", STARS))
    answer = await client.post("/stars/capella/like", json={})
    assert answer.status == 200
    assert stores[0].refused == 1
    assert (await answer.json())["likes"] == 1
    assert (await stores[0].inner.get(STARS, *await star_key(stores[0].inner, "capella"))).entity[
        "likes"
    ] == 1
    assert (await (await client.post("/stars/capella/like", json={})).json())["likes"] == 2


async def test_two_replicas_liking_one_star_lose_nothing(make_client: MakeClient) -> None:
    """Two apps on one store: their writes conflict on the ETag, re-read and re-apply."""
    a = await make_client(**MANY_LIKES)
    b = await make_client(**MANY_LIKES)
    await create(a, id="castor")
    answers = await asyncio.gather(
        *(client.post("/stars/castor/like", json={}) for _ in range(60) for client in (a, b))
    )
    assert [r.status for r in answers] == [200] * 120
    stored = await a.app[STORE].get(STARS, *await star_key(a.app[STORE], "castor"))
    assert stored.entity["likes"] == 120


async def test_likes_on_many_stars_at_once(make_client: MakeClient) -> None:
    """More live like counters than aiojobs' default job limit (100): none may be parked."""
    client = await make_client(**MANY_LIKES)
    ids = [f"m{i}" for i in range(150)]
    for sid in ids:
        await create(client, id=sid)
    answers = await asyncio.gather(*(client.post(f"/stars/{sid}/like", json={}) for sid in ids))
    assert [a.status for a in answers] == [200] * 150
    assert {(await a.json())["likes"] for a in answers} == {1}


async def test_concurrent_creates_with_clashing_ids(client: Client) -> None:
    """Creates that queue together are written together; each id still goes to exactly one."""
    bodies = [{"x": 0, "y": 0, "message": f"m{i}", "id": f"c{i % 10}"} for i in range(30)]
    answers = await asyncio.gather(*(client.post("/stars", json=b) for b in bodies))
    created = [await a.json() for a in answers if a.status == 201]
    assert sorted(a.status for a in answers) == [201] * 10 + [409] * 20
    assert sorted(s["id"] for s in created) == [f"c{i}" for i in range(10)]
    assert await stored_count(client) == 10
    listed = await (await client.get("/stars")).json()
    assert {s["id"]: s["message"] for s in listed} == {s["id"]: s["message"] for s in created}
    creates = [e for e in client.app[HUB].recent if e.type == "create"]
    assert [e.data["id"] for e in creates] == [s["id"] for s in listed]  # announced in creation order
