"""Hostile bytes on every operation of the document, against a real process over raw sockets.

Hypothesis builds well-formed HTTP/1.1 requests whose contents are hostile: deep JSON,
bodies in other encodings or with a BOM, lone surrogates, Unicode digits, non-UTF-8
bytes in header values (an ``Idempotency-Key`` among them) and percent-encoded junk in
paths and queries. Every answer must be below 500, and every 4xx must be problem+json,
whether the app or aiohttp's parser refused it (control bytes in headers, raw non-ASCII in
the request line).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .rig import StarmapProcess, get_json, raw_exchange

pytestmark = pytest.mark.slow

KEY = "a-fuzzing-admin-key-of-32-characters"


@pytest.fixture(scope="module")
def target(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[StarmapProcess, list[tuple[str, str]]]]:
    workdir: Path = tmp_path_factory.mktemp("fuzz")
    proc = StarmapProcess(workdir, {
        "ENVIRONMENT": "test", "DATA_DIR": str(workdir / "data"), "ADMIN_API_KEY": KEY,
        "API_RATE_LIMIT_TIMES": "1000000", "API_TRUSTED_PROXIES": "127.0.0.1",
    })  # fmt: skip
    proc.start()
    document = get_json(f"{proc.url}/openapi.json")[1]
    operations = [
        (method.upper(), path)
        for path, methods in document["paths"].items()
        for method in methods
        if not path.startswith("/events/") and not (method == "delete" and path == "/admin/stars")
    ]
    yield proc, operations
    proc.stop()


DEEP = "[" * 2000 + "]" * 2000
# Unicode digits (Arabic-Indic three, superscript two, full-width five, superscript zero),
# invisible and bidi characters, a BOM, a line separator, quotes, JSON punctuation,
# lone surrogates and control characters.
ODD_CHARS = [*"a\u0663\u00b2\uff15\u2070\u200b\u202e\ufeff\u2028\u00e9\u2728 \t\"'\\{}[]:,",
             "\ud800", "\udfff", "\x00", "\x1b"]  # fmt: skip
ODD_TEXT = st.text(st.sampled_from(ODD_CHARS), max_size=12)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.floats(allow_nan=False) | ODD_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ODD_TEXT, inner, max_size=3),
    max_leaves=12,
)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["json", "deep", "utf16", "bom", "latin1", "surrogate", "duplicate", "junk"]))
    value = draw(st.dictionaries(st.sampled_from(["x", "y", "message", "name", "email", "user_id", "id",
                                                  "brightness"]), JSON_VALUES, max_size=5))  # fmt: skip
    text = json.dumps(value)
    return {
        "json": text.encode("utf-8", "surrogatepass"),
        "deep": ('{"message": ' + DEEP + "}").encode(),
        "utf16": text.encode("utf-16", "surrogatepass"),
        "bom": b"\xef\xbb\xbf" + text.encode("utf-8", "surrogatepass"),
        "latin1": b'{"message": "caf\xe9"}',
        "surrogate": b'{"email": "a\\ud800@b.co", "name": "\\udfff\\udfff", "message": "\\ud800"}',
        "duplicate": b'{"x": 0, "x": 1, "y": 0, "message": "m"}',
        "junk": draw(st.binary(max_size=40)),
    }[kind]


# Any bytes but the line breaks that end a header (and NUL): control bytes and obs-text
# included. The parser refuses some of them; that answer must be a problem too.
HEADER_BYTES = st.binary(min_size=1, max_size=24).map(
    lambda b: bytes(c for c in b if c not in b"\r\n\x00").strip() or b"x"
)


def fill(path: str, segment: str) -> str:
    return (path.replace("{id}", segment).replace("{ids}", segment + ",s")
            .replace("{name}", segment).replace("{kind}", segment).replace("{key}", segment))  # fmt: skip


def exchange(port: int, request: bytes) -> tuple[int, str, bytes]:
    head, _, body = raw_exchange(port, request, timeout=10).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers.get("content-type", ""), body


# Percent-encoded, and one raw: non-ASCII in a request line is the parser's to refuse.
QUERIES = ["", "?limit=\u0663", "?limit=%D9%A3", "?limit=%C2%B2", "?limit=%EF%BC%95", "?bbox=%E2%81%B0,0,1,1",
           "?relation=%F0%9F%8C%9F", "?topics=stars%00", "?limit=1&cursor=%FF%FE"]  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(
    data=st.data(),
    segment=ODD_TEXT.map(lambda t: quote(t.encode("utf-8", "surrogatepass"), safe="")) | st.just("s"),
    query=st.sampled_from(QUERIES),
    body=bodies(),
    header=HEADER_BYTES,
    # Hostile keys, and real ones: a valid key must not turn hostile content into a 5xx either.
    idempotency_key=HEADER_BYTES | st.uuids().map(lambda u: str(u).encode()),
    content_type=st.sampled_from(
        [b"application/json", b"application/json; charset=utf-8", b"text/plain", b""]
    ),
)
def test_no_hostile_content_is_a_server_error(
    target: tuple[StarmapProcess, list[tuple[str, str]]],
    data: Any, segment: str, query: str, body: bytes, header: bytes, idempotency_key: bytes,
    content_type: bytes,
) -> None:  # fmt: skip
    proc, operations = target
    method, path = data.draw(st.sampled_from(operations))
    request = (
        f"{method} {fill(path, segment)}{query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode()
        + b"X-API-Key: " + header + b"\r\nX-Forwarded-For: " + header + b", 127.0.0.1\r\n"
        + b"Last-Event-ID: " + header + b"\r\nX-Request-ID: " + header + b"\r\n"
        + b"Idempotency-Key: " + idempotency_key + b"\r\n"
        + (b"Content-Type: " + content_type + b"\r\n" if content_type else b"")
        + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )  # fmt: skip
    status, kind, answer = exchange(proc.port, request)
    assert status < 500, (method, path, request[:300], answer[:300])
    if 400 <= status < 500:
        assert kind.startswith("application/problem+json"), (status, kind, request[:200], answer[:200])
