"""The popularity tracker: likes per star within a sliding window, in time buckets."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Any, Final

from ..mirror import Mirror
from .messages import Forget, Liked, PopularCounts
from .runtime import Actor

__all__ = ("PopularityTracker",)

KIND: Final = "popularity"
KEY: Final = "local"
BUCKETS: Final = 60


class PopularityTracker(Actor):
    """Counts in ``BUCKETS`` buckets per window; a star is popular at ``threshold`` likes."""

    kind = KIND

    def __init__(
        self,
        key: str,
        *,
        window: float,
        threshold: int,
        mirror: Mirror | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(key)
        self.mirror = mirror
        self.window = window
        self.threshold = threshold
        self.width = window / BUCKETS
        self.clock = clock
        self.counts: dict[str, collections.OrderedDict[int, int]] = {}
        # The published read model: popular stars → likes in the window, as of `popular_slot`.
        # Replaced whenever a star joins or leaves it, so readers outside this actor always
        # see a whole set (the list cache compares sets by identity); a member's count is
        # updated in place (a copy per like of a popular star cost O(popular stars)).
        self.popular: dict[str, int] = {}
        self.popular_slot = -1

    async def on_start(self) -> None:
        """Warm start from the mirror's buckets, so popularity survives restarts and new replicas."""
        if self.mirror is None:
            return
        newest = int(self.clock() // self.width)
        loaded = await self.mirror.load_popularity(range(newest - BUCKETS + 1, newest + 1))
        for slot, counts in sorted((loaded or {}).items()):
            for star_id, count in counts.items():
                self.counts.setdefault(star_id, collections.OrderedDict())[slot] = count

    async def receive(self, message: Any) -> Any:
        match message:
            case Liked(star_id, count, at):
                return self.count_likes(star_id, count, at)
            case PopularCounts():
                return self._recompute()
            case Forget(None):
                self.counts.clear()
                self._recompute()
                return None
            case Forget(str(star_id)):
                self.counts.pop(star_id, None)
                self._publish_one(star_id, 0, int(self.clock() // self.width))
                return None
        return await super().receive(message)

    def count_likes(self, star_id: str, count: int, at: float) -> bool:
        """Count likes of a star; whether it is popular now. Synchronous: this replica's like
        counters call it directly (it never waits, and the tracker lives in the same loop)."""
        buckets = self.counts.get(star_id)
        if buckets is None:  # not setdefault: it would make an OrderedDict for nothing per like
            buckets = self.counts[star_id] = collections.OrderedDict()
        width = self.width
        slot = int(at // width)
        buckets[slot] = buckets.get(slot, 0) + count
        now_slot = int(self.clock() // width)  # one reading of the clock for the whole count
        total = self._total(star_id, now_slot - BUCKETS + 1)
        if total >= self.threshold or star_id in self.popular:
            self._publish_one(star_id, total, now_slot)
        return total >= self.threshold

    def current(self) -> dict[str, int] | None:
        """The published popular stars if still current (same time bucket); None: ask."""
        return self.popular if int(self.clock() // self.width) == self.popular_slot else None

    def _recompute(self) -> dict[str, int]:
        now = self.clock()
        oldest = self._oldest(now)
        totals = {sid: self._total(sid, oldest) for sid in list(self.counts)}
        self.popular = {sid: n for sid, n in totals.items() if n >= self.threshold}
        self.popular_slot = int(now // self.width)
        return self.popular

    def _publish_one(self, star_id: str, total: int, now_slot: int) -> None:
        if self.popular_slot != now_slot:
            self._recompute()  # the window slid: everything may have changed
            return
        popular = self.popular
        if total >= self.threshold:
            if star_id in popular:  # the same members: a count, in place
                popular[star_id] = total
                return
            popular = {**popular, star_id: total}
        elif star_id in popular:
            popular = {sid: n for sid, n in popular.items() if sid != star_id}
        else:
            return
        self.popular = popular

    def _oldest(self, now: float) -> int:
        return int(now // self.width) - BUCKETS + 1

    def _total(self, star_id: str, oldest: int) -> int:
        """Likes within the window; drops buckets (and stars) that slid out."""
        buckets = self.counts[star_id]
        while buckets and next(iter(buckets)) < oldest:
            buckets.popitem(last=False)
        if not buckets:
            del self.counts[star_id]
            return 0
        return sum(buckets.values())

    def state(self) -> dict[str, Any]:
        return {"stars_tracked": len(self.counts), "window": self.window, "threshold": self.threshold}
