"""What the actors need from the HTTP layer: the wire shape of what they publish.

An event's ``data`` is the same JSON object a client gets from the REST API (a map
applies a ``create`` event as it would a ``GET /stars/{id}``), so the one place that
shapes it is ``starmap.http.views``; the app hands it to the actors as a ``Views``.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..idempotency import Recorded
from ..stars import Star
from ..users import User

__all__ = ("Views",)


class Views(Protocol):
    def star(self, star: Star, now: float, *, is_popular: bool) -> dict[str, Any]:
        """A star as clients see it, its brightness at ``now``."""

    def user(self, user: User) -> dict[str, Any]:
        """A user as clients see it."""

    def star_created(self, star: Star) -> Recorded:
        """The answer to the create that made ``star`` (brightness as of its creation)."""

    def liked(self, star: Star) -> Recorded:
        """The answer to the likes that made ``star`` (brightness as of them)."""

    def user_created(self, user: User) -> Recorded:
        """The answer to the create that made ``user``."""
