"""The registries' in-memory indexes: id → entity in a stable order, plus a grid for stars.

Lists and viewports are answered from here, never by scanning storage.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import functools
import heapq
import itertools
import json
import math
import operator
from collections.abc import Iterable, Iterator
from typing import Final, Generic, Protocol, TypeVar

from .errors import ValidationFailed
from .stars import BBox, Star

__all__ = ("OrderedIndex", "StarIndex", "decode_cursor", "encode_cursor")

GRID: Final = 32  # cells per axis over [-1, 1]
# A star's cell comes from a rounded sum: it may sit a few ulps outside the cell's edges.
# A cell counts as wholly inside a box only with this much room to spare.
SLACK: Final = 1e-9

OrderKey = tuple[float, str]
Page = tuple[list[OrderKey], str | None]


class Ordered(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def created_at(self) -> float: ...


T = TypeVar("T", bound=Ordered)


def encode_cursor(key: OrderKey) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> OrderKey:
    try:
        created_at, entity_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(entity_id, str) or not isinstance(created_at, int | float):
            raise ValueError
        return float(created_at), entity_id
    except (ValueError, TypeError, binascii.Error):
        raise ValidationFailed({"cursor": "not a cursor this service made"}) from None


def _key(item: Ordered) -> OrderKey:
    return item.created_at, item.id


def paginate(
    keys: list[OrderKey], limit: int | None, cursor: str | None
) -> tuple[list[OrderKey], str | None]:
    """The keys of one page of sorted ``keys`` after ``cursor``, and the next cursor."""
    start = 0 if cursor is None else bisect.bisect_right(keys, decode_cursor(cursor))
    end = len(keys) if limit is None else min(len(keys), start + limit)
    chosen = keys[start:end]
    return chosen, (encode_cursor(chosen[-1]) if end < len(keys) and chosen else None)


class OrderedIndex(Generic[T]):
    """Entities by id, ordered by (created_at, id): oldest first, a stable cursor."""

    __slots__ = ("_by_id", "_order", "version")

    def __init__(self, items: Iterable[T] = ()) -> None:
        self._by_id: dict[str, T] = {i.id: i for i in items}
        self._order: list[OrderKey] = self._keys(self._by_id.values())
        self._order.sort()
        self.version = 0  # moves on every change: what a cache of a rendering keys on

    def _keys(self, items: Iterable[T]) -> list[OrderKey]:
        """The order keys of ``items`` (unsorted): the one pass over them at construction."""
        return list(map(_key, items))

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, entity_id: object) -> bool:
        return entity_id in self._by_id

    def __iter__(self) -> Iterator[T]:
        return (self._by_id[eid] for _, eid in self._order)

    def get(self, entity_id: str) -> T | None:
        return self._by_id.get(entity_id)

    def add(self, item: T) -> None:
        if item.id in self._by_id:
            self.remove(item.id)
        self.version += 1
        self._by_id[item.id] = item
        bisect.insort(self._order, _key(item))

    def replace(self, item: T) -> bool:
        """Swap in a newer state of an entity already indexed (its order does not change)."""
        if item.id not in self._by_id:
            return False
        self.version += 1
        self._by_id[item.id] = item
        return True

    def remove(self, entity_id: str) -> T | None:
        item = self._by_id.pop(entity_id, None)
        if item is not None:
            self.version += 1
            key = _key(item)
            i = bisect.bisect_left(self._order, key)
            if i < len(self._order) and self._order[i] == key:
                del self._order[i]
        return item

    def page(self, *, limit: int | None = None, cursor: str | None = None) -> tuple[list[T], str | None]:
        """One page after ``cursor``; the next cursor while more remain."""
        return self._page(self._order, limit, cursor)

    def _page(
        self, keys: list[OrderKey], limit: int | None, cursor: str | None
    ) -> tuple[list[T], str | None]:
        chosen, next_cursor = paginate(keys, limit, cursor)
        return [self._by_id[eid] for _, eid in chosen], next_cursor


def _cell(v: float) -> int:
    cell = math.floor((v + 1.0) / 2.0 * GRID)
    return 0 if cell < 0 else (GRID - 1 if cell >= GRID else cell)  # min and max: 3x the time


def _edge(cell: int) -> float:
    """Where cell ``cell`` starts (and ``cell - 1`` ends), on either axis; the sky's edges clamp."""
    return -math.inf if cell <= 0 else (math.inf if cell >= GRID else cell * 2.0 / GRID - 1.0)


