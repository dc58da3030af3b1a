"""The star: its state, the brightness model, and how it is kept in the table store."""

from __future__ import annotations

import hashlib
import math
import zlib
from typing import Any, Final

import attrs
import orjson

from .errors import NotFound
from .frozen import immutable
from .layout import LAYOUT, LAYOUT_PROPERTY, Census, RowKind, classify, read_row
from .settings import StarSettings
from .storage import STARS, Stored, TableStore

__all__ = (
    "STARS",
    "BBox",
    "Brightness",
    "Star",
    "StarPartitions",
    "bucket",
    "is_star_row",
    "read_star_row",
    "star_census",
    "star_from_entity",
    "star_to_entity",
    "stored_star",
)

BUCKETS: Final = 32
# Star partitions of a table that held no stars yet (see StarPartitions; measured in the
# Azure bench: 64 connections over 1,000 stars put several likes in one transaction).
STAR_PARTITIONS: Final = 8
MAX_BRIGHTNESS: Final = 100.0
# Recent like-batch ids kept on the entity: a retried write whose first attempt
# landed after all (a timeout) is recognised instead of counted twice.
RECENT_BATCHES: Final = 8


def _partition_of(entity_id: str, count: int) -> str:
    return f"b{zlib.crc32(entity_id.encode()) % count:02d}"


def bucket(entity_id: str) -> str:
    """The partition of an id: a few dozen hash buckets spread load and keep batches possible."""
    return _partition_of(entity_id, BUCKETS)


def _whole_count(_instance: object, _attribute: object, value: int) -> None:
    """1-100, and an int: a count read from a row or a file may be 8.0 or True."""
    if type(value) is not int or not 1 <= value <= 100:
        raise ValueError(f"count {value!r} is not a whole number 1-100")


@attrs.frozen
class StarPartitions:
    """How one table spreads its stars: ``count`` partitions, by a hash of the id.

    Likes of different stars in one partition can share one transaction, so fewer
    partitions mean fewer round trips per like. Tables that held stars before the count
    was recorded keep the 32 of ``bucket`` (moving rows under running replicas would
    lose their writes); each table's count is recorded once (``starmap.control``).
    """

    count: int = attrs.field(validator=_whole_count)

    def of(self, star_id: str) -> str:
        """The partition of a star's row (with 32: the same as ``bucket``)."""
        return _partition_of(star_id, self.count)

    def candidates(self, star_id: str) -> tuple[str, ...]:
        """Where a star's row may be: its partition, then its ``bucket``, where a replica
        from before the count was recorded (still running while a new one starts) puts it."""
        own, old = self.of(star_id), bucket(star_id)
        return (own,) if own == old else (own, old)


async def read_star_row(store: TableStore, partitions: StarPartitions, star_id: str) -> Stored:
    """A star's row wherever ``candidates`` says it may be; ``NotFound`` if in none."""
    for partition in partitions.candidates(star_id):
        try:
            return await store.get(STARS, partition, star_id)
        except NotFound:
            continue
    raise NotFound(f"no star {star_id!r}")


@attrs.frozen
class BBox:
    """A viewport: the stars with x1 ≤ x ≤ x2 and y1 ≤ y ≤ y2."""

    x1: float
    y1: float
    x2: float
    y2: float

    def contains(self, x: float, y: float) -> bool:
        return self.x1 <= x <= self.x2 and self.y1 <= y <= self.y2


@attrs.frozen
class Brightness:
    """``max(min, b0 * 2 ** (-(now - t0) / half_life))``; a like adds ``boost``, capped at 100."""

    half_life: float
    boost: float
    floor: float

    @classmethod
    def from_settings(cls, settings: StarSettings) -> Brightness:
        return cls(settings.brightness_half_life, settings.like_boost, settings.min_brightness)

    # Comparisons, not max() and min(): each builtin call parses its arguments as a tuple, and
    # every like computes a brightness three times (every star in a list rendered, once).
    def at(self, b0: float, t0: float, now: float) -> float:
        elapsed = now - t0
        value = b0 * math.pow(2.0, -elapsed / self.half_life) if elapsed > 0.0 else b0
        return value if value > self.floor else self.floor

    def liked(self, b0: float, t0: float, now: float, count: int = 1) -> float:
        """The new ``b0`` (at ``t0 = now``) after ``count`` likes at once."""
        value = self.at(b0, t0, now) + self.boost * count
        return value if value < MAX_BRIGHTNESS else MAX_BRIGHTNESS


