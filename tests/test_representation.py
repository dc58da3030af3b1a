"""Conditional and compressed reads: ETags from the data (stable while stars fade, equal across
replicas), 304 with no body, gzip when the client allows it, the whole sky compressed once."""

from __future__ import annotations

import asyncio
import gzip
import json
import math
import random
from typing import Any, cast

import aiohttp
import attrs
import brotli
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from starmap.http.representation import chosen_coding
from starmap.http.views import rounded
from starmap.keys import LIST_CACHE
from starmap.rules import rounding
from starmap.stars import Star

from .conftest import MakeClient, MakeProcess
from .load import create_star
from .rig import RedisServer

Client = TestClient[web.Request, web.Application]
JSON = {"Content-Type": "application/json"}


def changed(star: Star, **changes: Any) -> Star:
    """``attrs.evolve`` for a star, which mypy does not take for an attrs class (it is made by
    ``starmap.frozen.immutable``, which mypy holds frozen)."""
    return cast(Star, attrs.evolve(cast(Any, star), **changes))


async def seed(client: Client, stars: int = 3) -> dict[str, Any]:
    for i in range(stars):
        body = {
            "x": i % 10 / 10,
            "y": -i % 10 / 10,
            "message": f"star number {i} " + "✨" * 20,
            "id": f"s{i}",
        }
        assert (await client.post("/stars", json=body)).status == 201
    user: dict[str, Any] = await (
        await client.post("/users", json={"name": "Ada", "email": "a@b.org"})
    ).json()
    await client.post("/stars/s0/like", json={"user_id": user["id"]})
    return user


def reads(user_id: str) -> list[str]:
    return [
        "/stars", "/stars?limit=2", "/stars?bbox=-1,-1,0.15,1", "/stars/s0", "/stars/s1", "/stars/active",
        "/stars/popular", "/stars/batch/s0,s1", "/users", f"/users/{user_id}",
        f"/users/{user_id}/stars?relation=liked",
    ]  # fmt: skip


async def test_every_read_answers_304_for_the_tag_it_gave(client: Client) -> None:
    user = await seed(client)
    for path in reads(user["id"]):
        first = await client.get(path)
        assert first.status == 200, path
        tag = first.headers["ETag"]
        assert tag.startswith('W/"') and first.headers["Cache-Control"] == "no-cache", path
        again = await client.get(path, headers={"If-None-Match": tag})
        assert again.status == 304, path
        assert await again.read() == b"" and again.headers["ETag"] == tag, path
        listed = await client.get(path, headers={"If-None-Match": f'W/"other", {tag.removeprefix("W/")}'})
        assert listed.status == 304, path  # one of several, compared weakly
        assert (await client.get(path, headers={"If-None-Match": 'W/"other"'})).status == 200, path
        head = await client.head(path, headers={"If-None-Match": tag})
        assert head.status == 304, path


async def test_a_tag_changes_exactly_when_the_data_does(client: Client) -> None:
    user = await seed(client)
    before = {p: (await client.get(p)).headers["ETag"] for p in reads(user["id"])}
    await asyncio.sleep(1.1)  # the stars faded (brightness changed): the data did not
    faded = {p: (await client.get(p)).headers["ETag"] for p in reads(user["id"])}
    assert faded == before
    await client.post("/stars/s1/like", json={"user_id": user["id"]})
    after = {p: (await client.get(p)).headers["ETag"] for p in reads(user["id"])}
    changed = {p for p in before if after[p] != before[p]}
    # s1 itself, and in the whole list, the first page, the box, the batch, the active and liked
    # lists; s0 and the users did not change.
    assert changed == {"/stars", "/stars?limit=2", "/stars?bbox=-1,-1,0.15,1", "/stars/s1", "/stars/active",
                       "/stars/batch/s0,s1", f"/users/{user['id']}/stars?relation=liked"}  # fmt: skip
    await client.put(f"/users/{user['id']}", json={"name": "Ada L", "email": "a@b.org"})
    assert (await client.get(f"/users/{user['id']}")).headers["ETag"] != before[f"/users/{user['id']}"]


async def test_a_304_lets_the_client_compute_brightness_now(client: Client) -> None:
    """The representation carries the base: what was cached fades exactly as the server's does."""
    await seed(client, 1)
    config = await (await client.get("/config.json")).json()
    star = await (await client.get("/stars/s0")).json()
    await asyncio.sleep(0.5)
    fresh = await (await client.get("/stars/s0")).json()
    server_now = (await (await client.get("/config.json")).json())["server_time"]
    # The formula, from the older copy: what a page does with a representation revalidated by a 304.
    half_life, floor = config["brightness_half_life"], config["min_brightness"]
    computed = max(floor, star["base_brightness"] * 2 ** (-(server_now - star["last_liked"]) / half_life))
    assert computed == pytest.approx(fresh["brightness"], abs=0.01)


