"""OpenAPI 3.1, generated from the route table and the wire schemas so it cannot drift.

Every handler carries a ``@doc(...)``; ``build`` walks the router and refuses a
route without one. Request bodies are the attrs wire schemas, turned into JSON
Schema from their fields and the constraints of their ``NewType``s.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar, Union, get_args, get_origin

import attrs
from aiohttp import web

from .. import rules
from . import schemas

__all__ = ("PROBLEM_SCHEMA", "Doc", "Param", "build", "doc")

H = TypeVar("H", bound=Callable[..., Any])

PROBLEM: Final = "application/problem+json"
PROBLEM_SCHEMA: Final = "Problem"
JSON: Final = "application/json"
ATTR: Final = "__openapi__"

# The constraints behind each NewType of the wire schemas: the very patterns and bounds
# the validators in starmap.rules run (tests/test_openapi_rules.py checks they agree).
TYPE_SCHEMAS: Final[Mapping[Any, dict[str, Any]]] = {
    schemas.Coordinate: {"type": "number", "minimum": -1, "maximum": 1},
    schemas.BrightnessValue: {"type": "number", "minimum": 0, "maximum": 100},
    schemas.Message: {
        "type": "string",
        "minLength": 1,
        "maxLength": rules.MAX_MESSAGE,
        "pattern": rules.MESSAGE_PATTERN,
    },
    schemas.EntityId: {"type": "string", "pattern": rules.ID_PATTERN},
    schemas.Name: {
        "type": "string",
        "minLength": rules.MIN_NAME,
        "maxLength": rules.MAX_NAME,
        "pattern": rules.NAME_PATTERN,
    },
    schemas.Email: {"type": "string", "maxLength": rules.MAX_EMAIL, "pattern": rules.EMAIL_PATTERN},
    str: {"type": "string"},
    float: {"type": "number"},
    int: {"type": "integer"},
    bool: {"type": "boolean"},
}


@attrs.frozen
class Param:
    name: str
    where: str  # "query", "path" or "header"
    schema: dict[str, Any]
    description: str = ""
    required: bool = False


@attrs.frozen
class Doc:
    summary: str
    tag: str
    responses: Mapping[int, tuple[str, str | None, str]]  # status → (description, schema, media type)
    body: type | None = None
    body_required: bool = True
    params: tuple[Param, ...] = ()


def doc(
    summary: str,
    *,
    tag: str,
    responses: Mapping[int, tuple[str, str | None, str] | str],
    body: type | None = None,
    body_required: bool = True,
    params: tuple[Param, ...] = (),
) -> Callable[[H], H]:
    """Describe a handler: ``responses`` maps a status to a schema name (JSON) or a full triple."""
    full = {
        status: (value if isinstance(value, tuple) else (_describe(status), value, _media(status, value)))
        for status, value in responses.items()
    }

    def mark(handler: H) -> H:
        setattr(handler, ATTR, Doc(summary, tag, full, body, body_required, params))
        return handler

    return mark


def _describe(status: int) -> str:
    from http import HTTPStatus

    return HTTPStatus(status).phrase


def _media(status: int, schema: str | None) -> str:
    return PROBLEM if status >= 400 or schema == "Problem" else JSON


def _type_schema(tp: Any) -> dict[str, Any]:
    if tp in TYPE_SCHEMAS:
        return dict(TYPE_SCHEMAS[tp])
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        members = [a for a in get_args(tp) if a is not type(None)]
        if len(members) == 1 and len(get_args(tp)) == 2:
            return {"anyOf": [_type_schema(members[0]), {"type": "null"}]}
    raise TypeError(f"no JSON Schema for {tp!r}: add it to TYPE_SCHEMAS")


# What /docs fills in for "try it out": valid bodies (a test checks each against its schema).
BODY_EXAMPLES: Final[Mapping[str, dict[str, Any]]] = {
    "StarIn": {"x": 0.25, "y": -0.5, "message": "Hello from the north", "brightness": 100},
    "UserIn": {"name": "Ada Lovelace", "email": "ada@example.org"},
    "LikeIn": {},
}


def body_schema(cls: type) -> dict[str, Any]:
    """JSON Schema of an attrs wire schema; unknown fields are allowed (and ignored)."""
    hints = typing.get_type_hints(cls)
    properties = {f.name: _type_schema(hints[f.name]) for f in attrs.fields(cls)}
    required = [f.name for f in attrs.fields(cls) if f.default is attrs.NOTHING]
    return {"type": "object", "properties": properties, "required": required}


def _star_schema() -> dict[str, Any]:
    number = {"type": "number"}
    return {
        "type": "object",
        "required": [
            "id",
            "x",
            "y",
            "message",
            "brightness",
            "base_brightness",
            "last_liked",
            "likes",
            "created_at",
            "user_id",
            "is_popular",
        ],
        "properties": {
            "id": {"type": "string"},
            "x": TYPE_SCHEMAS[schemas.Coordinate],
            "y": TYPE_SCHEMAS[schemas.Coordinate],
            "message": {"type": "string"},
            "brightness": {"type": "number", "minimum": 0, "maximum": 100},
            "base_brightness": {
                "type": "number",
                "minimum": 0,
                "maximum": 100,
                "description": "brightness as of last_liked: with /config.json, the brightness at any time",
            },
            "last_liked": number,
            "likes": {"type": "integer", "minimum": 0},
            "created_at": number,
            "user_id": {"type": ["string", "null"]},
            "is_popular": {"type": "boolean"},
        },
    }


def _object(required: list[str], **properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


STRING: Final = {"type": "string"}
COMPONENTS: Final[dict[str, dict[str, Any]]] = {
    "Star": _star_schema(),
    "StarList": {"type": "array", "items": {"$ref": "#/components/schemas/Star"}},
    "LikeResult": _object(
        ["id", "brightness", "base_brightness", "last_liked", "likes"],
        id=STRING,
        brightness={"type": "number"},
        base_brightness={"type": "number"},
        last_liked={"type": "number"},
        likes={"type": "integer"},
    ),
    "User": _object(
        ["id", "name", "email", "created_at"],
        id=STRING,
        name=STRING,
        email=STRING,
        created_at={"type": "string", "format": "date-time"},
    ),
    "UserList": {"type": "array", "items": {"$ref": "#/components/schemas/User"}},
    "Deleted": _object(["id", "status"], id=STRING, status={"const": "deleted"}),
    "Problem": {
        "type": "object",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": STRING,
            "title": STRING,
            "status": {"type": "integer"},
            "detail": STRING,
            "errors": {"type": "array", "items": _object(["field", "message"], field=STRING, message=STRING)},
        },
    },
    "Health": _object(
        ["status", "version", "environment", "timestamp"],
        status={"const": "healthy"},
        version=STRING,
        environment=STRING,
        timestamp=STRING,
    ),
    "Liveness": _object(["status", "timestamp"], status={"const": "alive"}, timestamp=STRING),
    "Readiness": _object(
        ["status", "services"],
        status={"enum": ["ready", "not_ready"]},
        services=_object(["storage", "redis"], storage=STRING, redis=STRING),
        timestamp=STRING,
    ),
    "AdminClear": _object(["message", "count"], message=STRING, count={"type": "integer"}),
    "AdminStatus": _object(
        ["admin_configured", "environment", "host"],
        admin_configured={"type": "boolean"},
        environment=STRING,
        host=STRING,
    ),
    "Any": {},
    "Changes": _object(
        ["last_event_id", "changes"],
        last_event_id={
            "type": ["string", "null"],
            "description": "resume from here: the next page's `since`, or `Last-Event-ID` for the stream",
        },
        changes={
            "type": "array",
            "items": _object(["topic", "type", "data"], topic=STRING, type=STRING, data={"type": "object"}),
            "description": "in order, each as the event stream sends it as data",
        },
    ),
    "Event": {
        "description": "text/event-stream: `id:` + one `data:` line per event; the data is JSON "
        '`{"topic", "type", "data"}` (type create, update, delete, clear or resync)',
        "type": "string",
    },
}


def build(app: web.Application, *, title: str, version: str) -> dict[str, Any]:
    """The OpenAPI document of every route of ``app``; a route without ``@doc`` is an error."""
    paths: dict[str, dict[str, Any]] = {}
    bodies: dict[str, type] = {}
    for route in app.router.routes():
        if route.method in ("HEAD", "OPTIONS", "*") or route.resource is None:
            continue
        path = route.resource.canonical
        if path.endswith("/") and path != "/":
            continue  # the trailing-slash twin of a documented path
        handler = route.handler
        info: Doc | None = getattr(handler, ATTR, None)
        if info is None:
            raise RuntimeError(f"{route.method} {path} has no @doc: document it in the OpenAPI")
        operation: dict[str, Any] = {
            "summary": info.summary,
            "tags": [info.tag],
            "operationId": f"{route.method.lower()}_{getattr(handler, '__name__', 'handler')}",
            "responses": {
                str(status): _response(description, schema, media)
                for status, (description, schema, media) in sorted(info.responses.items())
            },
        }
        params = [_param(p) for p in info.params]
        params += [_param(Param(n, "path", _path_schema(n), required=True)) for n in _path_names(path)]
        if params:
            operation["parameters"] = params
        if info.body is not None:
            bodies[info.body.__name__] = info.body
            operation["requestBody"] = {
                "required": info.body_required,
                "content": {JSON: _media_of(info.body.__name__)},
            }
        paths.setdefault(path, {})[route.method.lower()] = operation
    components = {**COMPONENTS, **{name: body_schema(cls) for name, cls in bodies.items()}}
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": "The Star Map HTTP contract."},
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": components},
    }


def _media_of(body: str) -> dict[str, Any]:
    """A request body's media type: its schema, and the example /docs fills in."""
    media: dict[str, Any] = {"schema": {"$ref": f"#/components/schemas/{body}"}}
    if body in BODY_EXAMPLES:
        media["example"] = BODY_EXAMPLES[body]
    return media


def _response(description: str, schema: str | None, media: str) -> dict[str, Any]:
    if schema is None:
        return {"description": description}
    return {
        "description": description,
        "content": {media: {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def _param(p: Param) -> dict[str, Any]:
    out: dict[str, Any] = {"name": p.name, "in": p.where, "required": p.required, "schema": p.schema}
    if p.description:
        out["description"] = p.description
    return out


def _path_names(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]


def _path_schema(name: str) -> dict[str, Any]:
    if name == "id":  # the reserved words are other routes' paths (/stars/popular), not bad ids
        return {"type": "string", "pattern": rules.ID_CHARS_PATTERN}
    return {"type": "string", "minLength": 1}
