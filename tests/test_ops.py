"""Operating it: admin, debug, metrics, request ids, the OpenAPI document."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from starmap.app import PARTITIONS, STORE, create_app
from starmap.http.openapi import build, doc
from starmap.keys import FRONT, HUB
from starmap.logs import AccessLogger, RequestIdFilter, escape_controls
from starmap.metrics import Metrics
from starmap.stars import STARS
from starmap.storage import iter_entities
from starmap.users import USER_STARS

from .conftest import MakeClient, MakeSettings
from .faults import faulty_factory

Client = TestClient[web.Request, web.Application]
KEY = "s3cret-admin-key"


async def make_star(client: Client, sid: str, **body: Any) -> None:
    answer = await client.post("/stars", json={"x": 0, "y": 0, "message": sid, "id": sid, **body})
    assert answer.status == 201


# -- admin ----------------------------------------------------------------------------------


async def test_admin_without_a_configured_key_is_503(client: Client) -> None:
    for method, path in (("DELETE", "/admin/stars"), ("GET", "/admin/status")):
        answer = await client.request(method, path, headers={"X-API-Key": "anything"})
        assert answer.status == 503
        assert answer.content_type == "application/problem+json"
        assert "Retry-After" not in answer.headers


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"X-API-Key": KEY + "x"}, {"X-API-Key": ""}])
async def test_admin_with_a_missing_or_wrong_key_is_401(
    make_client: MakeClient, headers: dict[str, str]
) -> None:
    client = await make_client(ADMIN_API_KEY=KEY)
    await make_star(client, "keep")
    for method, path in (("DELETE", "/admin/stars"), ("GET", "/admin/status")):
        answer = await client.request(method, path, headers=headers)
        assert answer.status == 401
        assert answer.content_type == "application/problem+json"
    assert len(await (await client.get("/stars")).json()) == 1


async def test_admin_status(make_client: MakeClient) -> None:
    client = await make_client(ADMIN_API_KEY=KEY)
    body = await (await client.get("/admin/status", headers={"X-API-Key": KEY})).json()
    assert body["admin_configured"] is True
    assert body["environment"] == "test"
    assert body["host"]


async def test_clearing_every_star(make_client: MakeClient) -> None:
    client = await make_client(ADMIN_API_KEY=KEY, API_RATE_LIMIT_TIMES="1000")
    user = await (await client.post("/users", json={"name": "Ada", "email": "ada@example.org"})).json()
    for i in range(130):  # more than one batch in some partitions
        await make_star(client, f"s{i}", **({"user_id": user["id"]} if i < 3 else {}))
    await client.post("/stars/s1/like", json={"user_id": user["id"]})
    answer = await client.delete("/admin/stars", headers={"X-API-Key": KEY})
    assert answer.status == 200
    body = await answer.json()
    assert body["count"] == 130
    assert "130" in body["message"]
    assert await (await client.get("/stars")).json() == []
    store = client.app[STORE]
    assert await store.count(STARS) == 0
    assert [r async for r in iter_entities(store, USER_STARS)] == []
    assert (await client.post("/stars/s1/like", json={})).status == 404
    clears = [e for e in client.app[HUB].recent if e.type == "clear"]
    assert [(e.topic, e.data) for e in clears] == [("stars", {"count": 130})]
    assert (await client.get(f"/users/{user['id']}")).status == 200  # users stay


async def test_a_slow_clear_does_not_hold_creates_and_reads_back(
    aiohttp_client: Any, make_settings: MakeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    """The clear runs beside the registry's mailbox: the service keeps serving meanwhile."""
    faulty, factory = faulty_factory()
    client = await aiohttp_client(create_app(make_settings(ADMIN_API_KEY=KEY), store_factory=factory))
    ids = [f"a{i:03d}" for i in range(120)]
    await asyncio.gather(*(make_star(client, sid) for sid in ids))
    partitions = {client.app[PARTITIONS].of(sid) for sid in ids}
    faulty[0].slow[("batch", STARS)] = 0.1  # each partition's delete batch: the clear takes seconds
    with caplog.at_level(logging.INFO):
        clearing = asyncio.ensure_future(client.delete("/admin/stars", headers={"X-API-Key": KEY}))
        await asyncio.sleep(0.25)  # well into the clear
        assert not clearing.done()
        started = time.monotonic()
        created = await client.post("/stars", json={"x": 0, "y": 0, "message": "during", "id": "during"})
        assert created.status == 201
        assert (await client.get("/stars/during")).status == 200
        assert time.monotonic() - started < 0.5, "a create waited for the clear"
        answer = await clearing
    assert answer.status == 200 and (await answer.json())["count"] == len(ids)
    assert len(partitions) > 5
    # The star made during the clear stays, in the index and in the store; the others are gone.
    assert [s["id"] for s in await (await client.get("/stars")).json()] == ["during"]
    assert await client.app[STORE].count(STARS) == 1
    assert any(r.getMessage().startswith("admin clear: 120 stars removed") for r in caplog.records)


