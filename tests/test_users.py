"""Users and their stars over real HTTP, on the embedded store and on Azurite."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from starmap.app import STORE, create_app
from starmap.keys import HUB
from starmap.stars import bucket
from starmap.storage import TableStore, iter_entities
from starmap.users import EMAILS, USER_STARS, USERS, claim_entity, email_key

from .conftest import MakeSettings
from .faults import faulty_factory

Client = TestClient[web.Request, web.Application]


async def create_user(
    client: Client, name: str = "Ada Lovelace", email: str = "ada@example.org"
) -> dict[str, Any]:
    answer = await client.post("/users", json={"name": name, "email": email})
    assert answer.status == 201, await answer.text()
    user: dict[str, Any] = await answer.json()
    return user


async def assert_consistent(store: TableStore) -> None:
    """Every user holds the claim of its address, and every claim belongs to such a user."""
    users = {s.row_key: s.entity async for s in iter_entities(store, USERS)}
    claims = {s.row_key: s.entity["user_id"] async for s in iter_entities(store, EMAILS)}
    assert claims == {email_key(u["email"]): uid for uid, u in users.items()}


async def test_create_get_list_update_delete(client: Client) -> None:
    answer = await client.post("/users", json={"name": "Ada", "email": " Ada@Example.org ", "extra": 1})
    assert answer.status == 201
    user = await answer.json()
    assert answer.headers["Location"] == f"/users/{user['id']}"
    assert set(user) == {"id", "name", "email", "created_at"}
    assert (user["name"], user["email"]) == ("Ada", "Ada@Example.org")
    assert user["created_at"].endswith("Z")
    assert await (await client.get(f"/users/{user['id']}")).json() == user

    second = await create_user(client, "Grace", "grace@example.org")
    page = await client.get("/users?limit=1")
    assert [u["id"] for u in await page.json()] == [user["id"]]
    next_url = page.headers["Link"].split(">")[0][1:]
    assert [u["id"] for u in await (await client.get(next_url)).json()] == [second["id"]]
    assert len(await (await client.get("/users")).json()) == 2

    put = await client.put(f"/users/{user['id']}", json={"name": "Ada King", "email": "ada@king.example"})
    assert put.status == 200
    assert (await put.json())["email"] == "ada@king.example"
    assert (await (await client.get(f"/users/{user['id']}")).json())["name"] == "Ada King"

    gone = await client.delete(f"/users/{user['id']}")
    assert (gone.status, await gone.json()) == (200, {"id": user["id"], "status": "deleted"})
    for method in ("GET", "PUT", "DELETE"):
        answer = await client.request(method, f"/users/{user['id']}", json={"name": "Ab", "email": "a@b.cd"})
        assert answer.status == 404
        assert answer.content_type == "application/problem+json"
    await assert_consistent(client.app[STORE])
    events = [(e.type, e.data["id"]) for e in client.app[HUB].recent if e.topic == "users"]
    assert events == [
        ("create", user["id"]), ("create", second["id"]), ("update", user["id"]), ("delete", user["id"])
    ]  # fmt: skip


async def test_20_concurrent_creates_with_one_address_in_any_case(client: Client) -> None:
    emails = [f"{'MiXeD'[: i % 5]}{'mixed'[i % 5 :]}@Example.ORG" for i in range(20)]
    answers = await asyncio.gather(
        *(client.post("/users", json={"name": f"User {i}", "email": e}) for i, e in enumerate(emails))
    )
    statuses = sorted(a.status for a in answers)
    assert statuses == [201] + [409] * 19
    assert all(a.content_type == "application/problem+json" for a in answers if a.status == 409)
    assert len(await (await client.get("/users")).json()) == 1
    await assert_consistent(client.app[STORE])


async def test_put_to_an_address_another_user_holds_is_409_and_changes_nothing(client: Client) -> None:
    ada = await create_user(client)
    grace = await create_user(client, "Grace", "grace@example.org")
    answer = await client.put(f"/users/{grace['id']}", json={"name": "Grace H", "email": "ADA@example.org"})
    assert answer.status == 409
    assert await (await client.get(f"/users/{grace['id']}")).json() == grace
    assert await (await client.get(f"/users/{ada['id']}")).json() == ada
    await assert_consistent(client.app[STORE])
    same = await client.put(f"/users/{ada['id']}", json={"name": "Ada", "email": "ADA@EXAMPLE.org"})
    assert same.status == 200  # one's own address in another case is still one's own


async def test_a_deleted_users_address_can_be_used_again(client: Client) -> None:
    ada = await create_user(client)
    await client.delete(f"/users/{ada['id']}")
    again = await create_user(client, "Another Ada")
    assert again["id"] != ada["id"]
    await assert_consistent(client.app[STORE])


BAD_USERS = [
    ({"name": "A", "email": "a@example.org"}, "name"),
    ({"name": "x" * 101, "email": "a@example.org"}, "name"),
    ({"name": "bell\x07", "email": "a@example.org"}, "name"),
    ({"name": 5, "email": "a@example.org"}, "name"),
    ({"name": "Ada", "email": "no-at.example.org"}, "email"),
    ({"name": "Ada", "email": "two@@example.org"}, "email"),
    ({"name": "Ada", "email": "a@nodot"}, "email"),
    ({"name": "Ada", "email": "a b@example.org"}, "email"),
    ({"name": "Ada", "email": "a@" + "x" * 250 + ".org"}, "email"),
    ({"name": "Ada", "email": None}, "email"),
    ({"name": "Ada"}, "email"),
]


@pytest.mark.parametrize(("body", "field"), BAD_USERS, ids=[str(i) for i in range(len(BAD_USERS))])
async def test_bad_input_is_422_naming_the_field_and_writes_nothing(
    client: Client, body: dict[str, Any], field: str
) -> None:
    ada = await create_user(client)
    for method, path in (("POST", "/users"), ("PUT", f"/users/{ada['id']}")):
        answer = await client.request(method, path, json=body)
        assert answer.status == 422
        problem = await answer.json()
        assert [e["field"] for e in problem["errors"]] == [field]
    assert await (await client.get("/users")).json() == [ada]
    await assert_consistent(client.app[STORE])


async def test_malformed_bodies_and_unknown_ids(client: Client) -> None:
    assert (await client.post("/users", data="{", headers={"Content-Type": "application/json"})).status == 400
    assert (await client.post("/users", json=[1])).status == 400
    for path in ("/users/nobody", "/users/no%20body", "/users/nobody/stars"):
        answer = await client.get(path)
        assert answer.status == 404
        assert answer.content_type == "application/problem+json"
    ada = await create_user(client)
    assert (await client.get(f"/users/{ada['id']}/stars?relation=hated")).status == 422


async def star(client: Client, sid: str, user_id: str | None = None) -> None:
    body: dict[str, Any] = {"x": 0, "y": 0, "message": sid, "id": sid}
    if user_id:
        body["user_id"] = user_id
    assert (await client.post("/stars", json=body)).status == 201


async def listing(client: Client, user_id: str, relation: str = "placed") -> list[str]:
    answer = await client.get(f"/users/{user_id}/stars?relation={relation}")
    assert answer.status == 200
    return [s["id"] for s in await answer.json()]


async def test_relation_listings_through_a_stars_life_and_the_users(client: Client) -> None:
    ada = await create_user(client)
    grace = await create_user(client, "Grace", "grace@example.org")
    await star(client, "a1", ada["id"])
    await star(client, "a2", ada["id"])
    await star(client, "g1", grace["id"])
    await star(client, "free")
    assert (
        await client.post("/stars", json={"x": 0, "y": 0, "message": "m", "user_id": "ghost"})
    ).status == 404
    for sid in ("g1", "free"):
        assert (await client.post(f"/stars/{sid}/like", json={"user_id": ada["id"]})).status == 200

    assert await listing(client, ada["id"]) == ["a2", "a1"]  # newest first
    assert await listing(client, ada["id"], "liked") == ["free", "g1"]
    assert await listing(client, grace["id"]) == ["g1"]
    assert await listing(client, grace["id"], "liked") == []

    await client.delete("/stars/a2")
    await client.delete("/stars/free")
    assert await listing(client, ada["id"]) == ["a1"]
    assert await listing(client, ada["id"], "liked") == ["g1"]

    await client.delete(f"/users/{ada['id']}")
    assert (await client.get(f"/users/{ada['id']}/stars")).status == 404
    kept = await (await client.get("/stars/a1")).json()
    assert kept["user_id"] == ada["id"]  # the user's stars stay on the map
    store: TableStore = client.app[STORE]
    assert [s async for s in iter_entities(store, USER_STARS, ada["id"])] == []
    assert await listing(client, grace["id"]) == ["g1"]


# -- compensation: a fault between any two steps leaves no orphan claim, no unclaimed user ----


STEPS = [
    ("create", ("insert", EMAILS)),
    ("create", ("insert", USERS)),
    ("change-email", ("insert", EMAILS)),
    ("change-email", ("update", USERS)),
    ("change-email", ("delete", EMAILS)),
    ("delete", ("delete", USERS)),
    ("delete", ("delete", EMAILS)),
]


@pytest.mark.parametrize(("action", "fault"), STEPS, ids=[f"{a}-{m}-{t}" for a, (m, t) in STEPS])
async def test_a_fault_at_any_step_is_compensated(
    aiohttp_client: Callable[..., Awaitable[Client]],
    make_settings: MakeSettings,
    action: str,
    fault: tuple[str, str],
) -> None:
    stores, factory = faulty_factory()
    client = await aiohttp_client(create_app(make_settings(), store_factory=factory))
    store = stores[0]
    ada = await create_user(client)
    before = await (await client.get("/users")).json()

    store.once.add(fault)
    if action == "create":
        answer = await client.post("/users", json={"name": "Grace", "email": "grace@example.org"})
    elif action == "change-email":
        answer = await client.put(f"/users/{ada['id']}", json={"name": "Ada", "email": "new@example.org"})
    else:
        answer = await client.delete(f"/users/{ada['id']}")
    assert store.refused == 1
    assert answer.status == 503
    assert answer.headers["Retry-After"]
    await assert_consistent(store.inner)
    assert await (await client.get("/users")).json() == before

    # Nothing is stuck: the same request now succeeds.
    if action == "create":
        assert (
            await client.post("/users", json={"name": "Grace", "email": "grace@example.org"})
        ).status == 201
    elif action == "change-email":
        ok = await client.put(f"/users/{ada['id']}", json={"name": "Ada", "email": "new@example.org"})
        assert ok.status == 200
        assert (await create_user(client, "Old Address", "ada@example.org"))["email"] == "ada@example.org"
    else:
        assert (await client.delete(f"/users/{ada['id']}")).status == 200
    await assert_consistent(store.inner)


async def test_a_stale_claim_is_taken_over_and_a_live_one_is_not(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """A claim a crash left behind (its user never written) stops holding its address after 30 s."""
    store: TableStore = client.app[STORE]
    now = time.time()
    for address, age in (("stale@example.org", 60.0), ("fresh@example.org", 1.0)):
        key = email_key(address)
        await store.insert(EMAILS, claim_entity(key, "never-written", now - age))
    with caplog.at_level(logging.WARNING):
        taken = await client.post("/users", json={"name": "Sam", "email": "stale@example.org"})
    assert taken.status == 201
    user = await taken.json()
    claim = await store.get(EMAILS, bucket(email_key("stale@example.org")), email_key("stale@example.org"))
    assert claim.entity["user_id"] == user["id"]
    assert any(
        "took over a stale e-mail claim left by user never-written" in r.getMessage() for r in caplog.records
    )
    held = await client.post("/users", json={"name": "Kim", "email": "fresh@example.org"})
    assert held.status == 409  # seconds old: a change may be under way elsewhere


async def test_a_compensation_that_fails_too_leaves_only_a_claim_the_next_create_takes_over(
    aiohttp_client: Callable[..., Awaitable[Client]],
    make_settings: MakeSettings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    stores, factory = faulty_factory()
    client = await aiohttp_client(create_app(make_settings(), store_factory=factory))
    store = stores[0]
    store.once.update({("insert", USERS), ("delete", EMAILS)})  # the user write fails, then its undo
    with caplog.at_level(logging.ERROR):
        answer = await client.post("/users", json={"name": "Lea", "email": "lea@example.org"})
    assert answer.status == 503 and answer.headers["Retry-After"]
    assert any("could not undo the claim of a user never made" in r.getMessage() for r in caplog.records)
    assert await (await client.get("/users")).json() == []
    key = email_key("lea@example.org")
    orphan = await store.inner.get(EMAILS, bucket(key), key)  # the net: a claim without its user
    assert (await client.post("/users", json={"name": "Lea", "email": "lea@example.org"})).status == 409
    aged = {**orphan.entity, "claimed_at": time.time() - 60}  # ... until it is stale
    await store.inner.update(EMAILS, aged, orphan.etag)
    assert (await client.post("/users", json={"name": "Lea", "email": "lea@example.org"})).status == 201
    await assert_consistent(store.inner)