async def test_json_over_a_kibibyte_is_compressed_when_allowed(client: Client) -> None:
    await seed(client, 20)
    url = client.make_url("/stars")
    async with aiohttp.ClientSession(auto_decompress=False) as raw:
        for path in ("/stars", "/stars?limit=20", "/stars/active"):
            url = client.make_url(path)
            async with raw.get(url, headers={"Accept-Encoding": "gzip, deflate"}) as answer:
                assert answer.headers["Content-Encoding"] == "gzip", path
                assert "Accept-Encoding" in answer.headers["Vary"], path
                body = json.loads(gzip.decompress(await answer.read()))
                assert len(body) == 20, path
            async with raw.get(url, headers={"Accept-Encoding": "gzip;q=0, identity"}) as answer:
                assert (
                    "Content-Encoding" not in answer.headers and "Accept-Encoding" in answer.headers["Vary"]
                )
                assert len(json.loads(await answer.read())) == 20
        async with raw.get(client.make_url("/stars/s0"), headers={"Accept-Encoding": "gzip"}) as answer:
            assert "Content-Encoding" not in answer.headers  # under 1 KiB: not worth it
        async with raw.get(client.make_url("/users"), headers={"Accept-Encoding": "gzip, br"}) as answer:
            assert "Content-Encoding" not in answer.headers
        async with raw.get(
            client.make_url("/stars?limit=20"), headers={"Accept-Encoding": "gzip, br"}
        ) as answer:
            assert answer.headers["Content-Encoding"] == "br"
            assert len(json.loads(brotli.decompress(await answer.read()))) == 20


async def test_the_whole_sky_is_compressed_once_per_rendering(client: Client) -> None:
    await seed(client, 20)
    async with aiohttp.ClientSession(auto_decompress=False) as raw:
        bodies = []
        for _ in range(3):
            async with raw.get(client.make_url("/stars"), headers={"Accept-Encoding": "gzip"}) as answer:
                bodies.append(await answer.read())
        cache = client.app[LIST_CACHE]
        compressed = cache.encoded["gzip"]
        assert bodies[0] == bodies[1] == bodies[2] == compressed
        async with raw.get(client.make_url("/stars"), headers={"Accept-Encoding": "gzip"}) as answer:
            await answer.read()
        assert cache.encoded["gzip"] is compressed  # not compressed again for another request
        async with raw.get(client.make_url("/stars"), headers={"Accept-Encoding": "br"}) as answer:
            assert answer.headers["Content-Encoding"] == "br"
            assert len(json.loads(brotli.decompress(await answer.read()))) == 20
        assert cache.encoded.keys() == {"gzip", "br"}
        await client.post("/stars/s3/like", data="{}", headers=JSON)
        async with raw.get(client.make_url("/stars"), headers={"Accept-Encoding": "gzip"}) as answer:
            assert json.loads(gzip.decompress(await answer.read()))[3]["likes"] == 1
        assert cache.encoded.keys() == {"gzip"}  # rendered anew: only what was asked since


@pytest.mark.parametrize(
    ("header", "coding"),
    [("gzip", "gzip"), ("GZIP", "gzip"), ("br;q=1.0, gzip;q=0.8", "br"), ("gzip, deflate, br", "br"),
     ("br;q=0.5, gzip", "gzip"), ("gzip;q=0", None), ("identity", None), ("*", "br"), ("*;q=0", None),
     ("", None), ("x-gzip", "gzip"), ("gzip;q=bad", None), ("deflate", None), ("br;q=0, *", "gzip")],
)  # fmt: skip
def test_accept_encoding_is_read_with_its_weights(header: str, coding: str | None) -> None:
    assert chosen_coding(header) == coding


async def test_the_same_data_has_the_same_tags_on_every_replica_and_after_a_restart(
    make_client: MakeClient,
) -> None:
    first = await make_client()
    user = await seed(first)
    tags = {p: (await first.get(p)).headers["ETag"] for p in reads(user["id"])}
    await first.close()
    again = await make_client()  # another process's index, loaded from the store
    assert {p: (await again.get(p)).headers["ETag"] for p in reads(user["id"])} == tags


@pytest.mark.parametrize("backend", ["azurite"])
async def test_replicas_agree_on_tags(make_process: MakeProcess, redis_server: RedisServer) -> None:
    shared = {"API_RATE_LIMIT_TIMES": "1000", **redis_server.env()}
    one, two = make_process(**shared), make_process(**shared)
    for star in ("a", "b"):
        await create_star(one.url, star)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{two.url}/stars/a/like", data="{}", headers=JSON) as answer:
            assert answer.status == 200
        for path in ("/stars", "/stars/a", "/stars?limit=1", "/stars/batch/a,b"):
            tags: set[str] = set()
            for _ in range(50):  # the like reaches the other replica's index through Redis
                tags = set()
                for url in (one.url, two.url):
                    async with http.get(url + path) as answer:
                        tags.add(answer.headers["ETag"])
                if len(tags) == 1:
                    break
                await asyncio.sleep(0.1)
            assert len(tags) == 1, path
            async with http.get(one.url + path, headers={"If-None-Match": tags.pop()}) as answer:
                assert answer.status == 304


