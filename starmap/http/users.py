"""User views: parse and validate, ask the user registry, answer."""

from __future__ import annotations

from typing import Final, cast

from aiohttp import web
from yarl import URL

from ..actors.messages import CreateUser, DeleteUser, GetUser, ListUsers, UpdateUser, UserStarIds
from ..errors import ValidationFailed
from ..idempotency import Recorded
from ..keys import ACTORS
from ..users import RELATIONS, Relation
from .body import load_body
from .idempotent import IDEMPOTENCY_PARAM, held, idempotency_key, intent_of, recorded_response
from .jsonio import json_response
from .openapi import PROBLEM_SCHEMA as P
from .openapi import Param, doc
from .paging import link_next, parse_limit
from .representation import CONDITIONAL, IF_NONE_MATCH, body_tag
from .schemas import UserIn, check_id, converter
from .stars import BODY_ERRORS, CURSOR, LIMIT, UNAVAILABLE, tagged_stars
from .views import user_json

__all__ = ("create_user", "delete_user", "get_user", "list_users", "update_user", "user_stars")

NO_USER: Final = "no user {!r}"
RELATION: Final = Param("relation", "query", {"enum": ["placed", "liked"]}, "placed (default) or liked")


def _user_id(request: web.Request) -> str:
    try:
        return check_id(request.match_info["id"])
    except ValueError:
        raise web.HTTPNotFound(text=NO_USER.format(request.match_info["id"])) from None


@doc(
    "List users, oldest first",
    tag="users",
    params=(LIMIT, CURSOR, IF_NONE_MATCH),
    responses={200: "UserList", **CONDITIONAL, 422: P, **UNAVAILABLE},
)
async def list_users(request: web.Request) -> web.Response:
    limit, cursor = parse_limit(request)
    page = await request.app[ACTORS].users.ask(ListUsers(limit, cursor))
    answer = json_response([user_json(u) for u in page.users])
    link_next(request, answer, page.next_cursor)
    answer.headers["ETag"] = body_tag(answer.body)  # type: ignore[arg-type]  # bytes: json_response's
    return answer


@doc(
    "Create a user",
    tag="users",
    body=UserIn,
    params=(IDEMPOTENCY_PARAM,),
    responses={201: "User", 409: P, **BODY_ERRORS, **UNAVAILABLE},
)
async def create_user(request: web.Request) -> web.Response:
    key = idempotency_key(request)
    with held(request, key, "create-user"):
        body = await load_body(request, UserIn, converter)
        intent = intent_of(request, "create-user", key, "", converter.unstructure(body))
        user = await request.app[ACTORS].users.ask(CreateUser(body.name, body.email, intent))
    if isinstance(user, Recorded):
        return recorded_response(user)
    answer = json_response(user_json(user), status=201)
    answer.headers["Location"] = str(URL("/users") / user.id)
    return answer


@doc(
    "One user",
    tag="users",
    params=(IF_NONE_MATCH,),
    responses={200: "User", **CONDITIONAL, 404: P, **UNAVAILABLE},
)
async def get_user(request: web.Request) -> web.Response:
    user = await request.app[ACTORS].users.ask(GetUser(_user_id(request)))
    answer = json_response(user_json(user))
    answer.headers["ETag"] = body_tag(answer.body)  # type: ignore[arg-type]  # bytes: json_response's
    return answer


@doc(
    "Replace a user's name and e-mail",
    tag="users",
    body=UserIn,
    responses={200: "User", 404: P, 409: P, **BODY_ERRORS, **UNAVAILABLE},
)
async def update_user(request: web.Request) -> web.Response:
    user_id = _user_id(request)
    body = await load_body(request, UserIn, converter)
    user = await request.app[ACTORS].users.ask(UpdateUser(user_id, body.name, body.email))
    return json_response(user_json(user))


@doc("Delete a user (their stars stay)", tag="users", responses={200: "Deleted", 404: P, **UNAVAILABLE})
async def delete_user(request: web.Request) -> web.Response:
    user_id = await request.app[ACTORS].users.ask(DeleteUser(_user_id(request)))
    return json_response({"id": user_id, "status": "deleted"})


@doc(
    "The stars a user placed or liked, newest first",
    tag="users",
    params=(RELATION, IF_NONE_MATCH),
    responses={200: "StarList", **CONDITIONAL, 404: P, 422: P, **UNAVAILABLE},
)
async def user_stars(request: web.Request) -> web.Response:
    """The stars a user placed (``?relation=liked``: liked), newest first; deleted ones left out."""
    relation = request.query.get("relation", "placed")
    if relation not in RELATIONS:
        raise ValidationFailed({"relation": f"must be one of {', '.join(RELATIONS)}"})
    actors = request.app[ACTORS]
    ids = await actors.users.ask(UserStarIds(_user_id(request), cast(Relation, relation)))
    index = actors.stars()
    stars = [s for s in map(index.get, ids) if s is not None]
    return await tagged_stars(request, "user-stars", stars)
