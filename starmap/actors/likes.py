"""The like counter: one actor per star, group commit of likes.

Likes that wait in the mailbox together (they arrive while the previous write is
in flight) become one batch and one conditional write; every like of the batch
is answered only after that write succeeded, so a 200 means durable. Each write
carries a batch id kept on the entity, so a retry after a write whose outcome was
unknown (a timeout) recognises it landed instead of counting it twice. A like with an
Idempotency-Key has its answer recorded in the same batch (``starmap.idempotency``),
so a client's own retry, even to another process, is recognised the same way.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

from ..backoff import Backoff
from ..errors import (
    ActorStopped,
    AlreadyExists,
    IdempotencyKeyInFlight,
    NotFound,
    Overloaded,
    PreconditionFailed,
    StorageUnavailable,
)
from ..events import Publisher
from ..idempotency import Intent, Recorded, find_recorded, record_op
from ..mirror import Mirror
from ..stars import STARS, Brightness, Star, StarPartitions, read_star_row, star_to_entity, stored_star
from ..storage import MAX_BATCH, Op, TableStore
from .messages import CheckUser, Like, Relate
from .runtime import Actor, ActorRef, each_outcome
from .wire import Views

__all__ = ("LikeCounter",)

log = logging.getLogger(__name__)

KIND: Final = "likes"
# Batch ids: this process (random, so replicas and restarts differ) and one counter for
# the process, so an id never repeats on any star's list of recent batches.
_ORIGIN: Final = uuid.uuid4().hex[:8]
_BATCHES: Final = itertools.count(1)
MAX_CONFLICTS: Final = 20
# Keyed likes in one commit: the star's update and one record each fit one batch (100).
MAX_KEYED: Final = MAX_BATCH - 1
# Commits of a batch whose keyed likes keep meeting records other replicas wrote meanwhile.
MAX_RECORD_RACES: Final = 5
# 5-50 ms after the first conflict, up to 40-400 ms: writers that collided spread out.
CONFLICT_RETRY: Final = Backoff(base=0.0275, cap=0.22, jitter=0.8)


def _groups(items: list[int], keyed: Callable[[int], bool]) -> list[list[int]]:
    """``items`` in order, cut so that no group holds more than ``MAX_KEYED`` keyed likes: each
    keyed like adds a record to its group's batch, and a batch holds at most 100 operations."""
    groups: list[list[int]] = [[]]
    in_group = 0
    for item in items:
        if keyed(item):
            if in_group == MAX_KEYED:
                groups.append([])
                in_group = 0
            in_group += 1
        groups[-1].append(item)
    return [group for group in groups if group]


