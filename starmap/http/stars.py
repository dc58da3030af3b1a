"""Star views: parse and validate, ask an actor, answer. No storage here."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import attrs
import orjson
from aiohttp import web
from yarl import URL

from ..actors.messages import (
    PLAIN_LIKE,
    ActiveStars,
    CreateStar,
    DeleteStar,
    GetStar,
    Like,
    RateDecision,
)
from ..errors import ValidationFailed
from ..idempotency import Recorded
from ..index import StarIndex
from ..keys import ACTORS, BRIGHTNESS, HUB, LIST_CACHE, METRICS, SETTINGS
from ..stars import BBox, Star
from .body import load_body
from .clients import client_address
from .idempotent import IDEMPOTENCY_PARAM, held, idempotency_key, intent_of, recorded_response
from .jsonio import json_response
from .openapi import PROBLEM_SCHEMA as P
from .openapi import Param, doc
from .paging import MAX_LIMIT, link_next, parse_limit
from .problems import problem
from .representation import (
    CONDITIONAL,
    IF_NONE_MATCH,
    MIN_COMPRESSED,
    Coding,
    chosen_coding,
    compress,
    not_modified,
    one_star_tag,
    star_tag,
    weak_tag,
)
from .schemas import LikeIn, StarIn, check_id, converter
from .views import like_json, star_json

LIMIT: Final = Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000}, "page size")
CURSOR: Final = Param("cursor", "query", {"type": "string"}, "from the previous page's Link header")
BBOX: Final = Param(
    "bbox", "query", {"type": "string", "pattern": "^[^,]+,[^,]+,[^,]+,[^,]+$"}, "x1,y1,x2,y2: a viewport"
)
UNAVAILABLE: Final = {503: P}
BODY_ERRORS: Final = {400: P, 408: P, 413: P, 415: P, 422: P}

__all__ = (
    "BBOX",
    "active_stars",
    "create_star",
    "delete_star",
    "get_star",
    "get_stars_batch",
    "like_star",
    "list_stars",
    "parse_bbox",
    "popular_stars",
    "star_changes",
    "render_stars",
    "tagged_stars",
    "ListCache",
)

MAX_BATCH_IDS: Final = 100
NO_LIKE_BODY: Final = LikeIn()  # what a like's empty body structures into (frozen: shared)
LIST_CACHE_SECONDS: Final = 1.0
BIG_LIST: Final = 1 << 20  # bytes


def _star_id(request: web.Request) -> str:
    try:
        return check_id(request.match_info["id"])
    except ValueError:
        # No star can have an id outside the charset: it is simply not here.
        raise web.HTTPNotFound(text=f"no star {request.match_info['id']!r}") from None


def _as_json(
    request: web.Request, stars: Iterable[Star], popular: Mapping[str, int], now: float
) -> list[dict[str, Any]]:
    """Stars as their JSON objects: brightness at ``now``, ``is_popular`` from ``popular``."""
    model = request.app[BRIGHTNESS]
    return [star_json(s, model, now, is_popular=s.id in popular) for s in stars]


async def render_stars(request: web.Request, stars: list[Star]) -> list[dict[str, Any]]:
    """Stars as JSON, brightness at now and ``is_popular`` from the tracker."""
    return _as_json(request, stars, await request.app[ACTORS].popular(), time.time())


Piece = Callable[[Star, bool, float], bytes]


@attrs.define
class ListCache:
    """The whole list as bytes, and each star's JSON kept, so a change re-renders that star only.

    Brightness is rendered as of ``rendered_at``, at most ``LIST_CACHE_SECONDS`` ago; past
    that every star is rendered anew. Within it, a request after a change re-renders the
    stars whose state or popularity changed (a star is immutable: a changed one is a new
    object) and joins the kept pieces, so under a like storm a list costs a walk of the
    index and a join, not a rendering of every star. Each encoding (brotli, gzip) is made
    once per body, when first asked.
    """

    index: StarIndex | None = None
    version: int = -1
    shape: int = -1
    popular: dict[str, int] | None = None
    rendered_at: float = 0.0
    body: bytes = b""
    encoded: dict[str, bytes] = attrs.Factory(dict)
    pieces: dict[str, tuple[Star, bool, bytes]] = attrs.Factory(dict)
    parts: list[bytes] = attrs.Factory(list)  # the pieces in list order
    positions: dict[str, int] = attrs.Factory(dict)  # where each star's piece is in ``parts``
    rendered_stars: int = 0  # stars rendered so far (the rest of each body was kept pieces)

    def render(self, index: StarIndex, popular: dict[str, int], now: float, piece: Piece) -> bytes:
        """The list as of now: kept, patched with the stars that changed, or rendered anew."""
        expired = now - self.rendered_at >= LIST_CACHE_SECONDS
        if self.index is index and self.version == index.version and self.popular is popular and not expired:
            return self.body
        replaced = index.take_replaced()
        if self.index is not index or expired:
            self.pieces, self.rendered_at = {}, now
            self._walk(index, popular, piece)
        elif self.shape != index.shape:  # stars came or went: the order is walked again
            self._walk(index, popular, piece)
        else:  # only replaced stars (a like is one) and popularity flags: patched in place
            changed = replaced
            if self.popular is not popular and self.popular is not None:
                changed = changed | (self.popular.keys() ^ popular.keys())
            for star_id in changed:
                star, position = index.get(star_id), self.positions.get(star_id)
                if star is None or position is None:  # gone meanwhile: the walk settles it
                    self._walk(index, popular, piece)
                    break
                entry = self._render(star, star_id in popular, piece)
                self.pieces[star_id] = entry
                self.parts[position] = entry[2]
        self.body = b"[" + b",".join(self.parts) + b"]"
        self.index, self.version, self.shape, self.popular = index, index.version, index.shape, popular
        self.encoded = {}
        return self.body

    def _walk(self, index: StarIndex, popular: dict[str, int], piece: Piece) -> None:
        """Every star in list order: its kept piece while unchanged, rendered anew otherwise."""
        kept = self.pieces
        pieces: dict[str, tuple[Star, bool, bytes]] = {}
        parts: list[bytes] = []
        positions: dict[str, int] = {}
        for star in index:
            flag = star.id in popular
            entry = kept.get(star.id)
            if entry is None or entry[0] is not star or entry[1] is not flag:
                entry = self._render(star, flag, piece)
            pieces[star.id] = entry
            positions[star.id] = len(parts)
            parts.append(entry[2])
        self.pieces, self.parts, self.positions = pieces, parts, positions

    def _render(self, star: Star, is_popular: bool, piece: Piece) -> tuple[Star, bool, bytes]:
        """``star``'s piece as of this body's time, with what it was rendered from."""
        self.rendered_stars += 1
        return star, is_popular, piece(star, is_popular, self.rendered_at)

    def encode(self, coding: Coding) -> bytes:
        if coding not in self.encoded:  # a large list: the fastest setting (most of the gain, little time)
            self.encoded[coding] = compress(self.body, coding, fast=len(self.body) > BIG_LIST)
        return self.encoded[coding]


def parse_bbox(raw: str | None) -> BBox | None:
    if raw is None:
        return None
    try:
        x1, y1, x2, y2 = (float(p) for p in raw.split(","))
    except ValueError:
        raise ValidationFailed({"bbox": "must be four numbers: x1,y1,x2,y2"}) from None
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or x1 > x2 or y1 > y2:
        raise ValidationFailed({"bbox": "must be finite with x1 <= x2 and y1 <= y2"})
    return BBox(x1, y1, x2, y2)


@doc(
    "List stars, oldest first",
    tag="stars",
    params=(BBOX, LIMIT, CURSOR, IF_NONE_MATCH),
    responses={200: "StarList", **CONDITIONAL, 422: P, **UNAVAILABLE},
)
async def list_stars(request: web.Request) -> web.Response:
    limit, cursor = parse_limit(request)
    bbox = parse_bbox(request.query.get("bbox"))
    actors = request.app[ACTORS]
    index = actors.stars()
    if limit is None and bbox is None:  # the whole sky: the hot read of every map page
        cache, popular, now = request.app[LIST_CACHE], await actors.popular(), time.time()
        tag = weak_tag("stars", index.digest, len(index), sorted(popular))
        if (unchanged := not_modified(request, tag)) is not None:
            return unchanged
        model = request.app[BRIGHTNESS]

        def piece(star: Star, is_popular: bool, at: float) -> bytes:
            return orjson.dumps(star_json(star, model, at, is_popular=is_popular))

        body = cache.render(index, popular, now, piece)
        headers = {"ETag": tag, "Vary": "Accept-Encoding"}
        coding = chosen_coding(request.headers.get("Accept-Encoding", ""))
        if len(body) >= MIN_COMPRESSED and coding is not None:
            body, headers["Content-Encoding"] = cache.encode(coding), coding
        return web.Response(body=body, content_type="application/json", charset="utf-8", headers=headers)
    stars, next_cursor = index.page(limit=limit, cursor=cursor, bbox=bbox)
    answer = await tagged_stars(request, "stars", stars, next_cursor)
    link_next(request, answer, next_cursor)
    return answer


async def tagged_stars(
    request: web.Request, kind: str, stars: list[Star], *extra: object, popular: dict[str, int] | None = None
) -> web.Response:
    """Stars as JSON with their ETag; a 304 (nothing rendered) when the client holds it.

    ``popular``: the popular set the caller has read already (else it is read here)."""
    if popular is None:
        popular = await request.app[ACTORS].popular()
    tag = star_tag(kind, stars, popular, *extra)
    if (unchanged := not_modified(request, tag)) is not None:
        return unchanged
    answer = json_response(_as_json(request, stars, popular, time.time()))
    answer.headers["ETag"] = tag
    return answer


@doc(
    "Place a star",
    tag="stars",
    body=StarIn,
    params=(IDEMPOTENCY_PARAM,),
    responses={201: "Star", 404: P, 409: P, **BODY_ERRORS, **UNAVAILABLE},
)
async def create_star(request: web.Request) -> web.Response:
    key = idempotency_key(request)
    with held(request, key, "create-star"):
        body = await load_body(request, StarIn, converter)
        intent = intent_of(request, "create-star", key, "", converter.unstructure(body))
        command = CreateStar(
            x=body.x,
            y=body.y,
            message=body.message,
            brightness=body.brightness,
            user_id=body.user_id,
            id=body.id,
            intent=intent,
        )
        star = await request.app[ACTORS].registry.ask(command)
    if isinstance(star, Recorded):
        return recorded_response(star)
    [rendered] = await render_stars(request, [star])
    answer = json_response(rendered, status=201)
    answer.headers["Location"] = str(URL("/stars") / star.id)
    return answer


@doc(
    "One star",
    tag="stars",
    params=(IF_NONE_MATCH,),
    responses={200: "Star", **CONDITIONAL, 404: P, **UNAVAILABLE},
)
async def get_star(request: web.Request) -> web.Response:
    star_id = _star_id(request)
    actors = request.app[ACTORS]
    star = actors.stars().get(star_id)
    if star is None:  # not in this replica's index (yet): the registry's point read
        star = await actors.registry.ask(GetStar(star_id))
    popular = actors.popular_now()  # the hot path of reads: a plain read, nearly always
    if popular is None:
        popular = await actors.popular()
    tag = one_star_tag(star, popular)
    if (unchanged := not_modified(request, tag)) is not None:
        return unchanged
    rendered = star_json(star, request.app[BRIGHTNESS], time.time(), is_popular=star.id in popular)
    return json_response(rendered, headers={"ETag": tag})


@doc(
    "Stars by id, in the order asked (at most 100)",
    tag="stars",
    params=(IF_NONE_MATCH,),
    responses={200: "StarList", **CONDITIONAL, 422: P, **UNAVAILABLE},
)
async def get_stars_batch(request: web.Request) -> web.Response:
    ids = [i for i in request.match_info["ids"].split(",") if i]
    if len(ids) > MAX_BATCH_IDS:
        raise ValidationFailed({"ids": f"at most {MAX_BATCH_IDS} ids, not {len(ids)}"})
    index = request.app[ACTORS].stars()
    stars = [s for s in (index.get(i) for i in dict.fromkeys(ids)) if s is not None]
    return await tagged_stars(request, "stars", stars)


@doc("Delete a star", tag="stars", responses={200: "Deleted", 404: P, **UNAVAILABLE})
async def delete_star(request: web.Request) -> web.Response:
    star_id = await request.app[ACTORS].registry.ask(DeleteStar(_star_id(request)))
    return json_response({"id": star_id, "status": "deleted"})


def client_identity(request: web.Request) -> str:
    """The client behind any trusted proxies (see ``starmap.http.clients``)."""
    proxies = request.app[SETTINGS].server.trusted_proxies
    forwarded = request.headers.getall("X-Forwarded-For", ()) if proxies else ()  # read only behind ours
    return client_address(request.remote, forwarded, proxies)


def _rate_headers(decision: RateDecision) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": str(math.ceil(decision.reset)),
    }


@doc(
    "Like a star: it shines brighter",
    tag="stars",
    body=LikeIn,
    body_required=False,
    params=(IDEMPOTENCY_PARAM,),
    responses={200: "LikeResult", 404: P, 409: P, 429: P, **BODY_ERRORS, **UNAVAILABLE},
)
async def like_star(request: web.Request) -> web.Response:
    star_id = _star_id(request)
    key = idempotency_key(request)
    with held(request, key, "like", star_id):  # the whole answer in this one coroutine: the hot path
        body = await load_body(request, LikeIn, converter, optional=True, empty=NO_LIKE_BODY)
        # Most likes carry no key: their body is not unstructured again for nothing.
        intent = (
            intent_of(request, "like", key, star_id, converter.unstructure(body)) if key is not None else None
        )
        app = request.app  # a property a step away: read once
        actors = app[ACTORS]
        client = client_identity(request)
        decision = actors.decide_here(client)  # without Redis (the like's hot path): no await
        if decision is None:
            decision = await actors.acquire(client)
        headers = _rate_headers(decision)
        if not decision.allowed:
            app[METRICS].rate_limited.inc()
            headers["Retry-After"] = str(max(1, math.ceil(decision.retry_after)))
            period = app[SETTINGS].rate_limit.seconds
            detail = f"at most {decision.limit} likes per {period:g} s from one client; retry later"
            return problem(429, detail, headers=headers)
        like = PLAIN_LIKE if body.user_id is None and intent is None else Like(body.user_id, intent)
        star = await actors.like(star_id, like)
        if isinstance(star, Recorded):
            return recorded_response(star, headers)
        return json_response(like_json(star, app[BRIGHTNESS], time.time()), headers=headers)


SINCE: Final = Param(
    "since", "query", {"type": "string"}, "the id of the last event you have (from a stream or a page)", True
)


@doc(
    "Star events after an id, in order: catch up by REST, then go live by SSE",
    tag="events",
    params=(SINCE, LIMIT),
    responses={200: "Changes", 410: P, 422: P},
)
async def star_changes(request: web.Request) -> web.Response:
    """``{"last_event_id", "changes"}``: no gap, no duplicate, paged; 410 when that id is not kept."""
    since = request.query.get("since")
    if since is None:
        raise ValidationFailed({"since": "required: the id of the last event you have"})
    limit = parse_limit(request)[0] or MAX_LIMIT
    hub = request.app[HUB]
    found = hub.changes("stars", since, limit)
    if found is None:
        detail = (f"the events after {since!r} are not kept here (an unknown id, or older than the "
                  "replay buffer): fetch GET /stars again, then follow the event stream")  # fmt: skip
        return problem(410, detail)
    events, more = found
    last = events[-1].id if more else hub.last_id or since
    body = b'{"last_event_id":%s,"changes":[%s]}' % (
        orjson.dumps(last),
        b",".join(e.envelope for e in events),
    )
    answer = web.Response(body=body, content_type="application/json", charset="utf-8")
    link_next(request, answer, last if more else None, param="since", limit=limit)
    return answer


@doc(
    "Stars liked or created within the window, brightest first",
    tag="stars",
    params=(IF_NONE_MATCH,),
    responses={200: "StarList", **CONDITIONAL, **UNAVAILABLE},
)
async def active_stars(request: web.Request) -> web.Response:
    window = request.app[SETTINGS].redis.popularity_window
    stars = await request.app[ACTORS].registry.ask(ActiveStars(time.time() - window))
    return await tagged_stars(request, "active", stars)


@doc(
    "Popular stars, most liked first",
    tag="stars",
    params=(IF_NONE_MATCH,),
    responses={200: "StarList", **CONDITIONAL, **UNAVAILABLE},
)
async def popular_stars(request: web.Request) -> web.Response:
    actors = request.app[ACTORS]
    counts = await actors.popular()
    index = actors.stars()
    ranked = sorted(counts, key=lambda sid: counts[sid], reverse=True)
    stars = [s for s in map(index.get, ranked) if s is not None]
    return await tagged_stars(request, "popular", stars, [counts[s.id] for s in stars], popular=counts)