class StarIndex(OrderedIndex[Star]):
    """Stars, plus a grid of cells over [-1, 1]² so a viewport reads only its cells.

    ``digest`` is the XOR of every star's ``Star.digest``, kept as stars change: the
    same stars give the same digest on every replica, whatever order they came in. It is
    computed when first asked (a second of a million-star start-up), then kept.
    ``shape`` moves when stars come or go (the order changed); the ids of stars replaced
    since are kept for one reader, the whole-sky list (``take_replaced``).
    """

    __slots__ = ("_digest", "_grid", "_replaced", "shape")

    def __init__(self, stars: Iterable[Star] = ()) -> None:
        # Each cell's stars as their order keys, sorted: a viewport merges its cells' lists.
        self._grid: dict[tuple[int, int], list[OrderKey]] = {}
        super().__init__(stars)
        for keys in self._grid.values():
            keys.sort()
        self._replaced: set[str] = set()
        self.shape = 0
        self._digest: int | None = None

    def _keys(self, items: Iterable[Star]) -> list[OrderKey]:
        """The order keys, each filed in its cell in the same pass. A million stars' start-up: one
        pass in the order they were read (each star is where the last one was in memory, unlike
        in sorted order), one tuple per star shared by the order and the grid, small sorts."""
        grid, order = self._grid, []
        for star in items:
            key = (star.created_at, star.id)
            order.append(key)
            cell = (_cell(star.x), _cell(star.y))
            if (keys := grid.get(cell)) is None:
                keys = grid[cell] = []
            keys.append(key)
        return order

    def add(self, item: Star) -> None:
        super().add(item)
        bisect.insort(self._grid.setdefault((_cell(item.x), _cell(item.y)), []), _key(item))
        if self._digest is not None:
            self._digest ^= item.digest
        self.shape += 1

    def replace(self, item: Star) -> bool:
        # Index.replace's own two steps, here: every like replaces its star, and super() made a
        # proxy object and a second call for them.
        by_id = self._by_id
        old = by_id.get(item.id)
        if old is None:
            return False
        self.version += 1
        by_id[item.id] = item
        if self._digest is not None:
            self._digest ^= old.digest ^ item.digest
        self._replaced.add(item.id)
        return True

    def remove(self, entity_id: str) -> Star | None:
        star = super().remove(entity_id)
        if star is not None:
            keys, key = self._grid[(_cell(star.x), _cell(star.y))], _key(star)
            i = bisect.bisect_left(keys, key)
            if i < len(keys) and keys[i] == key:
                del keys[i]
            if self._digest is not None:
                self._digest ^= star.digest
            self.shape += 1
        return star

    @property
    def digest(self) -> int:
        if self._digest is None:
            self._digest = functools.reduce(operator.xor, (star.digest for star in self._by_id.values()), 0)
        return self._digest

    def take_replaced(self) -> set[str]:
        """The ids of the stars replaced since the last call (one reader: the whole-sky list)."""
        replaced, self._replaced = self._replaced, set()
        return replaced

    def in_box(self, box: BBox) -> list[Star]:
        """The stars inside ``box`` in list order."""
        return [self._by_id[sid] for _, sid in self._keys_in_box(box)]

    def _keys_in_box(
        self, box: BBox, after: OrderKey | None = None, count: int | None = None
    ) -> list[OrderKey]:
        """The first ``count`` (all: None) order keys after ``after`` of the stars inside ``box``.

        Each cell's keys are kept sorted, so this merges the cells' lists and stops after
        ``count``: a page of a crowded viewport looks at little more than the page. Cells
        wholly inside the box are merged as they are; those on its edges, star by star.
        """
        by_id, x1, y1, x2, y2 = self._by_id, box.x1, box.y1, box.x2, box.y2
        lists: list[Iterable[OrderKey]] = []
        for cx in range(_cell(x1), _cell(x2) + 1):
            inner_x = _edge(cx) - SLACK > x1 and _edge(cx + 1) + SLACK < x2
            for cy in range(_cell(y1), _cell(y2) + 1):
                keys = self._grid.get((cx, cy))
                if not keys:
                    continue
                start = 0 if after is None else bisect.bisect_right(keys, after)
                if inner_x and _edge(cy) - SLACK > y1 and _edge(cy + 1) + SLACK < y2:
                    lists.append(keys[start:])
                else:
                    lists.append(
                        k for k in keys[start:] if x1 <= by_id[k[1]].x <= x2 and y1 <= by_id[k[1]].y <= y2
                    )
        merged = heapq.merge(*lists)
        return list(merged if count is None else itertools.islice(merged, count))

    def page(
        self, *, limit: int | None = None, cursor: str | None = None, bbox: BBox | None = None
    ) -> tuple[list[Star], str | None]:
        if bbox is None:
            return super().page(limit=limit, cursor=cursor)
        after = None if cursor is None else decode_cursor(cursor)
        keys = self._keys_in_box(
            bbox, after, None if limit is None else limit + 1
        )  # one more: is there a next?
        chosen = keys if limit is None else keys[:limit]
        more = limit is not None and len(keys) > limit
        return [self._by_id[sid] for _, sid in chosen], (
            encode_cursor(chosen[-1]) if more and chosen else None
        )
