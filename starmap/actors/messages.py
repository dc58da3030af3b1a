"""Every message an actor takes, one frozen class each, grouped by actor family.

A message that expects an answer subclasses ``Ask[R]``: ``ActorRef.ask`` returns an
``R``, so mypy checks every call site without a hand-written annotation. The others
are told (fire and forget).
"""

from __future__ import annotations

import asyncio
from typing import Any, Final, Generic, NamedTuple, TypeVar

import attrs

from ..idempotency import Intent, Recorded
from ..stars import Star
from ..users import Relation, User

__all__ = (
    "Acquire",
    "ActiveStars",
    "Ask",
    "CheckUser",
    "ClearAll",
    "CreateStar",
    "CreateUser",
    "DeleteStar",
    "DeleteUser",
    "Forget",
    "ForgetRelations",
    "ForgetStars",
    "GetStar",
    "GetUser",
    "Like",
    "Liked",
    "ListUsers",
    "PopularCounts",
    "RateDecision",
    "ReadStored",
    "Ready",
    "Relate",
    "Reload",
    "StarChanged",
    "StarRemoved",
    "UpdateUser",
    "UserChanged",
    "UserPage",
    "UserRemoved",
    "UserStarIds",
)

R = TypeVar("R", covariant=True)


class Ask(Generic[R]):
    """A message whose answer is an ``R`` (what ``ActorRef.ask`` returns for it)."""

    __slots__ = ()


# -- both registries -----------------------------------------------------------------


@attrs.frozen
class Reload(Ask[int]):
    """Rebuild the index from the table store (after events may have been missed); its size."""


@attrs.frozen
class Ready(Ask[int]):
    """Answered once the index is loaded (start-up waits for it); its size."""


# -- star registry -----------------------------------------------------------------


@attrs.frozen
class CreateStar(Ask[Star | Recorded]):
    """Place a star; with an ``intent`` (an Idempotency-Key) the answer is the recorded one."""

    x: float
    y: float
    message: str
    brightness: float
    user_id: str | None
    id: str | None
    intent: Intent | None = None


@attrs.frozen
class GetStar(Ask[Star]):
    id: str


@attrs.frozen
class DeleteStar(Ask[str]):
    """Delete a star; its id."""

    id: str


@attrs.frozen
class ActiveStars(Ask[list[Star]]):
    """Stars liked (or created) at or after ``since``, brightest first."""

    since: float


@attrs.frozen
class StarChanged:
    """A star's durable new state, for the registry's index (a tell).

    From this replica's like counter, or from any replica through the event
    stream (``upsert``: add it if the index lacks it).
    """

    star: Star
    upsert: bool = False


@attrs.frozen
class StarRemoved:
    """A star deleted (on any replica): drop it from the index."""

    id: str


@attrs.frozen
class ClearAll(Ask[asyncio.Future[int]]):
    """Remove every star (admin), durably, batched per partition.

    The answer is the running clear (a future of the count removed): it runs beside the
    registry's mailbox, so creates, likes and reads keep being served meanwhile. A clear
    asked while one runs joins it.
    """


@attrs.frozen
class ForgetStars(Ask[None]):
    """Stars a clear has deleted durably: out of the index, their counters and the mirror."""

    ids: tuple[str, ...]


@attrs.frozen
class ReadStored(Ask[dict[str, Any]]):
    """The star as the table store holds it now (a point read, for debugging)."""

    id: str


# -- like counter ------------------------------------------------------------------


@attrs.frozen
class Like(Ask[Star | Recorded]):
    """One like; the star as it is once the like is durable (with an ``intent``: the recorded answer)."""

    user_id: str | None = None
    intent: Intent | None = None


# The like that names no user and carries no key (nearly every like): one frozen message shared
# by all of them, not one made per like (~650 ns with its keywords).
PLAIN_LIKE: Final = Like()


# -- popularity tracker ------------------------------------------------------------


@attrs.frozen
class Liked(Ask[bool]):
    """Likes counted for a star; whether it is popular now (also told, from other replicas)."""

    star_id: str
    count: int
    at: float


@attrs.frozen
class PopularCounts(Ask[dict[str, int]]):
    """Likes within the window of every star at or over the threshold."""


@attrs.frozen
class Forget:
    """Drop a star's counts (None: every star's)."""

    star_id: str | None


# -- rate limiter ------------------------------------------------------------------


class RateDecision(NamedTuple):  # a tuple: made on every like, at half an attrs class's cost
    allowed: bool
    limit: int
    remaining: int
    reset: float
    retry_after: float


@attrs.frozen
class Acquire(Ask[RateDecision]):
    client: str


# -- user registry: users, their addresses, the user ↔ star relations ---------------


@attrs.frozen
class UserPage:
    users: list[User]
    next_cursor: str | None


@attrs.frozen
class CreateUser(Ask[User | Recorded]):
    """Make a user; with an ``intent`` (an Idempotency-Key) the answer is the recorded one."""

    name: str
    email: str
    intent: Intent | None = None


@attrs.frozen
class GetUser(Ask[User]):
    id: str


@attrs.frozen
class ListUsers(Ask[UserPage]):
    limit: int | None = None
    cursor: str | None = None


@attrs.frozen
class UpdateUser(Ask[User]):
    id: str
    name: str
    email: str


@attrs.frozen
class DeleteUser(Ask[str]):
    """Delete a user, its address claim and its relations; its id."""

    id: str


@attrs.frozen
class UserChanged:
    """A user created or changed on any replica (from the event stream)."""

    user: User


@attrs.frozen
class UserRemoved:
    id: str


@attrs.frozen
class UserStarIds(Ask[list[str]]):
    """The ids of the stars a user placed (or liked), newest first."""

    user_id: str
    relation: Relation


@attrs.frozen
class CheckUser(Ask[None]):
    """``NotFound`` unless the user exists (a point read: the store is the truth across replicas)."""

    id: str


@attrs.frozen
class Relate(Ask[None]):
    """Record that a user placed or liked a star (once the star or the like is durable)."""

    user_id: str
    relation: Relation
    star_id: str
    at: float


@attrs.frozen
class ForgetRelations(Ask[int]):
    """Every placed/liked row goes (no star they name exists any more: an admin clear)."""
