"""The popularity tracker: likes per star within a sliding window, in time buckets."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Any, Final

from ..redis import Mirror
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
                buckets = self.counts.setdefault(star_id, collections.OrderedDict())
                slot = int(at // self.width)
                buckets[slot] = buckets.get(slot, 0) + count
                return self._total(star_id, self._oldest(self.clock())) >= self.threshold
            case PopularCounts():
                oldest = self._oldest(self.clock())
                totals = {sid: self._total(sid, oldest) for sid in list(self.counts)}
                return {sid: n for sid, n in totals.items() if n >= self.threshold}
            case Forget(None):
                self.counts.clear()
                return None
            case Forget(str(star_id)):
                self.counts.pop(star_id, None)
                return None
        return await super().receive(message)

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