# -- debug ----------------------------------------------------------------------------------


async def test_debug_actors_and_one_actors_state(make_client: MakeClient) -> None:
    client = await make_client(API_RATE_LIMIT_TIMES="1000")
    await make_star(client, "vega")
    for _ in range(3):
        await client.post("/stars/vega/like", json={})
    listed = await (await client.get("/debug/actors")).json()
    kinds = {(a["kind"], a["key"]) for a in listed}
    assert {("stars", "registry"), ("users", "registry"), ("likes", "vega")} <= kinds
    for entry in listed:
        assert set(entry) == {"kind", "key", "mailbox", "processed", "idle_seconds", "last_error"}
    one = await (await client.get("/debug/actors/likes/vega")).json()
    assert one["state"]["likes"] == 3
    assert one["state"]["pending"] == 0
    assert (await client.get("/debug/actors/likes/nobody")).status == 404


async def test_debug_table_info_active_stars_test_star_and_cache(client: Client) -> None:
    await make_star(client, "a")
    info = await (await client.get("/debug/table-info")).json()
    assert info["tables"]["Stars"] == 1
    assert "AccountKey" not in str(info)
    active = await (await client.get("/debug/active-stars")).json()
    assert active["cutoff"] == pytest.approx(active["now"] - 3600)
    assert [s["id"] for s in active["stars"]] == ["a"]
    added = await client.post("/debug/add-test-star")
    assert added.status == 201
    body = await added.json()
    assert body["consistent"] is True
    assert body["store"]["RowKey"] == body["created"]["id"]
    assert await (await client.get("/debug/cache-stats")).json() == {"redis": "not configured"}


async def test_production_has_no_debug(make_client: MakeClient) -> None:
    client = await make_client(ENVIRONMENT="production")
    for path in ("/debug/actors", "/debug/table-info", "/debug/cache-stats"):
        answer = await client.get(path)
        assert answer.status == 404
        assert answer.content_type == "application/problem+json"
    assert (await client.post("/debug/add-test-star")).status == 404


# -- metrics --------------------------------------------------------------------------------


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when absent)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        found = dict(re.findall(r'(\w+)="([^"]*)"', head))
        if head.split("{")[0] == name and all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return 0.0


def test_request_times_land_in_the_bucket_of_each_bound_they_are_under() -> None:
    metrics = Metrics()
    for seconds in (0.0005, 0.001, 0.003, 20.0):  # on a bound counts in its bucket (Prometheus' "le")
        metrics.observe_request("GET", "/x", 200, seconds)
    metrics.observe_request("GET", "/x", 404, 0.2)
    text = metrics.render().decode()
    assert sample(text, "starmap_http_requests_total", method="GET", route="/x", status="200") == 4
    assert sample(text, "starmap_http_requests_total", method="GET", route="/x", status="404") == 1
    buckets = {le: sample(text, "starmap_http_request_duration_seconds_bucket", le=le) for le in
              ("0.001", "0.0025", "0.005", "0.1", "0.25", "10.0", "+Inf")}  # fmt: skip
    assert buckets == {"0.001": 2, "0.0025": 2, "0.005": 3, "0.1": 3, "0.25": 4, "10.0": 4, "+Inf": 5}
    assert sample(text, "starmap_http_request_duration_seconds_count", method="GET", route="/x") == 5
    assert sample(text, "starmap_http_request_duration_seconds_sum") == pytest.approx(20.2045)