class LikeCounter(Actor):
    """Owns one star's likes and brightness between activation and passivation."""

    kind = KIND
    batchable = (Like,)

    def __init__(
        self,
        key: str,
        *,
        store: TableStore,
        partitions: StarPartitions,
        publisher: Publisher,
        brightness: Brightness,
        views: Views,
        star_saved: Callable[[Star], None],
        count_likes: Callable[[str, int, float], bool],
        users: ActorRef,
        write_deadline: float,
        idle_timeout: float,
        mirror: Mirror | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(key)
        self.mirror = mirror
        self.store = store
        self.partitions = partitions
        self.partition = partitions.of(key)  # of the star's row and its like records: where it was read
        self.publisher = publisher
        self.brightness = brightness
        self.views = views
        # The registry's index: its own method, a plain call (see StarRegistry.saved).
        self.star_saved = star_saved
        # The popularity tracker's own count (a plain call: it lives in this loop, never waits).
        self.count_likes = count_likes
        self.users = users
        self.write_deadline = write_deadline
        self.idle_timeout = idle_timeout  # type: ignore[misc]  # per instance, from settings
        self.clock = clock
        self.star: Star | None = None
        self.etag = ""
        self.in_flight = 0
        self.known_users: set[str] = set()

    async def on_start(self) -> None:
        await self._reload()

    async def _reload(self) -> None:
        stored = await read_star_row(self.store, self.partitions, self.key)
        self.partition = stored.partition_key
        star = stored_star(stored.entity)
        if star is None:  # a row this service cannot read: not a star it can like
            raise NotFound(f"no star {self.key!r}")
        self.star, self.etag = star, stored.etag

    async def receive_batch(self, messages: Sequence[Any]) -> list[Any]:
        for like in messages:
            if like.intent is not None or like.user_id is not None:
                return await self._receive_mixed(messages)
        # Most likes name no user and carry no key: one commit, its star the answer to each.
        try:
            star = await self._commit(messages, ())
        except Exception as exc:
            return [exc] * len(messages)
        return [star] * len(messages)

    async def _receive_mixed(self, messages: Sequence[Any]) -> list[Any]:
        """Likes some of which name a user (checked first) or carry a key (recorded with them)."""
        results: list[Any] = [None] * len(messages)
        counted: list[int] = []
        keys: set[str] = set()
        for i, like in enumerate(messages):
            try:
                if like.intent is not None:
                    row_key = like.intent.row_key(self.key)
                    if row_key in keys:  # the same key twice in one batch: the second waits its turn
                        raise IdempotencyKeyInFlight("a like with this Idempotency-Key is being answered")
                    keys.add(row_key)
                if like.user_id is not None:
                    await self._check_liker(like.user_id)
                counted.append(i)
            except Exception as exc:  # each like its own answer: 404 for an unknown user
                results[i] = exc
        # Without a key among them: one group, without cutting it up.
        groups = _groups(counted, lambda i: messages[i].intent is not None) if keys else [counted]
        for group in groups:
            await self._commit_group(messages, group, results)
        return results

    async def _commit_group(self, messages: Sequence[Any], counted: list[int], results: list[Any]) -> None:
        """Commit the likes ``counted`` (indexes into ``messages``) at once; answers in ``results``."""
        for _attempt in range(MAX_RECORD_RACES):
            if not counted:
                return
            try:
                likes = [messages[i] for i in counted]
                star = await self._commit(likes, [like.intent for like in likes if like.intent is not None])
            except AlreadyExists:
                # A key of this batch is recorded already: a retry of a like committed before
                # (here or on another replica). Its record answers it (a replay, or a 422 for
                # another request); the others are committed again. Optimistic on purpose: a
                # first attempt, the common case, costs no read.
                counted = [i for i in counted if not await self._settled(messages[i], i, results)]
                continue
            except Exception as exc:
                for i in counted:
                    results[i] = exc
                return
            likers = [u for i in counted if (u := messages[i].user_id) is not None]
            if likers:  # most likes name no user: nothing to record, nothing to wait for
                await self._relate(likers, star.last_liked)
            # The keyed likes' answer: one rendering for all of them (it is the same bytes).
            keyed = any(messages[i].intent is not None for i in counted)
            liked = self.views.liked(star) if keyed else None
            for i in counted:
                results[i] = star if messages[i].intent is None else liked
            return
        for i in counted:
            results[i] = StorageUnavailable(f"star {self.key!r}: too many concurrent keyed likes")

    async def _recorded(self, intent: Intent) -> Recorded | None:
        """The recorded answer to a like with this key, if it was committed before."""
        return await find_recorded(self.store, STARS, self.partition, self.key, intent, self.clock())

    async def _settled(self, like: Like, i: int, results: list[Any]) -> bool:
        """Whether a keyed like has its answer now (recorded elsewhere); it goes in ``results``."""
        if like.intent is None:
            return False
        try:
            results[i] = await self._recorded(like.intent)
        except Exception as exc:  # the key was used for another request: 422
            results[i] = exc
        return results[i] is not None

    async def _check_liker(self, user_id: str) -> None:
        """An unknown user's like is refused (404) before anything is counted."""
        if user_id not in self.known_users:
            await self.users.ask(CheckUser(user_id))
            self.known_users.add(user_id)

    async def _relate(self, user_ids: list[str], at: float) -> None:
        """Once the likes are durable: the user registry records who liked this star.

        The likes are committed whatever happens here: a relation that cannot be
        recorded is logged, never turned into an error for the like.
        """
        likers = list(dict.fromkeys(user_ids))
        outcomes = await each_outcome(*(self.users.ask(Relate(u, "liked", self.key, at)) for u in likers))
        for user_id, outcome in zip(likers, outcomes, strict=True):
            if isinstance(outcome, Exception):
                log.warning(
                    "star %s: liked by %s, but the relation was not recorded: %s", self.key, user_id, outcome
                )

    async def _commit(self, likes: Sequence[Like], intents: Sequence[Intent]) -> Star:
        """One durable write for ``likes``; the new state. Nothing changes on failure.

        ``intents``: the keys the likes carry (the caller knows them: a batch of plain likes
        has none). Their answers are recorded in the same atomic batch; ``AlreadyExists``
        when one of those records is there already.
        """
        count = len(likes)
        batch_id = f"{_ORIGIN}{next(_BATCHES):x}"
        deadline = time.monotonic() + self.write_deadline
        self.in_flight = count
        conflicts = 0
        delays = None  # made at the first retry: most commits never need one
        try:
            while True:
                assert self.star is not None
                if batch_id in self.star.batches:  # an earlier attempt landed after all
                    new = self.star
                    break
                new = self.star.with_likes(self.brightness, count, self.clock(), batch_id)
                try:
                    self.etag = await self._write(new, intents)
                    self.star = new
                    break
                except PreconditionFailed:
                    conflicts += 1  # another writer (a replica): re-read, re-apply
                    if conflicts > MAX_CONFLICTS:
                        raise StorageUnavailable(f"star {self.key!r}: too many concurrent writers") from None
                except StorageUnavailable:
                    if time.monotonic() >= deadline:
                        raise
                delays = delays or CONFLICT_RETRY.delays()
                await asyncio.sleep(next(delays))
                await self._reload_within(deadline)
        except NotFound:
            raise NotFound(f"no star {self.key!r}") from None  # deleted meanwhile
        finally:
            self.in_flight = 0
        self._announce(new, count)
        return new

    def _write(self, new: Star, intents: Sequence[Intent]) -> Awaitable[str]:
        """The star's new state, with the records of its keyed likes; the star's new ETag, to await.

        A plain like's write is the store's own awaitable: no coroutine layer of this one's."""
        if not intents:
            return self.store.update(STARS, star_to_entity(new, self.partition), self.etag)
        return self._write_recorded(new, intents)

    async def _write_recorded(self, new: Star, intents: Sequence[Intent]) -> str:
        answer = self.views.liked(new)
        records = [record_op(self.partition, self.key, i, answer, new.last_liked) for i in intents]
        etag = (
            await self.store.batch(
                STARS, [Op("update", star_to_entity(new, self.partition), self.etag), *records]
            )
        )[0]
        assert etag is not None
        return etag

    async def _reload_within(self, deadline: float) -> None:
        while True:
            try:
                await self._reload()
                return
            except StorageUnavailable:
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(0.1)

    def _announce(self, star: Star, count: int) -> None:
        """After a durable write: the index, popularity, and one conflated update event.

        The likes are committed by now, so nothing here may turn them into a 503: a busy
        registry or tracker costs a stale read model for a moment, not the answer.
        """
        try:
            self.star_saved(star)
        except (Overloaded, ActorStopped) as exc:
            log.warning("star %s: likes committed, the registry not told: %s", star.id, exc)
        popular = self.count_likes(star.id, count, star.last_liked)
        if self.mirror is not None:
            self.mirror.star_saved(star)
            self.mirror.liked(star.id, count, star.last_liked)
        data = self.views.star(star, self.clock(), is_popular=popular)
        # What other replicas apply; alone, nobody reads it (a row built for nothing per like).
        meta = {"entity": star_to_entity(star), "likes_delta": count} if self.publisher.relaying else None
        self.publisher.publish("stars", "update", data, meta)

    def state(self) -> dict[str, Any]:
        star = self.star
        return {
            "likes": star.likes if star else None,
            "pending": self.in_flight,
            "brightness": self.brightness.at(star.b0, star.t0, self.clock()) if star else None,
            "etag": self.etag,
            "recent_batches": list(star.batches) if star else [],
        }
