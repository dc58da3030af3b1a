"""Hostile input, second round: what used to be a 500 is a 4xx problem+json, on both stores.

Raw sockets where a client library would clean the input first; every case runs on
SQLite and on Azurite, over real HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from .conftest import MakeClient, MakeProcess

Client = TestClient[web.Request, web.Application]
KEY = "an-admin-key-of-thirty-two-chars"
DEEP = "[" * 1000 + "]" * 1000


async def raw(client: Client, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read one answer: (status, lower-cased headers, body)."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    writer.close()
    return status, headers, body


def assert_problem(status: int, headers: dict[str, str], body: bytes, expected: int) -> dict[str, Any]:
    assert status == expected, body
    assert headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = json.loads(body)
    assert problem["status"] == expected
    return problem


@pytest.fixture
async def target(make_client: MakeClient) -> Client:
    """The app with a star 's' and a user 'ada@example.org'."""
    client = await make_client(ADMIN_API_KEY=KEY, API_RATE_LIMIT_TIMES="1000")
    created = await client.post("/stars", json={"x": 0, "y": 0, "message": "m", "id": "s"})
    assert created.status == 201
    assert (await client.post("/users", json={"name": "Ada", "email": "ada@example.org"})).status == 201
    return client


async def test_json_nested_a_thousand_deep_is_400_on_every_write(target: Client) -> None:
    user = (await (await target.get("/users")).json())[0]["id"]
    writes = [("POST", "/stars"), ("POST", "/users"), ("PUT", f"/users/{user}"), ("POST", "/stars/s/like")]
    for method, path in writes:
        for body in (DEEP, '{"message": ' + DEEP + "}"):
            answer = await target.request(
                method, path, data=body, headers={"Content-Type": "application/json"}
            )
            assert answer.status == 400, (method, path)
            assert (await answer.json())["detail"] == "malformed JSON: nested too deeply"


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/json"],
)
async def test_a_write_that_is_not_json_by_type_is_415_and_writes_nothing(
    target: Client, content_type: str | None
) -> None:
    """What a cross-site form or a text/plain fetch sends (no CORS preflight) can write nothing."""
    user = (await (await target.get("/users")).json())[0]["id"]
    bodies = {
        ("POST", "/stars"): b'{"x": 0, "y": 0, "message": "csrf"}',
        ("POST", "/users"): b'{"name": "Eve", "email": "eve@example.org"}',
        ("PUT", f"/users/{user}"): b'{"name": "Eve", "email": "eve@example.org"}',
        ("POST", "/stars/s/like"): b"",
    }
    for (method, path), data in bodies.items():
        headers = {"Content-Type": content_type} if content_type else {}
        answer = await target.request(method, path, data=data, headers=headers)
        assert answer.status == 415, (method, path)
        assert answer.content_type == "application/problem+json"
    assert [s["id"] for s in await (await target.get("/stars")).json()] == ["s"]
    assert (await (await target.get("/stars/s")).json())["likes"] == 0
    assert [u["name"] for u in await (await target.get("/users")).json()] == ["Ada"]
    with_charset = {"Content-Type": "application/json; charset=utf-8"}
    assert (await target.post("/stars/s/like", data=b"{}", headers=with_charset)).status == 200


async def test_a_lone_surrogate_in_an_address_is_422(target: Client) -> None:
    body = b'{"name": "Bo", "email": "bo\\ud800@example.org"}'
    answer = await target.post("/users", data=body, headers={"Content-Type": "application/json"})
    assert answer.status == 422
    assert (await answer.json())["errors"][0]["field"] == "email"


async def test_unicode_digits_in_limit_are_422_not_read_as_numbers(target: Client) -> None:
    for path in ("/stars", "/users"):
        # Arabic-Indic three, superscript two, full-width five, one and superscript zero.
        for digits in ("%D9%A3", "%C2%B2", "%EF%BC%95", "1%E2%81%B0"):
            answer = await target.get(f"{path}?limit={digits}")
            assert answer.status == 422, (path, digits)
            assert (await answer.json())["errors"][0]["field"] == "limit"


async def test_non_utf8_bytes_in_the_admin_key_are_401(target: Client) -> None:
    request = (
        b"DELETE /admin/stars HTTP/1.1\r\nHost: x\r\nX-API-Key: \xff\xfe\x80key\r\nConnection: close\r\n\r\n"
    )
    assert_problem(*await raw(target, request), 401)
    assert (await target.get("/stars/s")).status == 200  # nothing was cleared


@pytest.mark.parametrize(
    ("encoding", "data"),
    [("gzip", b"\x1f\x8b\x08 not really gzip"), ("deflate", b"not deflate"), ("gzip", b'{"x": 0}')],
)
async def test_a_body_that_is_not_what_its_encoding_says_is_400(
    target: Client, encoding: str, data: bytes
) -> None:
    headers = {"Content-Type": "application/json", "Content-Encoding": encoding}
    answer = await target.post("/stars", data=data, headers=headers)
    assert answer.status == 400
    assert answer.content_type == "application/problem+json"


async def test_a_body_that_is_what_its_encoding_says_is_read(target: Client) -> None:
    body = gzip.compress(json.dumps({"x": 0.5, "y": 0.5, "message": "zipped", "id": "z"}).encode())
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    assert (await target.post("/stars", data=body, headers=headers)).status == 201


async def test_a_client_that_hangs_up_mid_body_is_no_error(
    target: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        _, writer = await asyncio.open_connection(target.host, target.port)
        writer.write(b"POST /stars HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"x\":")  # fmt: skip
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.close()
        await asyncio.sleep(0.3)
    metrics = await (await target.get("/metrics")).text()
    posts = [line for line in metrics.splitlines() if line.startswith("starmap_http_requests_total")
             and 'route="/stars"' in line and 'method="POST"' in line]  # fmt: skip
    assert any('status="499"' in line for line in posts), posts
    assert not any('status="500"' in line for line in posts), posts
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("the client went away" in r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)


@pytest.mark.slow
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_request_cannot_forge_a_log_line(make_process: MakeProcess, log_format: str) -> None:
    proc = make_process(LOG_FORMAT=log_format, LOG_LEVEL="INFO")
    forged = "2026-01-01 00:00:00,000 ERROR starmap [-]: forged"
    path = "/stars/a%0D%0A" + forged.replace(" ", "%20") + "%E2%80%A8" + forged.replace(" ", "%20")
    for target in (path, "/users?limit=%0Aforged", "/no%1B%5B31mwhere%0D"):
        with urllib.request.urlopen(f"{proc.url}/health") as answer:  # noqa: S310 - loopback only
            assert answer.status == 200
        request = urllib.request.Request(f"{proc.url}{target}")  # noqa: S310
        with contextlib.suppress(urllib.error.HTTPError):
            urllib.request.urlopen(request, timeout=5).close()  # noqa: S310
    time.sleep(0.5)  # the log handler writes in batches
    lines = proc.log().splitlines()
    assert not [line for line in lines if line.startswith("2026-01-01") or "\x1b" in line]
    assert any("forged" in line for line in lines)  # it was logged, on its own request's line
    if log_format == "json":
        for line in lines:
            if line.startswith("{"):
                json.loads(line)


async def test_duplicate_keys_and_bodies_not_in_utf8_are_400(target: Client) -> None:
    headers = {"Content-Type": "application/json"}
    star = '{"x": 0, "y": 0, "message": "m"}'
    for data in (
        b'{"x": 0, "y": 0, "message": "a", "message": "b"}',
        b'{"name": "Ann", "email": "ann@example.org", "email": "eve@example.org"}',
        star.encode("utf-16"),
        star.encode("utf-32"),
        b"\xef\xbb\xbf" + star.encode(),  # a UTF-8 byte order mark
        '{"x": 0, "y": 0, "message": "café"}'.encode("latin-1"),
    ):
        for path in ("/stars", "/users"):
            answer = await target.post(path, data=data, headers=headers)
            assert answer.status == 400, (path, data[:20])
    assert [s["id"] for s in await (await target.get("/stars")).json()] == ["s"]


async def test_one_address_in_two_unicode_forms_is_one_address(target: Client) -> None:
    composed, decomposed = "zo\u00e9@example.org", "zoe\u0301@example.org"
    first = await target.post("/users", json={"name": "Zoé", "email": decomposed})
    assert first.status == 201
    assert (await first.json())["email"] == composed  # stored in NFC
    assert (await target.post("/users", json={"name": "Zoe", "email": composed})).status == 409


INVISIBLE_IN_ADDRESSES = [
    "zoe\u200b@example.org", "z\u202eoe@example.org", "zoe\u2060@example.org", "\ufeffzoe@example.org",
    "zoe\u0085@example.org",
]  # fmt: skip


@pytest.mark.parametrize("address", INVISIBLE_IN_ADDRESSES)
async def test_addresses_with_invisible_or_bidi_characters_are_422(target: Client, address: str) -> None:
    answer = await target.post("/users", json={"name": "Zoe", "email": address})
    assert answer.status == 422
    assert (await answer.json())["errors"][0]["field"] == "email"


@pytest.mark.parametrize(
    "text", ["   ", "\u200b\u200b", "\u202e \u202c", "\u3164\u3164", "\n\t ", "\u2800\u00ad"]
)
async def test_messages_and_names_need_a_visible_character(target: Client, text: str) -> None:
    star = await target.post("/stars", json={"x": 0, "y": 0, "message": text})
    assert star.status == 422
    assert (await star.json())["errors"] == [
        {"field": "message", "message": "must contain at least one visible character"}
    ]
    user = await target.post("/users", json={"name": text * 2, "email": "zed@example.org"})  # 2+ characters
    assert user.status == 422
    assert (await target.post("/stars", json={"x": 0, "y": 0, "message": text + "ok"})).status == 201


PYTHON_WORDS = ("NoneType", "int", "float", "dict", "list", "str", "bool", "unknown error", "Traceback")


async def test_error_messages_never_name_python_types(target: Client) -> None:
    odd: list[Any] = [None, 10**400, 1.5e308 * 10, [], {}, True, "x", -(10**30), [1, {"a": None}]]
    messages = []
    for value in odd:
        for path, body in (
            ("/stars", {"x": value, "y": value, "message": value, "brightness": value, "user_id": value}),
            ("/users", {"name": value, "email": value}),
            ("/stars/s/like", {"user_id": value}),
        ):
            answer = await target.post(
                path, data=json.dumps(body), headers={"Content-Type": "application/json"}
            )
            if answer.status in (400, 422):
                problem = await answer.json()
                messages += [problem["detail"], *(e["message"] for e in problem.get("errors", []))]
    assert messages
    for message in messages:
        words = set(message.replace(",", " ").replace("(", " ").replace(")", " ").split())
        assert not words & set(PYTHON_WORDS) and "unknown error" not in message, message


async def test_head_is_served_wherever_get_is(target: Client) -> None:
    document = await (await target.get("/openapi.json")).json()
    for path, operations in document["paths"].items():
        if "get" not in operations:
            continue
        url = path.replace("{id}", "s").replace("{ids}", "s").replace("{name}", "app.js")
        url = url.replace("{kind}", "stars").replace("{key}", "registry")
        head = await target.head(url)
        get = await target.get(url) if "stream" not in url else None
        assert head.status == (get.status if get is not None else 200), url
        assert await head.read() == b"", url
        if get is not None:
            get.close()


async def test_slow_bodies_are_408_and_their_connections_closed(make_client: MakeClient) -> None:
    client = await make_client(API_BODY_TIMEOUT="0.5")
    head = (
        b"POST /stars HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
    )

    async def trickle() -> tuple[float, bytes]:
        reader, writer = await asyncio.open_connection(client.host, client.port)
        writer.write(head)
        await writer.drain()
        started = time.monotonic()
        answer = await asyncio.wait_for(reader.read(), 10)  # read() returns once the server closes
        writer.close()
        return time.monotonic() - started, answer

    results = await asyncio.gather(*(trickle() for _ in range(200)))
    for seconds, answer in results:
        assert answer.startswith(b"HTTP/1.1 408"), answer[:60]
        assert b"application/problem+json" in answer and b"did not arrive within 0.5 s" in answer
        assert seconds < 5  # closed by the server, not held for as long as the client likes
    assert (await client.get("/health/liveness")).status == 200
    assert [s for s in await (await client.get("/stars")).json()] == []


@pytest.mark.slow
def test_a_real_server_takes_a_hang_up_mid_body_calmly(make_process: MakeProcess) -> None:
    """The production server (no handler cancellation) sees a lost connection, not a bug."""
    proc = make_process(LOG_LEVEL="DEBUG")
    import socket

    with socket.create_connection(("127.0.0.1", proc.port)) as sock:
        sock.sendall(b"POST /stars HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"x\":")  # fmt: skip
        time.sleep(0.3)
    time.sleep(0.8)
    with urllib.request.urlopen(f"{proc.url}/metrics", timeout=5) as answer:  # noqa: S310 - loopback only
        metrics = answer.read().decode()
    posts = [line for line in metrics.splitlines() if line.startswith("starmap_http_requests_total")
             and 'route="/stars"' in line]  # fmt: skip
    assert posts == ['starmap_http_requests_total{method="POST",route="/stars",status="499"} 1.0'], posts
    log = proc.log()
    assert " ERROR " not in log and "Traceback" not in log
    assert "the client went away" in log


MALFORMED = [
    b"GET\x00 / HTTP/1.1\r\nHost: x\r\n\r\n",  # a NUL in the request line
    b"FOO! / HTTP/1.1\r\nHost: x\r\n\r\n",  # a method HTTP does not allow
    b"POST /stars HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n",  # a header line too long
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n",  # a control byte in a header value
    "GET /stars?limit=\u0663 HTTP/1.1\r\nHost: x\r\n\r\n".encode(),  # raw non-ASCII in the target
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # TLS spoken to a plain port
]


async def read_all(host: str, port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


def assert_clean_refusal(answer: bytes, request: bytes) -> None:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"400", answer[:200]
    assert b"content-type: application/problem+json" in head.lower()
    problem = json.loads(body)
    assert problem["status"] == 400 and problem["detail"]
    for piece in (b"\x00", b"FOO!", b"aaaaaaaaaa", b"\x01", "\u0663".encode(), b"Content-Length: 3"):
        if piece in request:
            assert piece not in body, piece  # nothing of the input comes back


async def test_requests_aiohttp_cannot_parse_are_problems_that_echo_nothing(
    target: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        for request in MALFORMED:
            assert target.port is not None
            assert_clean_refusal(await read_all(target.host, target.port, request), request)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.records[:3]


@pytest.mark.slow
async def test_a_real_server_refuses_malformed_requests_quietly(make_process: MakeProcess) -> None:
    proc = make_process(LOG_LEVEL="INFO")
    for request in MALFORMED:
        assert_clean_refusal(await read_all("127.0.0.1", proc.port, request), request)
    await asyncio.sleep(0.5)
    log = proc.log()
    assert " ERROR " not in log and "Traceback" not in log
