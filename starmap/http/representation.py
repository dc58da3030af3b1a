"""Conditional and compressed answers: ``ETag`` + ``If-None-Match`` → 304, gzip when asked.

Read endpoints tag their answers with a weak ``ETag`` computed from the data behind
them, never from a rendering: a star's tag comes from its state (``stars.digest``), so
it stays put while the star fades and is the same on every replica holding the same
data. A tag the client already has answers 304 with no body (``not_modified``, before
anything is rendered where the handler can tell early; ``finish`` checks every tagged
answer). JSON of at least ``MIN_COMPRESSED`` bytes goes out compressed when the client's
``Accept-Encoding`` allows (brotli, else gzip), with ``Vary: Accept-Encoding``; an answer
that is already encoded (the cached whole-sky list, compressed once per rendering) is left
as it is.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Container, Iterable
from typing import Final, Literal

import brotli
import orjson
from aiohttp import web

from ..stars import Star
from .jsonio import JSON
from .openapi import Param

__all__ = (
    "CONDITIONAL",
    "IF_NONE_MATCH",
    "MIN_COMPRESSED",
    "Coding",
    "chosen_coding",
    "body_tag",
    "compress",
    "finish",
    "not_modified",
    "one_star_tag",
    "star_tag",
    "weak_tag",
)

MIN_COMPRESSED: Final = 1024
GZIP_LEVEL: Final = 5  # the usual balance; the whole-sky list uses a faster level (see ListCache)
BROTLI_QUALITY: Final = 4  # as fast as gzip's usual level, and smaller
Coding = Literal["br", "gzip"]
CACHE_CONTROL: Final = "no-cache"  # keep it, but ask every time: a 304 costs no body
JSON_TYPES: Final = frozenset({"application/json", "application/problem+json"})
IF_NONE_MATCH: Final = Param(
    "If-None-Match",
    "header",
    {"type": "string"},
    "the `ETag` of the copy you hold: a 304 with no body while the data behind it is unchanged "
    "(tags are weak, from the data, and the same on every replica)",
)
CONDITIONAL: Final = {304: ("Not Modified: the copy you hold is current (no body)", None, JSON)}


def weak_tag(*parts: object) -> str:
    """A weak validator over ``parts`` (JSON-encodable): equal parts, equal tags, on any replica."""
    return body_tag(orjson.dumps(parts))


def star_tag(kind: str, stars: Iterable[Star], popular: Container[str], *extra: object) -> str:
    """The tag of a list of stars as answered: each one's state and popularity, in order."""
    return weak_tag(kind, [(s.digest, s.id in popular) for s in stars], *extra)


def one_star_tag(star: Star, popular: Container[str]) -> str:
    """The tag of one star as answered: its digest and popularity as they are, nothing to hash
    (the tag of every single-star GET)."""
    return f'W/"{star.digest:016x}{"p" if star.id in popular else "n"}"'


def body_tag(body: bytes) -> str:
    """For answers with nothing time-dependent in them: the body itself decides."""
    return 'W/"%s"' % hashlib.blake2b(body, digest_size=12).hexdigest()  # noqa: UP031


def _hits(if_none_match: str, tag: str) -> bool:
    """RFC 9110's weak comparison against a list of tags (or ``*``)."""
    if if_none_match.strip() == "*":
        return True
    opaque = tag.removeprefix("W/")
    return any(candidate.strip().removeprefix("W/") == opaque for candidate in if_none_match.split(","))


def not_modified(request: web.Request, tag: str) -> web.Response | None:
    """A 304 when the client holds ``tag`` already (GET and HEAD); None otherwise."""
    header = request.headers.get("If-None-Match")
    if header is None or request.method not in ("GET", "HEAD") or not _hits(header, tag):
        return None
    return web.Response(
        status=304, headers={"ETag": tag, "Cache-Control": CACHE_CONTROL, "Vary": "Accept-Encoding"}
    )


def _weights(accept_encoding: str) -> dict[str, float]:
    weights: dict[str, float] = {}
    for item in accept_encoding.lower().split(","):
        coding, _, params = item.partition(";")
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        weights[coding.strip()] = q
    return weights


def chosen_coding(accept_encoding: str) -> Coding | None:
    """The coding to answer with: brotli or gzip, the one the client weighs more (brotli on a tie),
    or None when it allows neither (``*`` stands for any not named; ``q=0`` is a no)."""
    weights = _weights(accept_encoding)
    star = weights.get("*", 0.0)
    br = weights.get("br", star)
    gz = weights.get("gzip", weights.get("x-gzip", star))
    if max(br, gz) <= 0:
        return None
    return "br" if br >= gz else "gzip"


def compress(body: bytes, coding: Coding = "gzip", *, fast: bool = False) -> bytes:
    """``body`` in ``coding``; ``fast``: the quickest setting (a large body compressed per change)."""
    if coding == "br":
        return bytes(brotli.compress(body, quality=1 if fast else BROTLI_QUALITY))
    return gzip.compress(body, compresslevel=1 if fast else GZIP_LEVEL, mtime=0)  # mtime 0: same bytes


def finish(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """Every answer on its way out: 304 for a tag the client holds; JSON compressed if it may be."""
    if not isinstance(response, web.Response) or response.status != 200:
        return response
    tag = response.headers.get("ETag")
    if tag is not None:
        response.headers.setdefault("Cache-Control", CACHE_CONTROL)
        if (unchanged := not_modified(request, tag)) is not None:
            return unchanged
    body = response.body
    if (
        isinstance(body, bytes)
        and len(body) >= MIN_COMPRESSED
        and response.content_type in JSON_TYPES
        and "Content-Encoding" not in response.headers
    ):
        vary = response.headers.get("Vary")
        response.headers["Vary"] = f"{vary}, Accept-Encoding" if vary else "Accept-Encoding"
        coding = chosen_coding(request.headers.get("Accept-Encoding", ""))
        if coding is not None:
            response.body = compress(body, coding)
            response.headers["Content-Encoding"] = coding
    return response
