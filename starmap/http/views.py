"""The wire shape of every star, like and user a client sees: REST answers and event data.

The one place these shapes are built. Views call these functions; the actors get
``WireViews`` (from the app's wiring) for the data of the events they publish, so a
``create`` event carries exactly what ``GET /stars/{id}`` answers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

import orjson
from yarl import URL

from ..idempotency import Recorded
from ..rules import rounding
from ..stars import Brightness, Star
from ..users import User

__all__ = ("WireViews", "like_json", "rounded", "star_json", "user_json")


rounded: Final = rounding(6)  # brightness as clients see it: round(value, 6), by scaling


def star_json(star: Star, model: Brightness, now: float, *, is_popular: bool) -> dict[str, Any]:
    """A star; its brightness as of ``now``, and ``base_brightness`` as of ``last_liked``.

    From the base, ``last_liked`` and /config.json a client computes the brightness at any
    time, so a representation revalidated with ``If-None-Match`` (304) stays exact.
    """
    return {
        "id": star.id,
        "x": star.x,
        "y": star.y,
        "message": star.message,
        "brightness": rounded(model.at(star.b0, star.t0, now)),
        "base_brightness": rounded(star.b0),
        "last_liked": star.last_liked,
        "likes": star.likes,
        "created_at": star.created_at,
        "user_id": star.user_id,
        "is_popular": is_popular,
    }


def like_json(star: Star, model: Brightness, now: float) -> dict[str, Any]:
    """The answer to a like: the star's new brightness and count."""
    return {
        "id": star.id,
        "brightness": rounded(model.at(star.b0, star.t0, now)),
        "base_brightness": rounded(star.b0),
        "last_liked": star.last_liked,
        "likes": star.likes,
    }


def user_json(user: User) -> dict[str, Any]:
    created = datetime.fromtimestamp(user.created_at, UTC).isoformat().replace("+00:00", "Z")
    return {"id": user.id, "name": user.name, "email": user.email, "created_at": created}


class WireViews:
    """``starmap.actors.wire.Views`` for the actors' events, with the app's brightness model."""

    def __init__(self, model: Brightness) -> None:
        self.model = model

    def star(self, star: Star, now: float, *, is_popular: bool) -> dict[str, Any]:
        return star_json(star, self.model, now, is_popular=is_popular)

    def user(self, user: User) -> dict[str, Any]:
        return user_json(user)

    # The answers recorded with a keyed write (``starmap.idempotency``): a pure function of
    # what was written, so the first answer and every replay are the same bytes.
    def star_created(self, star: Star) -> Recorded:
        body = self.star(star, star.created_at, is_popular=False)
        return Recorded(201, orjson.dumps(body), str(URL("/stars") / star.id))

    def liked(self, star: Star) -> Recorded:
        return Recorded(200, orjson.dumps(like_json(star, self.model, star.t0)))

    def user_created(self, user: User) -> Recorded:
        return Recorded(201, orjson.dumps(user_json(user)), str(URL("/users") / user.id))