@immutable
class Star:
    """One star as the service holds it; brightness is computed at read time. Immutable by
    contract (see ``starmap.frozen.immutable``): a changed star is a new object, which caches
    rely on."""

    id: str
    x: float
    y: float
    message: str
    b0: float
    t0: float
    likes: int
    created_at: float
    last_liked: float
    user_id: str | None = None
    batches: tuple[str, ...] = ()
    # ``digest``, once computed. Not a ``functools.cached_property``: on a slotted class attrs
    # gives that a ``__getattr__``, which makes every attribute of every star a slow lookup.
    _digest: int | None = attrs.field(default=None, init=False, repr=False, eq=False)

    def with_likes(self, model: Brightness, count: int, now: float, batch_id: str) -> Star:
        # The constructor itself: attrs.evolve reads every field by name first (every like pays it).
        return Star(
            self.id, self.x, self.y, self.message,
            model.liked(self.b0, self.t0, now, count), now,
            self.likes + count, self.created_at, now, self.user_id,
            (*self.batches, batch_id)[-RECENT_BATCHES:],
        )  # fmt: skip

    @property
    def digest(self) -> int:
        """64 bits that change exactly when what a client sees of the star changes, on any replica.

        The state, not a rendering: brightness now is computed from ``b0`` and ``t0``, so the
        digest stays put while the star fades (a weak validator's promise). Kept once computed:
        a star is immutable, and every conditional read of it asks again.
        """
        digest = self._digest
        if digest is None:
            state = (self.id, self.x, self.y, self.message, self.b0, self.t0, self.likes, self.created_at,
                     self.last_liked, self.user_id)  # fmt: skip
            digest = int.from_bytes(hashlib.blake2b(orjson.dumps(state), digest_size=8).digest(), "big")
            object.__setattr__(self, "_digest", digest)  # the one field set after __init__
        return digest


def star_to_entity(star: Star, partition: str | None = None) -> dict[str, Any]:
    """The star's row at ``partition``; without one, its fields only (for a mirror or an event:
    the table store refuses a row without a PartitionKey)."""
    entity: dict[str, Any] = {
        "RowKey": star.id,
        "x": float(star.x),
        "y": float(star.y),
        "message": star.message,
        "b0": float(star.b0),
        "t0": float(star.t0),
        "likes": star.likes,
        "created_at": float(star.created_at),
        "last_liked": float(star.last_liked),
        "batches": ",".join(star.batches),
        LAYOUT_PROPERTY: LAYOUT,
    }
    if star.user_id is not None:
        entity["user_id"] = star.user_id
    if partition is not None:
        entity["PartitionKey"] = partition
    return entity


def star_from_entity(entity: dict[str, Any]) -> Star:
    batches = str(entity.get("batches") or "")
    return Star(  # in field order, by position: a quarter faster, and start-up makes every star here
        str(entity["RowKey"]),
        float(entity["x"]),
        float(entity["y"]),
        str(entity["message"]),
        float(entity["b0"]),
        float(entity["t0"]),
        int(entity["likes"]),
        float(entity["created_at"]),
        float(entity["last_liked"]),
        entity.get("user_id") or None,
        tuple(batches.split(",")) if batches else (),
    )


# What every star row this service wrote has, marker or not.
STAR_FIELDS: Final = ("x", "y", "message", "b0", "t0", "likes", "created_at", "last_liked")


def star_census() -> Census[Star]:
    """Reads ``Stars`` rows at load: this service's become stars, the others are counted."""
    return Census(STARS, partition=bucket, required=STAR_FIELDS, parse=star_from_entity)


def is_star_row(entity: dict[str, Any]) -> bool:
    """Whether this service wrote the row (readable or not): what an admin clear may delete."""
    partition = bucket(str(entity.get("RowKey", "")))
    return classify(entity, partition=partition, required=STAR_FIELDS) is RowKind.CURRENT


def stored_star(entity: dict[str, Any]) -> Star | None:
    """A row read at a star's key, as a star; None unless this service wrote it and can read it."""
    partition = bucket(str(entity.get("RowKey", "")))
    return read_row(entity, partition=partition, required=STAR_FIELDS, parse=star_from_entity)
