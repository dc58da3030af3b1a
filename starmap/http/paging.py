"""``?limit=N&cursor=…`` paging and its ``Link: <…>; rel="next"`` header, for every list."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from ..errors import ValidationFailed

__all__ = ("MAX_LIMIT", "link_next", "parse_limit")

MAX_LIMIT: Final = 1000


def parse_limit(request: web.Request) -> tuple[int | None, str | None]:
    """``(limit, cursor)`` from the query; 422 for a limit outside 1..1000 or a lone cursor."""
    raw, cursor = request.query.get("limit"), request.query.get("cursor")
    if raw is None:
        if cursor is not None:
            raise ValidationFailed({"cursor": "goes with limit"})
        return None, None
    # ASCII digits only: int() would also read "٣" (and str.isdigit() passes "²", which it refuses).
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise ValidationFailed({"limit": f"must be an integer from 1 to {MAX_LIMIT}"})
    return int(raw), cursor


def link_next(
    request: web.Request,
    answer: web.StreamResponse,
    next_cursor: str | None,
    *,
    param: str = "cursor",
    **also: str | int,
) -> None:
    """Point at the next page while more remain: this URL with ``param`` set to ``next_cursor``
    (and the ``also`` parameters)."""
    if next_cursor is not None:
        next_url = request.rel_url.update_query({param: next_cursor, **also})
        answer.headers["Link"] = f'<{next_url}>; rel="next"'