async def test_each_route_is_counted_under_its_path_and_its_twin_with_it(client: Client) -> None:
    """One series per route: a trailing-slash twin counts under its route's path, a route with
    a parameter under its template, what no route takes as ``unmatched``."""
    for path in ("/health", "/health/", "/stars/nope", "/stars/nope/", "/no/such/thing"):
        await (await client.get(path)).read()
    text = (await (await client.get("/metrics")).read()).decode()
    requests = "starmap_http_requests_total"
    assert sample(text, requests, method="GET", route="/health", status="200") == 2
    assert sample(text, requests, method="GET", route="/stars/{id}", status="404") == 2
    assert sample(text, requests, method="GET", route="/no/such/thing") == 0
    assert sample(text, requests, method="GET", route="unmatched", status="404") == 1
    assert not re.search(r'route="[^"]+/"', text)  # no twin has a series of its own


async def test_metrics_move_with_requests_likes_and_subscriptions(make_client: MakeClient) -> None:
    client = await make_client(API_RATE_LIMIT_TIMES="2")
    before = await (await client.get("/metrics")).text()
    await make_star(client, "m")
    statuses = [(await client.post("/stars/m/like", json={})).status for _ in range(3)]
    assert statuses == [200, 200, 429]
    stream = await client.get("/events/stream")
    after = await (await client.get("/metrics")).text()

    like_route = {"method": "POST", "route": "/stars/{id}/like"}
    assert sample(after, "starmap_http_requests_total", **like_route, status="200") == 2
    assert sample(after, "starmap_http_requests_total", **like_route, status="429") == 1
    assert sample(after, "starmap_http_request_duration_seconds_count", **like_route) == 3
    assert sample(after, "starmap_rate_limited_total") == 1
    assert sample(after, "starmap_actors_live", kind="likes") == 1
    assert sample(after, "starmap_sse_subscribers", topic="stars") == 1
    assert sample(after, "starmap_events_published_total") > sample(before, "starmap_events_published_total")
    ops = "starmap_storage_operation_duration_seconds_count"
    assert sample(after, ops, operation="update") >= 1
    assert sample(after, ops, operation="insert") > sample(before, ops, operation="insert")
    # One after another, the create and the two likes each took a round trip of their own.
    trips = "starmap_storage_write_requests_total"
    assert sample(after, trips) >= sample(before, trips) + 3
    stream.close()


# -- request ids ------------------------------------------------------------------------------


async def test_request_ids_are_honoured_or_made_and_reach_the_logs(
    aiohttp_client: Any, make_settings: MakeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(make_settings())

    @doc("a test route that logs", tag="test", responses={200: "Any"})
    async def noisy(request: web.Request) -> web.Response:
        logging.getLogger("starmap.test").warning("inside the handler")
        return web.json_response({})

    @doc("a test route that redirects", tag="test", responses={302: "Any"})
    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/health")

    app.router.add_get("/probe/noisy", app[FRONT](noisy))
    app.router.add_get("/probe/moved", app[FRONT](moved))
    client: Client = await aiohttp_client(app)
    caplog.handler.addFilter(RequestIdFilter())
    with caplog.at_level(logging.WARNING):
        answer = await client.get("/probe/noisy", headers={"X-Request-ID": "abc-123"})
    assert answer.headers["X-Request-ID"] == "abc-123"
    [record] = [r for r in caplog.records if r.getMessage() == "inside the handler"]
    assert record.request_id == "abc-123"  # type: ignore[attr-defined]

    for bad in ("has space", "x" * 200, "quote'd"):
        made = (await client.get("/health", headers={"X-Request-ID": bad})).headers["X-Request-ID"]
        assert made != bad
        assert re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]+", made)
    assert (await client.get("/nope")).headers["X-Request-ID"]  # on aiohttp's own errors too
    redirect = await client.get("/probe/moved", headers={"X-Request-ID": "r-1"}, allow_redirects=False)
    assert (redirect.status, redirect.headers["X-Request-ID"]) == (302, "r-1")
    async with client.get("/events/stream", headers={"X-Request-ID": "s-1"}) as stream:
        assert stream.headers["X-Request-ID"] == "s-1"  # prepared by its handler, not the front


