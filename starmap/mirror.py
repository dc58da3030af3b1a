"""The Redis mirror of the stars: a hash per star, an index of ids, popularity buckets.

Written after each durable write, in the background (one queue, one writer), so a
slow or absent Redis never slows a request; read at start-up, so a new replica can
warm its index without scanning the table store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Final

from .batching import take_batch
from .redis import REDIS_ERRORS, RedisLink, drained
from .stars import Star, star_from_entity, star_to_entity

__all__ = ("Mirror",)

log = logging.getLogger(__name__)

MIRROR_BATCH: Final = 500  # mirror updates in one pipeline at most


class Mirror:
    """A copy of the stars in Redis (a hash each, and an index), and popularity buckets.

    Written after each durable write, in the background (a queue, one writer) so
    a slow or absent Redis never slows a request. Read at start-up so a new
    replica warms its index without scanning the table store, but only while a
    ``mirror:complete`` marker says it holds every star: a replica that loaded from
    the store writes everything and sets it; any lost write clears it.
    """

    QUEUE: Final = 10_000

    def __init__(self, link: RedisLink, *, bucket_seconds: float) -> None:
        self.link = link
        self.bucket_seconds = bucket_seconds
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._stale = False
        self.busy = False
        self.hits = 0
        self.misses = 0
        self.writes = 0
        self.skipped = 0

    def _star_key(self, star_id: str) -> str:
        return self.link.key(f"star:{star_id}")

    def _pop_key(self, slot: int) -> str:
        return self.link.key(f"pop:{slot}")

    def _offer(self, op: str, arg: Any) -> None:
        if not self.link.up or self._queue.qsize() >= self.QUEUE:
            # The mirror is now behind the store: it must not warm anyone until rebuilt.
            self.skipped += 1
            self._stale = True
            return
        self._queue.put_nowait((op, arg))

    def rebuild(self, stars: list[Star]) -> None:
        """Write every star (the index just loaded from the store), then mark the mirror complete."""
        self._stale = False
        for start in range(0, len(stars), 500):
            self._offer("save", stars[start : start + 500])
        self._offer("complete", None)

    def star_saved(self, star: Star) -> None:
        self._offer("save", star)

    def star_deleted(self, star_id: str) -> None:
        self._offer("delete", star_id)

    def liked(self, star_id: str, count: int, at: float) -> None:
        self._offer("like", (star_id, count, at))

    async def run(self) -> None:
        """The writer loop: batches what queued into one pipeline."""
        ttl, pop_ttl = self.link.settings.cache_ttl, self.link.settings.popularity_window * 2
        index, complete = self.link.key("stars"), self.link.key("mirror:complete")
        while True:
            batch, _ = take_batch(await self._queue.get(), self._queue.get_nowait, MIRROR_BATCH)
            pipe = self.link.client.pipeline(transaction=False)
            if self._stale:  # writes were lost: no replica may warm from this mirror now
                pipe.delete(complete)
            for op, arg in batch:
                if op == "save":
                    for star in arg if isinstance(arg, list) else [arg]:
                        key = self._star_key(star.id)
                        pipe.hset(key, mapping={k: str(v) for k, v in star_to_entity(star).items()})
                        pipe.expire(key, ttl)
                        pipe.zadd(index, {star.id: star.created_at})
                    pipe.expire(complete, ttl)
                elif op == "complete":
                    if not self._stale:
                        pipe.set(complete, "1", ex=ttl)
                elif op == "delete":
                    pipe.delete(self._star_key(arg))
                    pipe.zrem(index, arg)
                else:
                    star_id, count, at = arg
                    slot_key = self._pop_key(int(at // self.bucket_seconds))
                    pipe.zincrby(slot_key, count, star_id)
                    pipe.expire(slot_key, pop_ttl)
            self.busy = True
            try:
                await self.link.call(pipe.execute)
                self.writes += len(batch)
            except REDIS_ERRORS:
                self.skipped += len(batch)
                self._stale = True
            finally:
                self.busy = False

    async def drain(self, within: float) -> None:
        """At shutdown: let the writer finish what is queued; if it cannot, unmark the mirror."""
        if await drained(self._queue, lambda: self.busy, within):
            return
        self._stale = True
        with contextlib.suppress(*REDIS_ERRORS):
            await self.link.call(lambda: self.link.client.delete(self.link.key("mirror:complete")))

    async def load_stars(self) -> list[Star] | None:
        """Every star, if the mirror holds them all; None to fall back to the table store."""
        if not self.link.up:
            return None
        try:
            complete = await self.link.call(lambda: self.link.client.exists(self.link.key("mirror:complete")))
            ids = await self.link.call(lambda: self.link.client.zrange(self.link.key("stars"), 0, -1))
            if not complete or not ids:
                self.misses += 1
                return None
            stars: list[Star] = []
            for start in range(0, len(ids), 1000):
                pipe = self.link.client.pipeline(transaction=False)
                for raw_id in ids[start : start + 1000]:
                    pipe.hgetall(self._star_key(raw_id.decode()))
                for fields in await self.link.call(pipe.execute):
                    if not fields:  # expired: the mirror is partial
                        self.misses += 1
                        return None
                    stars.append(_star_from_hash(fields))
        except REDIS_ERRORS:
            return None
        self.hits += 1
        return stars

    async def load_popularity(self, slots: range) -> dict[int, dict[str, int]] | None:
        """Likes per star per time bucket, for the popularity tracker's warm start."""
        if not self.link.up:
            return None
        try:
            pipe = self.link.client.pipeline(transaction=False)
            for slot in slots:
                pipe.zrange(self._pop_key(slot), 0, -1, withscores=True)
            answers = await self.link.call(pipe.execute)
        except REDIS_ERRORS:
            return None
        return {
            slot: {member.decode(): int(score) for member, score in rows}
            for slot, rows in zip(slots, answers, strict=True)
            if rows
        }

    def stats(self) -> dict[str, Any]:
        return {
            "redis": self.link.describe(),
            "warmup_hits": self.hits,
            "warmup_misses": self.misses,
            "mirror_writes": self.writes,
            "mirror_skipped": self.skipped,
            "mirror_queue": self._queue.qsize(),
        }


_FLOATS: Final = ("x", "y", "b0", "t0", "created_at", "last_liked")


def _star_from_hash(fields: dict[bytes, bytes]) -> Star:
    entity: dict[str, Any] = {k.decode(): v.decode() for k, v in fields.items()}
    entity["likes"] = int(entity["likes"])
    for name in _FLOATS:
        entity[name] = float(entity[name])
    return star_from_entity(entity)
