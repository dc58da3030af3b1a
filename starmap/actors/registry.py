"""The star registry: creates, finds, lists and deletes stars; owns the index."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from ..errors import AlreadyExists, NotFound
from ..events import Publisher
from ..idempotency import IDS, Recorded, find_recorded, insert_recorded, record_op
from ..index import StarIndex
from ..layout import Census
from ..mirror import Mirror
from ..progress import Progress
from ..stars import (
    STARS,
    Brightness,
    Star,
    StarPartitions,
    is_star_row,
    read_star_row,
    star_census,
    star_to_entity,
    stored_star,
)
from ..storage import Op, TableStore, delete_rows, iter_entities, iter_pages
from .messages import (
    ActiveStars,
    CheckUser,
    ClearAll,
    CreateStar,
    DeleteStar,
    ForgetRelations,
    ForgetStars,
    GetStar,
    ReadStored,
    Ready,
    Relate,
    Reload,
    StarChanged,
    StarRemoved,
)
from .runtime import Actor, ActorRef, each_outcome
from .wire import Views

__all__ = ("StarRegistry",)

log = logging.getLogger(__name__)

KIND: Final = "stars"
KEY: Final = "registry"


class StarRegistry(Actor):
    """One per process. Loads every star at start-up, page by page, into the index.

    Creates that queue up together are written concurrently (they share the store's
    group commit) and then indexed and announced in the order they were asked.
    """

    kind = KIND
    batchable = (StarChanged, CreateStar)

    def __init__(
        self,
        key: str,
        *,
        store: TableStore,
        partitions: StarPartitions,
        publisher: Publisher,
        brightness: Brightness,
        views: Views,
        users: ActorRef,
        on_delete: Callable[[str], None],
        mirror: Mirror | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(key)
        self.mirror = mirror
        self.store = store
        self.partitions = partitions
        self.publisher = publisher
        self.views = views
        self.users = users  # the user registry: it owns users and their relations
        self.brightness = brightness
        self.on_delete = on_delete
        self.clock = clock
        self.index = StarIndex()
        self.census: Census[Star] = star_census()
        self.me: ActorRef | None = None  # its own ref, for the clear that runs beside the mailbox
        self._clearing: asyncio.Future[int] | None = None
        self._loading = False  # the index is being rebuilt: changes wait behind it (``saved``)

    async def on_start(self) -> None:
        await self._load(warm=True)

    async def _load(self, *, warm: bool) -> None:
        """Fill the index: from the mirror on a warm start when it is complete, else the store.

        A reload (after events may have been missed) always reads the store: the
        mirror is written in the background and may be behind it.
        """
        self._loading = True
        try:
            await self._fill(warm=warm)
        finally:
            self._loading = False

    async def _fill(self, *, warm: bool) -> None:
        started = time.monotonic()
        mirrored = await self.mirror.load_stars() if warm and self.mirror is not None else None
        if mirrored is not None:
            self.index, source = StarIndex(mirrored), "the redis mirror"
        else:
            census = star_census()
            take, read = census.take, []
            with Progress("star index: loading", None, log=log, bar=False) as progress:
                # A page at a time: a million rows, a million async-generator steps fewer.
                async for page in iter_pages(self.store, STARS, rows=IDS):
                    for row in page:
                        read.append(take(row.entity))
                    progress.advance(len(page))
            stored = [star for star in read if star is not None]
            self.index, source, self.census = StarIndex(stored), "the table store", census
            census.log(log, self.index)
            if self.mirror is not None:
                self.mirror.rebuild(stored)
        log.info("star index: %d stars from %s in %.2fs", len(self.index), source, time.monotonic() - started)

    async def receive(self, message: Any) -> Any:
        match message:
            case GetStar(star_id):
                return await self._find(star_id)
            case ActiveStars(since):
                now = self.clock()
                active = [s for s in self.index if s.last_liked >= since]
                active.sort(key=lambda s: self.brightness.at(s.b0, s.t0, now), reverse=True)
                return active
            case DeleteStar(star_id):
                return await self._delete(star_id)
            case Ready():
                return len(self.index)
            case StarRemoved(star_id):
                if self.index.remove(star_id) is not None:
                    self.on_delete(star_id)
                return None
            case Reload():
                await self._load(warm=False)
                return len(self.index)
            case ClearAll():
                if self._clearing is None or self._clearing.done():
                    self._clearing = asyncio.ensure_future(self._clear())
                    self._clearing.add_done_callback(_log_failure)
                return self._clearing
            case ForgetStars(ids):
                self._forget_all(ids)
                return None
            case ReadStored(star_id):
                return (await read_star_row(self.store, self.partitions, star_id)).entity
        return await super().receive(message)

    async def _find(self, star_id: str) -> Star:
        star = self.index.get(star_id)
        if star is not None:
            return star
        try:  # a star this index has not seen yet (another replica's): one point read
            found = stored_star((await read_star_row(self.store, self.partitions, star_id)).entity)
        except NotFound:
            found = None
        if found is None:  # nothing there, or a row this service cannot read
            raise NotFound(f"no star {star_id!r}")
        return found

    def saved(self, star: Star) -> None:
        """A like counter's durable new state of its star, into the index at once.

        A plain call, as the popularity tracker's count is: the registry lives in this loop and
        this never waits, where a ``StarChanged`` message cost every like an envelope, a
        mailbox put and a share of the registry's task switches. Order does not matter (likes
        only grow: ``_changed`` keeps the newer state), but a rebuild does: while the index is
        being loaded again (``Reload``) the change is queued behind the load, so the new index
        has it too. ``Overloaded`` then, as any tell."""
        if self._loading and self.me is not None:
            self.me.tell(StarChanged(star))
            return
        self._changed(star, upsert=False)

    def _changed(self, star: Star, upsert: bool) -> None:
        current = self.index.get(star.id)
        if current is None:
            if upsert:
                self.index.add(star)
        elif current.created_at != star.created_at or star.likes >= current.likes:
            # Likes only grow: an older state arriving late never overwrites a newer one.
            self.index.replace(star)

    async def receive_batch(self, messages: Sequence[Any]) -> list[Any]:
        """Index updates and creates, in order. Every like sends an update (a tell): a run of
        them is applied in one pass, no coroutine each. Creates that come together are
        written together (``_create``)."""
        results: list[Any] = [None] * len(messages)
        creates: list[int] = []
        for i, message in enumerate(messages):
            if type(message) is StarChanged:
                if creates:  # what came before it first
                    await self._create(messages, creates, results)
                    creates = []
                self._changed(message.star, message.upsert)
            else:
                creates.append(i)
        if creates:
            await self._create(messages, creates, results)
        return results

    async def _create(self, messages: Sequence[Any], indexes: list[int], results: list[Any]) -> None:
        """Create stars: ids checked in order, written together, indexed and announced in order."""
        planned: list[tuple[int, CreateStar, str]] = []
        claimed: set[str] = set()
        for i in indexes:
            cmd = messages[i]
            star_id = cmd.id or (cmd.intent.derived_id() if cmd.intent else str(uuid.uuid4()))
            # A keyed create whose star exists may be its own retry: its record says (in _write).
            if (star_id in self.index and cmd.intent is None) or star_id in claimed:
                results[i] = AlreadyExists(f"star id {star_id!r} is taken")
                continue
            claimed.add(star_id)
            planned.append((i, cmd, star_id))
        written = await each_outcome(*(self._write(cmd, sid) for _, cmd, sid in planned))
        for (i, cmd, _), outcome in zip(planned, written, strict=True):
            if isinstance(outcome, Star):
                self._register(outcome)
                if cmd.intent is not None:  # the answer recorded with it
                    outcome = self.views.star_created(outcome)
            results[i] = outcome

    async def _recorded(self, cmd: CreateStar, star_id: str) -> Recorded | None:
        if cmd.intent is None:
            return None
        return await find_recorded(
            self.store, STARS, self.partitions.of(star_id), star_id, cmd.intent, self.clock()
        )

    async def _write(self, cmd: CreateStar, star_id: str) -> Star | Recorded:
        """The durable part of a create: the user checked, the star and its owner's record written.

        With an Idempotency-Key the record is written in the star's own batch; a star or a
        record already there (an earlier try of the key, here or on another replica) is
        answered from the record. A first try, the common case, costs no extra read.
        """
        if star_id in self.index:  # taken, or made by an earlier try of this key
            if (replay := await self._recorded(cmd, star_id)) is not None:
                return replay
            raise AlreadyExists(f"star id {star_id!r} is taken")
        if cmd.user_id is not None:
            await self.users.ask(CheckUser(cmd.user_id))
        now = self.clock()
        star = Star(
            id=star_id,
            x=cmd.x,
            y=cmd.y,
            message=cmd.message,
            b0=cmd.brightness,
            t0=now,
            likes=0,
            created_at=now,
            last_liked=now,
            user_id=cmd.user_id,
        )
        partition = self.partitions.of(star_id)
        record = None
        if cmd.intent is not None:
            record = record_op(partition, star_id, cmd.intent, self.views.star_created(star), now)
        try:
            await insert_recorded(self.store, STARS, star_to_entity(star, partition), record)
        except AlreadyExists:
            if (replay := await self._recorded(cmd, star_id)) is not None:
                return replay  # the same key, answered on another replica meanwhile
            raise AlreadyExists(f"star id {star_id!r} is taken") from None
        if cmd.user_id is not None:
            try:
                await self.users.ask(Relate(cmd.user_id, "placed", star_id, now))
            except BaseException:
                # No star without its owner's record: undo the insert (and its key), answer the error.
                written = [star_id] if record is None else [star_id, str(record.entity["RowKey"])]
                await self.store.batch(STARS, [Op.delete(partition, row) for row in written])
                raise
        return star

    def _register(self, star: Star) -> None:
        self.index.add(star)
        if self.mirror is not None:
            self.mirror.star_saved(star)
        data = self.views.star(star, self.clock(), is_popular=False)
        self.publisher.publish("stars", "create", data, {"entity": star_to_entity(star)})

    async def _delete(self, star_id: str) -> str:
        star = await self._find(star_id)  # 404 unless here or another replica made it
        for partition in self.partitions.candidates(star_id):  # wherever it is (a delete of nothing is none)
            await self.store.delete(STARS, partition, star_id)
        self.index.remove(star_id)
        self.on_delete(star_id)
        if self.mirror is not None:
            self.mirror.star_deleted(star_id)
        # Where it was: a viewport stream passes on the deletes inside its box.
        self.publisher.publish("stars", "delete", {"id": star_id, "x": star.x, "y": star.y})
        return star_id

    async def _clear(self) -> int:
        """Every star of the store (other replicas' too), deleted one partition batch at a time.

        Runs beside the mailbox; each deleted chunk goes through it (``ForgetStars``), so
        the index only ever changes inside the actor, and stars created meanwhile stay.
        """
        assert self.me is not None, "the registry's own ref is set at start-up"
        me = self.me
        known = {star.id for star in self.index}
        removed: set[str] = set()

        async def forget(chunk: list[str]) -> None:
            removed.update(chunk)
            progress.advance(len(chunk))
            await me.ask(ForgetStars(tuple(chunk)))

        for _attempt in range(3):  # a star deleted meanwhile fails its batch: read again
            keys = [  # rows this service did not write are left alone
                (s.partition_key, s.row_key)
                async for s in iter_entities(self.store, STARS, rows=IDS)
                if is_star_row(s.entity) and s.row_key not in removed
            ]
            with Progress("admin clear: deleting stars", len(keys), log=log, bar=False) as progress:
                try:
                    await delete_rows(self.store, STARS, keys, after_chunk=forget)
                    break
                except NotFound:
                    continue
        await me.ask(ForgetStars(tuple(known - removed)))  # what the index had and the store did not
        await self.users.ask(ForgetRelations())  # no star they name exists any more
        self.publisher.publish("stars", "clear", {"count": len(removed)})
        log.info("admin clear: %d stars removed", len(removed))
        return len(removed)

    async def on_stop(self) -> None:
        if self._clearing is not None and not self._clearing.done():
            self._clearing.cancel()  # shutting down: a clear is chunk by chunk, never half a chunk
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._clearing

    def _forget_all(self, star_ids: Iterable[str]) -> None:
        for star_id in star_ids:
            self.index.remove(star_id)
            self.on_delete(star_id)
            if self.mirror is not None:
                self.mirror.star_deleted(star_id)

    def state(self) -> dict[str, Any]:
        return {"stars": len(self.index), "foreign_rows": self.census.summary(self.index)}


def _log_failure(clearing: asyncio.Future[int]) -> None:
    """A clear whose asker has gone (the admin hung up) still reports how it failed."""
    if not clearing.cancelled() and (exc := clearing.exception()) is not None:
        log.error("admin clear failed: %s", exc, exc_info=exc)