async def test_each_access_line_has_the_id_its_answer_carries(
    make_settings: MakeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    """Honoured, made, on a miss, a redirect and a problem: the access line names the id the
    client got. A request aiohttp refuses itself has no id: ``-``. (An event stream's id is
    put on by its handler: ``test_request_ids_are_honoured_or_made_and_reach_the_logs``.)"""
    app = create_app(make_settings())

    @doc("a test route that redirects", tag="test", responses={302: "Any"})
    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/health")

    app.router.add_get("/probe/moved", app[FRONT](moved))
    runner = web.AppRunner(app, access_log_class=AccessLogger)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    sent: list[tuple[str, str]] = []
    try:
        with caplog.at_level(logging.INFO, logger="aiohttp.access"):
            async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
                for path, offered in (("/health", "acc-1"), ("/health", None), ("/nope", "acc-3"),
                                      ("/probe/moved", "acc-4"), ("/stars/nope", None)):  # fmt: skip
                    headers = {"X-Request-ID": offered} if offered else {}
                    async with http.get(path, headers=headers, allow_redirects=False) as answer:
                        sent.append((path, answer.headers["X-Request-ID"]))
                async with http.get("/health", headers={"Content-Length": "x"}) as refused:
                    assert refused.status == 400 and "X-Request-ID" not in refused.headers
    finally:
        await runner.cleanup()
    logged = [(r.path, r.request_id) for r in caplog.records if r.name == "aiohttp.access"]  # type: ignore[attr-defined]
    assert sorted(logged) == sorted([*sent, ("/", "-")])  # aiohttp's own 400 knows no path
    assert (sent[0][1], sent[2][1], sent[3][1]) == ("acc-1", "acc-3", "acc-4")  # honoured
    assert sent[1][1] != "-" and sent[4][1] != "-"  # made


# -- OpenAPI ----------------------------------------------------------------------------------


async def test_every_route_is_in_the_openapi_document(client: Client) -> None:
    document = await (await client.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.1")
    documented = {(m.upper(), p) for p, methods in document["paths"].items() for m in methods}
    routed = {
        (r.method, r.resource.canonical)
        for r in client.app.router.routes()
        if r.resource is not None
        and r.method not in ("HEAD", "OPTIONS", "*")  # "*": the last route, for what no other takes
        and (r.resource.canonical == "/" or not r.resource.canonical.endswith("/"))
    }
    assert routed == documented
    assert ("POST", "/stars/{id}/like") in documented
    like = document["paths"]["/stars/{id}/like"]["post"]
    assert {"200", "404", "429", "503"} <= set(like["responses"])
    star_in = document["components"]["schemas"]["StarIn"]
    assert star_in["required"] == ["x", "y", "message"]
    assert star_in["properties"]["x"] == {"type": "number", "minimum": -1, "maximum": 1}


async def test_an_undocumented_route_fails_the_build(make_settings: MakeSettings) -> None:
    app = create_app(make_settings())

    async def secret(request: web.Request) -> web.Response:
        return web.Response()

    app.router.add_get("/undocumented", secret)
    with pytest.raises(RuntimeError, match="/undocumented has no @doc"):
        build(app, title="t", version="1")


async def test_docs_page_needs_nothing_from_elsewhere(client: Client) -> None:
    answer = await client.get("/docs")
    assert answer.status == 200
    assert answer.content_type == "text/html"
    page = await answer.text()
    assert "/openapi.json" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("a\r\nb", "a\\r\\nb"),  # C0: the forged log line
        ("\x1b[2J\x7f\x85\x9f", "\\x1b[2J\\x7f\\x85\\x9f"),  # ESC, DEL, C1
        ("a\u2028b\u2029", "a\\u2028b\\u2029"),  # Unicode's line and paragraph separators
        ("\ud800x\udfff", "\\ud800x\\udfff"),  # lone surrogates a terminal cannot print
        ("é ✨ \u00a0 日本", "é ✨ \u00a0 日本"),  # printable text stays as it is
    ],
)
def test_logs_and_cli_output_escape_what_could_end_or_break_a_line(text: str, escaped: str) -> None:
    assert escape_controls(text) == escaped
