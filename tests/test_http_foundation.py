"""The app over real HTTP: problem+json for every error, health, CORS, trailing slashes."""

from __future__ import annotations

from typing import Any

import attrs
import cattrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from starmap.actors.messages import PLAIN_LIKE, Like
from starmap.app import create_app
from starmap.errors import ActorStopped, AlreadyExists, NotFound, Overloaded, StorageUnavailable
from starmap.http.body import load_body, structure
from starmap.http.openapi import doc
from starmap.http.schemas import LikeIn, converter
from starmap.http.stars import NO_LIKE_BODY
from starmap.keys import FRONT

from .conftest import MakeSettings
from .rig import assert_problem

Client = TestClient[web.Request, web.Application]


@attrs.frozen
class Echo:
    name: str
    count: int


_converter = cattrs.Converter(forbid_extra_keys=False)


@doc("echo a body", tag="test", body=Echo, responses={200: "Any", 400: "Problem", 422: "Problem"})
async def echo(request: web.Request) -> web.Response:
    body = await load_body(request, Echo, _converter)
    return web.json_response(attrs.asdict(body))


def _raiser(exc: Exception) -> Any:
    @doc("raise an error", tag="test", responses={500: "Problem"})
    async def handler(request: web.Request) -> web.Response:
        raise exc

    return handler


@pytest.fixture
async def probe_client(aiohttp_client: Any, make_settings: MakeSettings) -> Client:
    """The real app plus routes (in its front, as every route) that exercise the body loader
    and the answers to errors."""
    app = create_app(make_settings())
    app.router.add_post("/probe/echo", app[FRONT](echo))
    for name, exc in {
        "not-found": NotFound("no star 'x'"),
        "conflict": AlreadyExists("id 'x' is taken"),
        "storage": StorageUnavailable("azure tables unreachable"),
        "overloaded": Overloaded("mailbox full"),
        "stopped": ActorStopped("likes/x stopped"),
        "bug": RuntimeError("a bug"),
    }.items():
        app.router.add_get(f"/probe/{name}", app[FRONT](_raiser(exc)))
    client: Client = await aiohttp_client(app)
    return client


@pytest.fixture
def backend() -> str:
    """Error mapping does not depend on the store: the embedded one will do."""
    return "sqlite"


async def test_a_valid_body_is_loaded(probe_client: Client) -> None:
    answer = await probe_client.post("/probe/echo", json={"name": "vega", "count": 3, "extra": True})
    assert answer.status == 200
    assert await answer.json() == {"name": "vega", "count": 3}


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"{not json", "malformed JSON"),
        (b"[1, 2]", "must be a JSON object, not an array"),
        (b'"text"', "must be a JSON object, not a string"),
        (b"", "needs a JSON object body"),
        (b"\xff\xfe", "the body must be UTF-8"),
    ],
    ids=["malformed", "array", "string", "empty", "not-utf8"],
)
async def test_a_body_that_is_not_a_json_object_is_400(
    probe_client: Client, body: bytes, detail: str
) -> None:
    answer = await probe_client.post("/probe/echo", data=body, headers={"Content-Type": "application/json"})
    problem = await assert_problem(answer, 400)
    assert detail in problem["detail"]


async def test_a_body_that_fails_validation_is_422_with_field_errors(probe_client: Client) -> None:
    answer = await probe_client.post("/probe/echo", json={"count": "many"})
    problem = await assert_problem(answer, 422)
    fields = {e["field"]: e["message"] for e in problem["errors"]}
    assert set(fields) == {"name", "count"}
    assert "required" in fields["name"]


async def test_a_body_over_the_limit_is_413(probe_client: Client) -> None:
    answer = await probe_client.post("/probe/echo", json={"name": "x" * (64 * 1024), "count": 1})
    await assert_problem(answer, 413)


async def test_an_unknown_route_is_404(probe_client: Client) -> None:
    await assert_problem(await probe_client.get("/no/such/thing"), 404)


