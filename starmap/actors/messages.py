"""Messages: one frozen class per command an actor takes."""

from __future__ import annotations

import attrs

from ..stars import Star

__all__ = (
    "Acquire",
    "ActiveStars",
    "ClearAll",
    "CreateStar",
    "DeleteStar",
    "Forget",
    "GetStar",
    "Like",
    "Liked",
    "PopularCounts",
    "RateDecision",
    "ReadStored",
    "Reload",
    "StarChanged",
    "StarRemoved",
)


# -- star registry -------------------------------------------------------------


@attrs.frozen
class CreateStar:
    x: float
    y: float
    message: str
    brightness: float
    user_id: str | None
    id: str | None


@attrs.frozen
class GetStar:
    id: str


@attrs.frozen
class DeleteStar:
    id: str


@attrs.frozen
class ActiveStars:
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
class ClearAll:
    """Remove every star (admin): durably, batched per partition; the count removed."""


@attrs.frozen
class ReadStored:
    """The star as the table store holds it now (a point read, for debugging)."""

    id: str


@attrs.frozen
class Reload:
    """Rebuild the index from the table store (after events may have been missed)."""


# -- like counter --------------------------------------------------------------


@attrs.frozen
class Like:
    user_id: str | None = None


# -- popularity tracker ---------------------------------------------------------


@attrs.frozen
class Liked:
    star_id: str
    count: int
    at: float


@attrs.frozen
class PopularCounts:
    """Likes within the window of every star at or over the threshold."""


@attrs.frozen
class Forget:
    """Drop a star's counts (None: every star's)."""

    star_id: str | None


# -- rate limiter -----------------------------------------------------------------


@attrs.frozen
class Acquire:
    client: str


@attrs.frozen
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    reset: float
    retry_after: float