def test_one_stars_tag_follows_its_state_and_its_popularity() -> None:
    from starmap.http.representation import one_star_tag

    star = Star("s1", 0.5, 0.5, "hi", 100.0, 1000.0, 3, 1000.0, 1000.0)
    tag = one_star_tag(star, popular={})
    assert tag == one_star_tag(changed(star), popular={"s2": 1})  # an equal star elsewhere
    assert tag != one_star_tag(star, popular={"s1": 1})
    assert tag != one_star_tag(changed(star, likes=4), popular={})
    assert tag != one_star_tag(changed(star, message="ho"), popular={})


def test_the_list_cache_re_renders_only_the_stars_that_changed() -> None:
    """Patched after a like, the body is byte for byte what a full rendering at the same time gives."""
    import orjson

    from starmap.http.stars import ListCache
    from starmap.http.views import star_json
    from starmap.index import StarIndex
    from starmap.stars import Brightness

    model = Brightness(3600, 20, 20)
    stars = [
        Star(f"s{i}", i / 100, 0, f"m{i}", 100.0, 1000.0 + i, i, 1000.0 + i, 1000.0 + i) for i in range(50)
    ]
    index = StarIndex(stars)

    def piece(star: Star, is_popular: bool, at: float) -> bytes:
        return orjson.dumps(star_json(star, model, at, is_popular=is_popular))

    def full(idx: StarIndex, popular: dict[str, int], at: float) -> bytes:
        return ListCache().render(idx, popular, at, piece)

    cache, popular = ListCache(), {"s3": 60}
    assert cache.render(index, popular, 2000.0, piece) == full(index, popular, 2000.0)
    assert cache.rendered_stars == 50
    assert cache.render(index, popular, 2000.2, piece) is cache.body  # nothing changed: kept as is
    # Likes only (stars replaced, none come or go) and a popularity change: patched in place.
    index.replace(changed(stars[2], likes=7, b0=60.0, t0=2000.05, last_liked=2000.05))
    patched = cache.render(index, {"s3": 60, "s5": 50}, 2000.3, piece)
    assert cache.rendered_stars == 50 + 2  # s2, and s5 now popular (s3 stays)
    assert patched == full(index, {"s3": 60, "s5": 50}, 2000.0)
    popular = {"s3": 60, "s5": 50}
    cache.render(index, popular, 2000.35, piece)
    assert cache.rendered_stars == 52
    index.replace(changed(stars[7], likes=99, b0=55.0, t0=2000.1, last_liked=2000.1))
    index.remove("s9")
    index.add(Star("new", 0.5, 0.5, "new", 100.0, 2000.3, 0, 2000.3, 2000.3))
    changed_popular = {"s3": 60, "s4": 51}
    body = cache.render(index, changed_popular, 2000.5, piece)
    assert cache.rendered_stars == 52 + 4  # s7, the new star, s4's and s5's popularity: nothing else
    assert body == full(index, changed_popular, 2000.0)  # brightness as of the rendering's time
    assert len(orjson.loads(body)) == 50
    cache.render(index, changed_popular, 2001.1, piece)  # a second on: every star anew
    assert cache.rendered_stars == 56 + 50


def test_the_index_digest_kept_through_changes_is_the_one_computed_anew() -> None:
    from starmap.index import StarIndex

    stars = [Star(f"s{i}", 0, 0, "m", 100.0, 1.0, i, 1.0 + i, 1.0) for i in range(20)]
    kept = StarIndex(stars)
    before = kept.digest  # computed now, then kept as stars change
    kept.replace(changed(stars[3], likes=99))
    kept.add(Star("new", 0.5, 0.5, "n", 100.0, 2.0, 0, 30.0, 2.0))
    kept.remove("s7")
    fresh = StarIndex(list(kept))
    assert kept.digest == fresh.digest != before
    assert StarIndex(stars).digest == before  # the same stars, the same digest


def test_rounded_is_round_to_six_decimals_and_keeps_what_is_not_finite() -> None:
    """The views' rounding agrees with ``round(value, 6)`` on brightness values (200,000 drawn
    from its range), and passes NaN and the infinities through as ``round`` does."""
    rng = random.Random(17)
    for _ in range(200_000):
        value = rng.uniform(0.0, 100.0)
        assert rounded(value) == round(value, 6)
    assert rounded(100.0) == 100.0 and rounded(20.0) == 20.0 and rounded(0.0) == 0.0
    assert rounded(math.inf) == math.inf and rounded(-math.inf) == -math.inf
    assert math.isnan(rounded(math.nan))
    assert rounded(1e300) == 1e300
    # The scaled value is rounded in float arithmetic: half to even as ``round``, negative
    # values too, up to the largest values it scales (under 1e15).
    whole = rounding(0)
    for value in [0.5, 1.5, 2.5, -0.5, -1.5, -2.5, -0.4, -0.0, 999_999_999_999_998.5, -999_999_999_999_998.5]:
        assert whole(value) == round(value, 0)
    for _ in range(100_000):
        value = rng.uniform(-1000.0, 1000.0)
        assert rounded(value) == round(value, 6)
