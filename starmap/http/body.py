"""The one way a view reads a JSON body into a wire schema."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Final, TypeVar

import cattrs
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError
from cattrs.errors import AttributeValidationNote, ClassValidationError, IterableValidationNote
from cattrs.v import format_exception

from ..errors import ValidationFailed
from ..keys import SETTINGS
from ..rules import json_type

__all__ = ("field_errors", "load_body", "read_json_object", "structure")

T = TypeVar("T")
JSON: Final = "application/json"


async def read_json_object(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    """The body as a JSON object; 400 when it is not one (or absent, unless ``optional``).

    Every write says ``Content-Type: application/json`` (415 otherwise), even a like with
    no body: a cross-site form or a ``text/plain`` fetch, which a browser sends without
    asking first (no CORS preflight), can then write nothing.
    """
    if request.content_type != JSON:
        raise web.HTTPUnsupportedMediaType(
            text=f"send JSON with Content-Type: {JSON} (not {request.content_type})"
        )
    try:
        if request.content.is_eof():  # the whole body came with the headers (most do): no timer
            raw = await request.read()  # 413 past client_max_size, raised by aiohttp
        else:
            raw = await _read_within(request, request.app[SETTINGS].server.body_timeout)
    except RequestPayloadError:  # e.g. a body that is not what its Content-Encoding says
        raise web.HTTPBadRequest(text="the body could not be read as its headers describe it") from None
    if raw == b"{}":  # a plain like's whole body: nothing to decode
        return {}
    if not raw.strip():
        if optional:
            return {}
        raise web.HTTPBadRequest(text="the request needs a JSON object body")
    try:
        text = raw.decode("utf-8")  # strictly: UTF-16 or UTF-32 (json.loads would guess them) is refused
    except UnicodeDecodeError:
        raise web.HTTPBadRequest(text="the body must be UTF-8") from None
    if text.startswith("\ufeff"):
        raise web.HTTPBadRequest(text="the body must not start with a byte order mark")
    try:
        body = _DECODER.decode(text)
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"malformed JSON: {exc}") from None
    except RecursionError:
        raise web.HTTPBadRequest(text="malformed JSON: nested too deeply") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text=f"the body must be a JSON object, not {json_type(body)}")
    return body


async def _read_within(request: web.Request, within: float) -> bytes:
    """The rest of a body still on its way; 408 when it has not come within ``within`` s."""
    try:
        async with asyncio.timeout(within):  # a body that trickles in holds a connection no longer
            return await request.read()
    except TimeoutError:
        raise web.HTTPRequestTimeout(text=f"the body did not arrive within {within:g} s") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose keys are each given once: a second one would silently win."""
    body = dict(pairs)
    if len(body) != len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ValueError(f"the key {twice!r} is given more than once")
    return body


# One decoder for every body: json.loads with a hook builds a new one per call.
_DECODER: Final = json.JSONDecoder(object_pairs_hook=_unique_keys)


def field_errors(exc: BaseException, path: str = "") -> dict[str, str]:
    """Flatten a cattrs validation error into ``{"field": "message"}``."""
    if isinstance(exc, ClassValidationError | cattrs.IterableValidationError):
        found: dict[str, str] = {}
        for sub in exc.exceptions:
            name = path
            for note in getattr(sub, "__notes__", []):
                if isinstance(note, AttributeValidationNote):
                    name = f"{path}.{note.name}" if path else note.name
                elif isinstance(note, IterableValidationNote):
                    name = f"{path}[{note.index}]"
            found.update(field_errors(sub, name))
        return found
    message = str(exc) if isinstance(exc, ValueError) and str(exc) else format_exception(exc, None)
    return {path or "body": message}


def structure(body: dict[str, Any], schema: type[T], converter: cattrs.Converter) -> T:
    """Validate a JSON object into ``schema``; ``ValidationFailed`` (422) names each field."""
    try:
        return converter.structure(body, schema)
    except (ClassValidationError, cattrs.IterableValidationError) as exc:
        raise ValidationFailed(field_errors(exc)) from None


async def load_body(
    request: web.Request,
    schema: type[T],
    converter: cattrs.Converter,
    *,
    optional: bool = False,
    empty: T | None = None,
) -> T:
    """Read and validate a body: 400 if it is not a JSON object, 422 with field errors.

    With ``optional``, an empty body counts as ``{}``. ``empty``: what ``{}`` structures into,
    made once (a frozen schema's defaults), for a body most requests send empty (a like's).
    """
    body = await read_json_object(request, optional=optional)
    if not body and empty is not None:
        return empty
    return structure(body, schema, converter)
