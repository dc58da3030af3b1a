"""The registry's in-memory index: id → star, a stable order, and a spatial grid.

Lists and viewports are answered from here, never by scanning storage.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import math
from collections.abc import Iterable, Iterator
from typing import Final

from .errors import ValidationFailed
from .stars import BBox, Star

__all__ = ("StarIndex", "decode_cursor", "encode_cursor")

GRID: Final = 32  # cells per axis over [-1, 1]

OrderKey = tuple[float, str]


def encode_cursor(key: OrderKey) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> OrderKey:
    try:
        created_at, star_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(star_id, str) or not isinstance(created_at, int | float):
            raise ValueError
        return float(created_at), star_id
    except (ValueError, TypeError, binascii.Error):
        raise ValidationFailed({"cursor": "not a cursor this service made"}) from None


def _cell(v: float) -> int:
    return min(GRID - 1, max(0, math.floor((v + 1.0) / 2.0 * GRID)))


class StarIndex:
    """Stars by id, ordered by (created_at, id), bucketed in a grid for viewports."""

    __slots__ = ("_by_id", "_grid", "_order")

    def __init__(self, stars: Iterable[Star] = ()) -> None:
        self._by_id: dict[str, Star] = {}
        self._order: list[OrderKey] = []
        self._grid: dict[tuple[int, int], set[str]] = {}
        for star in stars:
            self._by_id[star.id] = star
            self._grid.setdefault((_cell(star.x), _cell(star.y)), set()).add(star.id)
        self._order = sorted((s.created_at, s.id) for s in self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, star_id: object) -> bool:
        return star_id in self._by_id

    def __iter__(self) -> Iterator[Star]:
        return (self._by_id[sid] for _, sid in self._order)

    def get(self, star_id: str) -> Star | None:
        return self._by_id.get(star_id)

    def add(self, star: Star) -> None:
        if star.id in self._by_id:
            self.remove(star.id)
        self._by_id[star.id] = star
        bisect.insort(self._order, (star.created_at, star.id))
        self._grid.setdefault((_cell(star.x), _cell(star.y)), set()).add(star.id)

    def replace(self, star: Star) -> bool:
        """Swap in a newer state of a star already indexed (same place, same order)."""
        if star.id not in self._by_id:
            return False
        self._by_id[star.id] = star
        return True

    def remove(self, star_id: str) -> Star | None:
        star = self._by_id.pop(star_id, None)
        if star is not None:
            key = (star.created_at, star.id)
            i = bisect.bisect_left(self._order, key)
            if i < len(self._order) and self._order[i] == key:
                del self._order[i]
            self._grid[(_cell(star.x), _cell(star.y))].discard(star_id)
        return star

    def in_box(self, box: BBox) -> list[Star]:
        """The stars inside ``box`` in list order."""
        found = []
        for cx in range(_cell(box.x1), _cell(box.x2) + 1):
            for cy in range(_cell(box.y1), _cell(box.y2) + 1):
                for sid in self._grid.get((cx, cy), ()):
                    star = self._by_id[sid]
                    if box.contains(star.x, star.y):
                        found.append(star)
        found.sort(key=lambda s: (s.created_at, s.id))
        return found

    def page(
        self, *, limit: int | None = None, cursor: str | None = None, bbox: BBox | None = None
    ) -> tuple[list[Star], str | None]:
        """One page in (created_at, id) order after ``cursor``; the next cursor, if more remain."""
        after = decode_cursor(cursor) if cursor else None
        if bbox is not None:
            stars = self.in_box(bbox)
            start = 0 if after is None else bisect.bisect_right([(s.created_at, s.id) for s in stars], after)
            chosen = stars[start:] if limit is None else stars[start : start + limit]
            more = limit is not None and start + limit < len(stars)
        else:
            start = 0 if after is None else bisect.bisect_right(self._order, after)
            keys = self._order[start:] if limit is None else self._order[start : start + limit]
            chosen = [self._by_id[sid] for _, sid in keys]
            more = limit is not None and start + limit < len(self._order)
        next_cursor = encode_cursor((chosen[-1].created_at, chosen[-1].id)) if more and chosen else None
        return chosen, next_cursor
