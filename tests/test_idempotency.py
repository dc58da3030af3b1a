"""Exactly-once writes over HTTP: ``Idempotency-Key`` on both stores, across restarts and replicas.

The pure rules first (the key, the fingerprint, the ids), then the real app over real
HTTP on SQLite and on Azurite, then real processes: a retry after kill -9 between the
commit and the answer, a keyed storm cut by kill -9, and a retry on another replica.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from starmap.app import PARTITIONS, STORE
from starmap.idempotency import IDS, RECORDS, Intent, Recorded, fingerprint, parse_key, record_op, sweep
from starmap.stars import STARS, bucket
from starmap.storage import USERS, TableStore, iter_entities

from .conftest import MakeClient, MakeProcess
from .hangproxy import HangProxy
from .load import create_star, likes_of
from .rig import Azurite, RedisServer, StarmapProcess, assert_problem, raw_exchange

Client = TestClient[web.Request, web.Application]
JSON = {"Content-Type": "application/json"}
LIKES = {"API_RATE_LIMIT_TIMES": "1000000"}


def key() -> str:
    return str(uuid.uuid4())


def keyed(value: str) -> dict[str, str]:
    return {**JSON, "Idempotency-Key": value}


# -- the rules ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], None),
        (["8e03978e-40d5-43e8-bc93-6894a57f9324"], "8e03978e-40d5-43e8-bc93-6894a57f9324"),
        (['"8e03978e-40d5-43e8-bc93-6894a57f9324"'], "8e03978e-40d5-43e8-bc93-6894a57f9324"),
        ([" 01J9ZKQ3V6Q7S8T9W0X1Y2Z3A4 "], "01J9ZKQ3V6Q7S8T9W0X1Y2Z3A4"),
        (["a" * 255], "a" * 255),
    ],
    ids=["none", "bare-uuid", "quoted-uuid", "ulid-with-spaces", "longest"],
)
def test_keys_that_are_taken(values: list[str], expected: str | None) -> None:
    assert parse_key(values) == expected


@pytest.mark.parametrize(
    "values",
    [
        ["short"],
        ["a" * 256],
        ["has a space in the middle"],
        ['"unterminated-quoted-key-value'],
        ['in"side-quote-of-a-key-value'],
        ["back\\slash-in-a-key-value"],
        ["ünïcödé-is-not-ascii-at-all"],
        ["control\x01character-in-a-key"],
        ['""'],
        ["8e03978e-40d5-43e8-bc93-6894a57f9324", "8e03978e-40d5-43e8-bc93-6894a57f9325"],
    ],
    ids=[
        "short",
        "long",
        "space",
        "unterminated",
        "quote",
        "backslash",
        "unicode",
        "control",
        "empty",
        "two",
    ],
)
def test_keys_that_are_refused_say_what_a_key_is(values: list[str]) -> None:
    with pytest.raises(ValueError, match="Idempotency-Key"):
        parse_key(values)


def test_a_fingerprint_is_the_request_not_its_spelling() -> None:
    same = fingerprint("like", "s", {"user_id": None, "a": 1})
    assert same == fingerprint("like", "s", {"a": 1, "user_id": None})
    assert same != fingerprint("like", "t", {"user_id": None, "a": 1})
    assert same != fingerprint("create-star", "s", {"user_id": None, "a": 1})
    assert same != fingerprint("like", "s", {"user_id": "u", "a": 1})


def test_ids_from_keys_are_stable_and_records_stay_out_of_the_id_range() -> None:
    intent = Intent("create-star", key(), "f", 60)
    assert intent.derived_id() == Intent("create-star", intent.key, "g", 1).derived_id()
    assert intent.derived_id() != Intent("create-user", intent.key, "f", 60).derived_id()
    assert intent.row_key("a") != intent.row_key("b")
    row = intent.row_key("a")
    assert RECORDS.start <= row < RECORDS.stop and not IDS.start <= row < IDS.stop
    assert IDS.start <= intent.derived_id() < IDS.stop


# -- the app over HTTP, on both stores ------------------------------------------------------------


async def test_a_repeated_like_replays_its_answer_and_counts_once(make_client: MakeClient) -> None:
    client = await make_client(API_RATE_LIMIT_TIMES="100")  # a replay is a request: it is limited too
    assert (await client.post("/stars", json={"x": 0, "y": 0, "message": "m", "id": "s"})).status == 201
    k = key()
    first = await client.post("/stars/s/like", data="{}", headers=keyed(k))
    assert first.status == 200 and "Idempotent-Replayed" not in first.headers
    body = await first.read()
    for _ in range(3):
        again = await client.post("/stars/s/like", data="{}", headers=keyed(f'"{k}"'))
        assert again.status == 200, await again.text()
        assert again.headers["Idempotent-Replayed"] == "true"
        assert await again.read() == body  # byte for byte
        assert "RateLimit-Limit" in again.headers
    assert (await (await client.get("/stars/s")).json())["likes"] == 1
    assert (await client.post("/stars/s/like", data="{}", headers=JSON)).status == 200  # no key: counts
    other = await client.post("/stars/s/like", data="{}", headers=keyed(key()))  # a new key: counts
    assert (await other.json())["likes"] == 3
    assert (await (await client.get("/stars/s")).json())["likes"] == 3


async def test_a_key_reused_for_another_request_is_a_422_and_changes_nothing(client: Client) -> None:
    await client.post("/stars", json={"x": 0, "y": 0, "message": "m", "id": "s"})
    user = await (await client.post("/users", json={"name": "Ada", "email": "ada@example.org"})).json()
    k = key()
    assert (await client.post("/stars/s/like", data="{}", headers=keyed(k))).status == 200
    body = await assert_problem(
        await client.post("/stars/s/like", json={"user_id": user["id"]}, headers=keyed(k)), 422
    )
    assert "different request" in body["detail"]
    assert (await (await client.get("/stars/s")).json())["likes"] == 1
    assert await (await client.get(f"/users/{user['id']}/stars?relation=liked")).json() == []

    s = key()
    assert (
        await client.post("/stars", json={"x": 0, "y": 0, "message": "one"}, headers=keyed(s))
    ).status == 201
    await assert_problem(
        await client.post("/stars", json={"x": 0, "y": 0, "message": "two"}, headers=keyed(s)), 422
    )
    assert [star["message"] for star in await (await client.get("/stars")).json()] == ["m", "one"]


async def test_a_key_is_scoped_by_the_star_it_likes(client: Client) -> None:
    for star in ("a", "b"):
        await client.post("/stars", json={"x": 0, "y": 0, "message": "m", "id": star})
    k = key()
    for star in ("a", "b"):
        answer = await client.post(f"/stars/{star}/like", data="{}", headers=keyed(k))
        assert answer.status == 200 and "Idempotent-Replayed" not in answer.headers
        assert (await answer.json())["likes"] == 1


async def test_a_repeated_create_makes_one_star_at_one_id(client: Client) -> None:
    k = key()
    star = {"x": 0.5, "y": -0.5, "message": "once"}
    first = await client.post("/stars", json=star, headers=keyed(k))
    assert first.status == 201
    created = await first.json()
    again = await client.post("/stars", json=star, headers=keyed(k))
    assert again.status == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert await again.json() == created
    assert again.headers["Location"] == first.headers["Location"] == f"/stars/{created['id']}"
    assert [s["id"] for s in await (await client.get("/stars")).json()] == [created["id"]]
    assert (await client.get(f"/stars/{created['id']}")).status == 200

    named = {"x": 0, "y": 0, "message": "named", "id": "mine"}
    n = key()
    assert (await client.post("/stars", json=named, headers=keyed(n))).status == 201
    replay = await client.post("/stars", json=named, headers=keyed(n))  # not a 409: its own retry
    assert replay.status == 201 and replay.headers["Idempotent-Replayed"] == "true"
    await assert_problem(await client.post("/stars", json=named), 409)  # without the key: taken


async def test_a_repeated_user_create_makes_one_user_and_keeps_its_address(client: Client) -> None:
    k = key()
    ada = {"name": "Ada", "email": "ada@example.org"}
    first = await client.post("/users", json=ada, headers=keyed(k))
    assert first.status == 201
    again = await client.post("/users", json=ada, headers=keyed(k))
    assert again.status == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert await again.read() == await first.read()
    await assert_problem(
        await client.post("/users", json={**ada, "email": "ada2@example.org"}, headers=keyed(k)), 422
    )
    assert len(await (await client.get("/users")).json()) == 1
    await assert_problem(await client.post("/users", json={"name": "Eve", "email": "ADA@example.org"}), 409)
    assert (await client.post("/users", json={"name": "Bob", "email": "ada2@example.org"})).status == 201


@pytest.mark.parametrize(
    "value", ["short", "x" * 300, "with space inside the key", 'a"quote"inside-the-key'], ids=str.__len__
)
@pytest.mark.parametrize("path", ["/stars", "/stars/s/like", "/users"])
async def test_a_malformed_key_is_a_400_before_anything_is_written(
    client: Client, path: str, value: str
) -> None:
    await client.post("/stars", json={"x": 0, "y": 0, "message": "m", "id": "s"})
    body = {
        "/stars": {"x": 0, "y": 0, "message": "n"},
        "/stars/s/like": {},
        "/users": {"name": "Al", "email": "a@b.org"},
    }
    answer = await client.post(path, json=body[path], headers={"Idempotency-Key": value})
    assert "Idempotency-Key" in (await assert_problem(answer, 400))["detail"]
    assert len(await (await client.get("/stars")).json()) == 1
    assert (await (await client.get("/stars/s")).json())["likes"] == 0
    assert await (await client.get("/users")).json() == []


async def test_raw_key_bytes_and_two_keys_are_400s(client: Client) -> None:
    await client.post("/stars", json={"x": 0, "y": 0, "message": "m", "id": "s"})
    port = client.server.port
    assert port is not None
    for header in (b"Idempotency-Key: \xff\xfe" + b"k" * 20, b"Idempotency-Key: %s\r\nIdempotency-Key: %s"
                   % (key().encode(), key().encode())):  # fmt: skip
        request = (b"POST /stars/s/like HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Content-Length: 2\r\nConnection: close\r\n" + header + b"\r\n\r\n{}")  # fmt: skip
        answer = await asyncio.to_thread(raw_exchange, port, request)
        assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
        assert b"application/problem+json" in answer
    assert (await (await client.get("/stars/s")).json())["likes"] == 0


async def test_the_same_key_in_flight_is_a_409_and_the_first_still_lands(client: Client) -> None:
    """The first request holds its key from its headers on: its body is still on the way."""
    k = key()
    port = client.server.port
    assert port is not None
    body = b'{"x": 0, "y": 0, "message": "slow"}'
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = b"POST /stars HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nIdempotency-Key: %s\r\n"
    writer.write(head % k.encode() + b"Content-Length: %d\r\n\r\n%s" % (len(body), body[:5]))
    await writer.drain()
    await asyncio.sleep(0.3)
    busy = await client.post("/stars", data=body, headers=keyed(k))
    await assert_problem(busy, 409)
    assert busy.headers["Retry-After"] == "1"
    writer.write(body[5:])
    await writer.drain()
    status_line = await reader.readline()
    assert status_line.startswith(b"HTTP/1.1 201"), status_line
    writer.close()
    replay = await client.post("/stars", data=body, headers=keyed(k))
    assert replay.status == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert len(await (await client.get("/stars")).json()) == 1


async def test_keys_expire_after_the_ttl_and_the_sweep_deletes_their_records(make_client: MakeClient) -> None:
    client = await make_client(API_IDEMPOTENCY_TTL="1")
    await client.post("/stars", json={"x": 0, "y": 0, "message": "m", "id": "s"})
    k = key()
    assert (await client.post("/stars/s/like", data="{}", headers=keyed(k))).status == 200
    store: TableStore = client.app[STORE]
    assert len([r async for r in iter_entities(store, STARS, rows=RECORDS)]) == 1
    await asyncio.sleep(1.1)
    again = await client.post("/stars/s/like", data="{}", headers=keyed(k))  # remembered no longer
    assert again.status == 200 and "Idempotent-Replayed" not in again.headers
    assert (await again.json())["likes"] == 2
    assert await sweep(store, STARS, time.time()) == 0  # the new record has a second to live
    assert await sweep(store, STARS, time.time() + 2) == 1
    assert [r async for r in iter_entities(store, STARS, rows=RECORDS)] == []
    assert (await (await client.get("/stars/s")).json())["likes"] == 2  # the star itself untouched


async def test_sweep_deletes_only_expired_records_of_every_partition(store: TableStore) -> None:
    now = time.time()
    for i in range(30):
        intent = Intent("like", key(), "f", ttl=-1 if i % 3 else 60)
        star = f"s{i}"
        await store.batch(STARS, [record_op("p", star, intent, Recorded(200, b"{}"), now)])
    assert await sweep(store, STARS, now) == 20
    left = [r.entity async for r in iter_entities(store, STARS, rows=RECORDS)]
    assert len(left) == 10 and all(float(e["expires"]) > now for e in left)


async def test_records_are_not_rows_a_load_or_a_census_sees(make_client: MakeClient) -> None:
    client = await make_client()
    await client.post("/stars", json={"x": 0, "y": 0, "message": "m", "id": "s"})
    for _ in range(5):
        await client.post("/stars/s/like", data="{}", headers=keyed(key()))
    await client.post("/stars", json={"x": 0, "y": 0, "message": "keyed"}, headers=keyed(key()))
    await client.post("/users", json={"name": "Ada", "email": "ada@example.org"}, headers=keyed(key()))
    await client.close()
    again = await make_client()  # a fresh process's load, from the store
    info = await (await again.get("/debug/table-info")).json()
    for table in ("Stars", "Users"):
        assert not any(info["foreign_rows"][table].values()), info
    assert len(await (await again.get("/stars")).json()) == 2
    assert len(await (await again.get("/users")).json()) == 1


# -- real processes: kill -9, storms, replicas -------------------------------------------------------


async def keyed_like(url: str, star: str, k: str, timeout: float = 10) -> tuple[int, bytes, bool]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http,
        http.post(f"{url}/stars/{star}/like", data="{}", headers=keyed(k)) as answer,
    ):
        return answer.status, await answer.read(), answer.headers.get("Idempotent-Replayed") == "true"


async def test_a_keyed_storm_cut_by_kill_9_counts_every_key_exactly_once(make_process: MakeProcess) -> None:
    """Without keys a kill -9 may leave likes the client cannot know of (test_crash.py); with them,
    retrying every key that got no 200 brings each star to exactly one like per key."""
    first = make_process(**LIKES)
    stars = ["a", "b", "c"]
    for star in stars:
        await create_star(first.url, star)
    sent: dict[str, str] = {}
    acked: set[str] = set()
    stop = asyncio.Event()

    async def worker(n: int) -> None:
        i = 0
        while not stop.is_set():
            k, star = f"{n:02d}-{i:06d}-{key()}", stars[(n + i) % len(stars)]
            i += 1
            sent[k] = star
            try:
                status, _, _ = await keyed_like(first.url, star, k, timeout=5)
            except (aiohttp.ClientError, TimeoutError):
                await asyncio.sleep(0.05)
                continue
            if status == 200:
                acked.add(k)

    workers = [asyncio.ensure_future(worker(n)) for n in range(16)]
    while len(acked) < 300:  # noqa: ASYNC110 - waiting on another process's answers
        await asyncio.sleep(0.02)
    first.kill()  # mid-storm: some committed and never answered, some never arrived
    stop.set()
    await asyncio.gather(*workers)

    second = make_process(**LIKES)
    unanswered = [k for k in sent if k not in acked]
    assert unanswered, "the kill should cut some requests"
    replayed = 0
    for k in unanswered:
        status, _, was_replayed = await keyed_like(second.url, sent[k], k)
        assert status == 200
        replayed += was_replayed
    for k in list(acked)[:20]:  # an answered key, asked again: a replay, never a second like
        status, _, was_replayed = await keyed_like(second.url, sent[k], k)
        assert status == 200 and was_replayed
    for star in stars:
        assert await likes_of(second.url, star) == sum(s == star for s in sent.values()), star
    print(f"{len(sent)} keys, {len(unanswered)} unanswered at the kill, {replayed} of those had landed")


@pytest.mark.parametrize("backend", ["azurite"])
async def test_kill_9_between_the_commit_and_the_answer_then_a_retry_counts_once(
    azurite: Azurite, backend_env: dict[str, str], tmp_path: Path
) -> None:
    """The store carries out the write but its answer never comes back; the replica dies
    then. The client retries its key on another process: the first answer, not a second like."""
    proxy = HangProxy(azurite.port)
    proxy.start()
    through = azurite.connection_string.replace(f":{azurite.port}/", f":{proxy.port}/")
    first = StarmapProcess(
        tmp_path / "first", {**backend_env, "AZURE_STORAGE_CONNECTION_STRING": through, **LIKES}
    )
    second = StarmapProcess(tmp_path / "second", {**backend_env, **LIKES})
    try:
        first.start()
        await create_star(first.url, "s")
        assert (await keyed_like(first.url, "s", key()))[0] == 200  # the counter is live, its star read
        k = key()
        proxy.mute_after = b"$batch"  # the like's write (the star and its key's record) goes out, unanswered
        pending = asyncio.ensure_future(keyed_like(first.url, "s", k))
        await asyncio.sleep(1.5)  # Azurite has committed by now; its answer is held in the proxy
        first.kill()
        with pytest.raises((aiohttp.ClientError, TimeoutError)):
            await pending  # the client never heard
        second.start()
        assert await likes_of(second.url, "s") == 2  # the like landed
        status, body, was_replayed = await keyed_like(second.url, "s", k)
        assert (status, was_replayed) == (200, True)
        assert b'"likes":2' in body
        assert await likes_of(second.url, "s") == 2
    finally:
        for proc in (first, second):
            proc.kill()
        proxy.stop()


@pytest.mark.parametrize("backend", ["azurite"])
async def test_a_key_holds_across_replicas(make_process: MakeProcess, redis_server: RedisServer) -> None:
    shared = {**LIKES, **redis_server.env()}
    one, two = make_process(**shared), make_process(**shared)
    await create_star(one.url, "s")
    k = key()
    assert (await keyed_like(one.url, "s", k))[:1] == (200,)
    status, _, was_replayed = await keyed_like(two.url, "s", k)
    assert (status, was_replayed) == (200, True)
    # Both replicas at once with one key: one like, whoever wins, and the same answer.
    k2 = key()
    answers = await asyncio.gather(*(keyed_like(url, "s", k2) for url in (one.url, two.url) * 3))
    assert all(a[0] in (200, 409) for a in answers), answers
    assert len({a[1] for a in answers if a[0] == 200}) == 1
    assert await likes_of(one.url, "s") == await likes_of(two.url, "s") == 2
    async with aiohttp.ClientSession() as http:
        star = {"x": 0, "y": 0, "message": "once"}
        bodies = set()
        k3 = key()
        for url in (one.url, two.url):
            async with http.post(f"{url}/stars", json=star, headers={"Idempotency-Key": k3}) as answer:
                assert answer.status == 201
                bodies.add(await answer.read())
        async with http.get(f"{two.url}/stars") as answer:
            assert len(await answer.json()) == 2
    assert len(bodies) == 1


async def test_records_live_beside_their_writes(client: Client) -> None:
    """Where the guarantee comes from: the record is in the write's own table and partition."""
    await client.post("/stars", json={"x": 0, "y": 0, "message": "m", "id": "s"})
    await client.post("/stars/s/like", data="{}", headers=keyed(key()))
    user = await (
        await client.post("/users", json={"name": "Al", "email": "al@b.org"}, headers=keyed(key()))
    ).json()
    store: TableStore = client.app[STORE]
    [like_record] = [r async for r in iter_entities(store, STARS, rows=RECORDS)]
    assert like_record.partition_key == client.app[PARTITIONS].of("s")  # the star's
    [user_record] = [r async for r in iter_entities(store, USERS, rows=RECORDS)]
    assert user_record.partition_key == bucket(user["id"])


async def test_hundreds_of_keyed_likes_at_once_on_one_star_all_count(make_client: MakeClient) -> None:
    """A batch holds 100 operations: a storm of keyed likes on one star is committed in groups."""
    client = await make_client(API_RATE_LIMIT_TIMES="100000")
    assert (await client.post("/stars", json={"x": 0, "y": 0, "message": "m", "id": "s"})).status == 201
    answers = await asyncio.gather(
        *(client.post("/stars/s/like", data="{}", headers=keyed(key())) for _ in range(300))
    )
    assert sorted({a.status for a in answers}) == [200]
    assert (await (await client.get("/stars/s")).json())["likes"] == 300


def test_keyed_likes_are_grouped_a_batch_at_a_time() -> None:
    from starmap.actors.likes import MAX_KEYED, _groups

    items = list(range(250))
    groups = _groups(items, lambda i: i % 2 == 0)  # every other one keyed
    assert [i for g in groups for i in g] == items
    assert all(sum(i % 2 == 0 for i in g) <= MAX_KEYED for g in groups)
    assert len(groups) == 2
    assert _groups([], lambda i: True) == []
