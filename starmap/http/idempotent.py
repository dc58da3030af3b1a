"""The HTTP side of ``Idempotency-Key`` (see ``starmap.idempotency``): the header, the
in-flight guard, and the replayed answer. The record itself is the actors' business."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web

from ..idempotency import HEADER, KEY_RULE, REPLAYED_HEADER, Intent, Recorded, fingerprint, parse_key
from ..keys import KEYS_IN_FLIGHT, SETTINGS
from .jsonio import JSON
from .openapi import Param

__all__ = ("IDEMPOTENCY_PARAM", "held", "idempotency_key", "intent_of", "recorded_response")

IDEMPOTENCY_PARAM: Final = Param(
    HEADER,
    "header",
    {"type": "string", "minLength": 16, "maxLength": 257},
    "a unique key (a UUID) that makes a retry of this write safe: a repeat with the same key "
    "and request replays the first answer (with `Idempotent-Replayed: true`) and changes "
    f"nothing; the same key with another request is a 422, while the first is in flight a 409. "
    f"Keys are kept for `API_IDEMPOTENCY_TTL` (24 h by default). The key: {KEY_RULE}.",
)


def idempotency_key(request: web.Request) -> str | None:
    """The request's key, if it sent one; a 400 for a malformed one (before the body is read)."""
    try:
        return parse_key(request.headers.getall(HEADER, []))
    except ValueError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None


_NOT_HELD: Final = contextlib.nullcontext()  # reusable: most writes carry no key


def held(request: web.Request, key: str | None, *scope: str) -> contextlib.AbstractContextManager[None]:
    """Hold ``key`` (when there is one) for the whole answer: a duplicate meanwhile is a 409."""
    if key is None:
        return _NOT_HELD
    return request.app[KEYS_IN_FLIGHT].hold(*scope, key)


def intent_of(
    request: web.Request, operation: str, key: str | None, target: str, body: Mapping[str, Any]
) -> Intent | None:
    """What the actor needs to record (or replay) a keyed write; None without a key."""
    if key is None:
        return None
    ttl = request.app[SETTINGS].server.idempotency_ttl
    return Intent(operation, key, fingerprint(operation, target, body), ttl)


def recorded_response(recorded: Recorded, headers: Mapping[str, str] | None = None) -> web.Response:
    """The recorded answer, byte for byte; marked when it is a replay."""
    answer = web.Response(
        body=recorded.body, status=recorded.status, headers=headers, content_type=JSON, charset="utf-8"
    )
    if recorded.location is not None:
        answer.headers["Location"] = recorded.location
    if recorded.replayed:
        answer.headers[REPLAYED_HEADER] = "true"
    return answer