async def test_a_wrong_method_is_405_with_allow(probe_client: Client) -> None:
    answer = await probe_client.delete("/health")
    problem = await assert_problem(answer, 405)
    assert "GET" in answer.headers["Allow"]
    assert "DELETE is not allowed" in problem["detail"]


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [("GET", "/stars/s1/like", 405, {"POST"}), ("PUT", "/stars/s1", 405, {"GET", "HEAD", "DELETE"}),
     ("POST", "/", 405, {"GET", "HEAD"}), ("GET", "/stars/s1/nothing", 404, None),
     ("PATCH", "/nothing/here", 404, None), ("GET", "/%2e%2e/%00", 404, None)],
)  # fmt: skip
async def test_what_no_route_takes_is_answered_by_the_last_route_as_the_router_would(
    probe_client: Client, method: str, path: str, status: int, allow: set[str] | None
) -> None:
    """A catch-all route answers misses (there is no aiohttp middleware): 405 with the methods
    the path's routes take, else 404; a problem with a request id, counted as "unmatched"."""
    answer = await probe_client.request(method, path)
    await assert_problem(answer, status)
    assert answer.headers["X-Request-ID"]
    if allow is not None:
        assert set(answer.headers["Allow"].split(",")) == allow
    metrics = await (await probe_client.get("/metrics")).text()
    assert f'route="unmatched",status="{status}"' in metrics


async def test_a_route_added_outside_the_front_stops_start_up(make_settings: MakeSettings) -> None:
    app = create_app(make_settings())
    app.router.add_get("/probe/bare", echo)  # not in app[FRONT]: no id, no problems, not counted
    runner = web.AppRunner(app)
    try:
        with pytest.raises(RuntimeError, match=r"routes without the front.*GET /probe/bare"):
            await runner.setup()
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("path", "status", "retry_after"),
    [
        ("/probe/not-found", 404, None),
        ("/probe/conflict", 409, None),
        ("/probe/storage", 503, "5"),
        ("/probe/overloaded", 503, "1"),
        ("/probe/stopped", 503, "1"),
        ("/probe/bug", 500, None),
    ],
    ids=["not-found", "conflict", "storage-down", "overloaded", "actor-stopped", "unexpected"],
)
async def test_domain_errors_map_to_problems(
    probe_client: Client, path: str, status: int, retry_after: str | None
) -> None:
    answer = await probe_client.get(path)
    problem = await assert_problem(answer, status)
    assert answer.headers.get("Retry-After") == retry_after
    if status == 500:
        assert "a bug" not in problem["detail"]  # internals stay in the log


async def test_debug_puts_the_exception_in_a_500s_detail(
    aiohttp_client: Any, make_settings: MakeSettings
) -> None:
    app = create_app(make_settings(DEBUG="true"))
    app.router.add_get("/probe/bug", app[FRONT](_raiser(RuntimeError("a bug"))))
    client: Client = await aiohttp_client(app)
    problem = await assert_problem(await client.get("/probe/bug"), 500)
    assert problem["detail"] == "RuntimeError: a bug"


async def test_paths_work_with_and_without_a_trailing_slash(probe_client: Client) -> None:
    for path in ("/health", "/health/", "/health/liveness/", "/health/readiness/"):
        assert (await probe_client.get(path, allow_redirects=False)).status == 200, path


async def test_cors_allows_the_configured_origin(make_settings: MakeSettings, aiohttp_client: Any) -> None:
    client: Client = await aiohttp_client(create_app(make_settings(API_CORS_ORIGINS="https://map.example")))
    allowed = await client.get("/health", headers={"Origin": "https://map.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://map.example"
    other = await client.get("/health", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    preflight = await client.options(
        "/health",
        headers={"Origin": "https://map.example", "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://map.example"
    refused = await client.options(  # CORS's own preflight handler is in the front too
        "/health", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    )
    await assert_problem(refused, 403)
    assert refused.headers["X-Request-ID"]


async def test_without_cors_origins_no_cors_headers(probe_client: Client) -> None:
    answer = await probe_client.get("/health", headers={"Origin": "https://map.example"})
    assert "Access-Control-Allow-Origin" not in answer.headers


def test_the_shared_empty_like_body_and_message_are_what_they_would_be_made() -> None:
    """A like with an empty body reuses one frozen ``LikeIn`` and one ``Like``: they must be
    what structuring ``{}`` and a like without a user or key would make."""
    assert structure({}, LikeIn, converter) == NO_LIKE_BODY
    assert Like(user_id=None, intent=None) == PLAIN_LIKE
    assert attrs.has(LikeIn) and attrs.has(Like)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        NO_LIKE_BODY.user_id = "u1"  # type: ignore[misc, assignment]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        PLAIN_LIKE.user_id = "u1"  # type: ignore[misc]
