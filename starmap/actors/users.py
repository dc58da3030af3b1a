"""The user registry: users, their unique e-mail claims, the user → star relations.

It alone reads and writes ``Users``, ``Emails`` and ``UserStars``: the star registry
asks it to check a user and to record a placed star, the like counter to check a
liker and, once the like is durable, to record it.

E-mail uniqueness holds across replicas without a scan: a user's address is
claimed in ``Emails`` (insert-if-absent) before the user is written, and every
multi-step change is compensated when a step fails, so no claim is left without
its user and no user without its claim. A claim left behind by a crash is taken
over once it is older than ``STALE_CLAIM`` and its user does not hold that
address (a change in progress elsewhere takes milliseconds, not that long).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import attrs

from ..errors import AlreadyExists, NotFound, PreconditionFailed
from ..events import Publisher
from ..idempotency import IDS, Intent, Recorded, find_recorded, insert_recorded, record_op
from ..index import OrderedIndex
from ..layout import Census
from ..stars import bucket
from ..storage import Stored, TableStore, delete_rows, iter_entities
from ..users import (
    EMAILS,
    USER_STARS,
    USERS,
    Relation,
    User,
    claim_entity,
    email_key,
    is_relation,
    relation_entity,
    stored_user,
    user_census,
    user_to_entity,
)
from .messages import (
    CheckUser,
    CreateUser,
    DeleteUser,
    ForgetRelations,
    GetUser,
    ListUsers,
    Ready,
    Relate,
    Reload,
    UpdateUser,
    UserChanged,
    UserPage,
    UserRemoved,
    UserStarIds,
)
from .runtime import Actor, each_outcome
from .wire import Views

__all__ = ("UserRegistry",)

log = logging.getLogger(__name__)

KIND: Final = "users"
KEY: Final = "registry"
STALE_CLAIM: Final = 30.0


class UserRegistry(Actor):
    """One per process; loads every user at start-up into an ordered index."""

    kind = KIND
    # Checks and relation writes that queue together run concurrently (one store round trip).
    batchable = (CheckUser, Relate)

    def __init__(
        self,
        key: str,
        *,
        store: TableStore,
        publisher: Publisher,
        views: Views,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(key)
        self.store = store
        self.publisher = publisher
        self.views = views
        self.clock = clock
        self.index: OrderedIndex[User] = OrderedIndex()
        self.census: Census[User] = user_census()

    async def on_start(self) -> None:
        census = user_census()
        read = [census.take(s.entity) async for s in iter_entities(self.store, USERS, rows=IDS)]
        self.index = OrderedIndex([user for user in read if user is not None])
        self.census = census
        census.log(log, self.index)
        log.info("user index: %d users loaded", len(self.index))

    async def receive(self, message: Any) -> Any:
        match message:
            case GetUser(user_id):
                return (await self._read(user_id))[0]
            case ListUsers(limit, cursor):
                return UserPage(*self.index.page(limit=limit, cursor=cursor))
            case CreateUser(name, email, intent):
                return await self._create(name, email, intent)
            case UpdateUser(user_id, name, email):
                return await self._update(user_id, name, email)
            case DeleteUser(user_id):
                return await self._delete(user_id)
            case UserStarIds(user_id, relation):
                return await self._star_ids(user_id, relation)
            case UserChanged(user):
                if not self.index.replace(user):
                    self.index.add(user)
                return None
            case UserRemoved(user_id):
                self.index.remove(user_id)
                return None
            case Reload():
                await self.on_start()
                return len(self.index)
            case Ready():
                return len(self.index)
            case CheckUser(user_id):
                await self._read(user_id)
                return None
            case Relate(user_id, relation, star_id, at):
                await self.store.upsert(USER_STARS, relation_entity(user_id, relation, star_id, at))
                return None
            case ForgetRelations():
                keys = [
                    (r.partition_key, r.row_key)
                    async for r in iter_entities(self.store, USER_STARS)
                    if is_relation(r.entity)
                ]
                return await delete_rows(self.store, USER_STARS, keys)
        return await super().receive(message)

    async def receive_batch(self, messages: Sequence[Any]) -> list[Any]:
        """Checks and relation writes, all at once: each its own answer."""
        return list(await each_outcome(*(self.receive(m) for m in messages)))

    async def _read(self, user_id: str) -> tuple[User, str]:
        """The user and its ETag: a point read (the store is the truth across replicas)."""
        try:
            stored = await self.store.get(USERS, bucket(user_id), user_id)
        except NotFound:
            stored = None
        user = stored_user(stored.entity) if stored is not None else None
        if stored is None or user is None:  # nothing there, or a row this service cannot read
            self.index.remove(user_id)
            raise NotFound(f"no user {user_id!r}")
        if not self.index.replace(user):
            self.index.add(user)
        return user, stored.etag

    # -- claims ------------------------------------------------------------------------

    async def _claim(self, key: str, user_id: str) -> None:
        """Make ``key`` this user's; ``AlreadyExists`` if another user holds it."""
        entity = claim_entity(key, user_id, self.clock())
        try:
            await self.store.insert(EMAILS, entity)
            return
        except AlreadyExists:
            pass
        try:
            current = await self.store.get(EMAILS, bucket(key), key)
        except NotFound:  # released in between: one more try
            await self.store.insert(EMAILS, entity)
            return
        if current.entity["user_id"] == user_id:
            return
        if await self._claim_is_live(key, current):
            raise AlreadyExists("that e-mail address is taken")
        try:
            await self.store.update(EMAILS, entity, current.etag)
        except PreconditionFailed:
            raise AlreadyExists("that e-mail address is taken") from None
        log.warning("took over a stale e-mail claim left by user %s", current.entity["user_id"])

    async def _claim_is_live(self, key: str, claim: Stored) -> bool:
        if self.clock() - float(claim.entity.get("claimed_at", 0)) < STALE_CLAIM:
            return True
        holder = str(claim.entity["user_id"])
        try:
            stored = await self.store.get(USERS, bucket(holder), holder)
        except NotFound:
            return False
        return email_key(str(stored.entity["email"])) == key

    async def _release(self, key: str, user_id: str) -> None:
        """Drop ``user_id``'s claim on ``key`` (someone else's claim is left alone)."""
        try:
            current = await self.store.get(EMAILS, bucket(key), key)
        except NotFound:
            return
        if current.entity["user_id"] == user_id:
            await self.store.delete(EMAILS, bucket(key), key, etag=current.etag)

    async def _undo(self, what: str, step: Callable[[], Awaitable[Any]]) -> None:
        """Run a compensating step; if it fails too, say so (the stale-claim rule is the net)."""
        try:
            await step()
        except Exception:
            log.exception("could not undo %s", what)

    # -- commands ------------------------------------------------------------------------

    async def _create(self, name: str, email: str, intent: Intent | None) -> User | Recorded:
        """A new user: the address claimed, then the user (with its key's record) written.

        With an Idempotency-Key the id comes from the key, so a retry meets its own
        record (the answer again) or, racing it on another replica, its own claim.
        """
        user_id = intent.derived_id() if intent is not None else str(uuid.uuid4())
        if (replay := await self._recorded(user_id, intent)) is not None:
            return replay
        user = User(id=user_id, name=name, email=email, created_at=self.clock())
        await self._claim(user.email_key, user.id)
        record = None
        if intent is not None:
            record = record_op(
                bucket(user.id), user.id, intent, self.views.user_created(user), user.created_at
            )
        try:
            await insert_recorded(self.store, USERS, user_to_entity(user), record)
        except AlreadyExists:
            await self._release_unless_held(user)
            if (replay := await self._recorded(user_id, intent)) is not None:
                return replay  # the same key, answered on another replica meanwhile
            raise AlreadyExists(
                "a user was made with this Idempotency-Key before it expired; send a new key"
            ) from None
        except BaseException:
            await self._undo("the claim of a user never made", lambda: self._release(user.email_key, user.id))
            raise
        self.index.add(user)
        self.publisher.publish("users", "create", self.views.user(user), {"entity": user_to_entity(user)})
        return user if intent is None else self.views.user_created(user)

    async def _recorded(self, user_id: str, intent: Intent | None) -> Recorded | None:
        if intent is None:
            return None
        return await find_recorded(self.store, USERS, bucket(user_id), user_id, intent, self.clock())

    async def _release_unless_held(self, user: User) -> None:
        """Undo this create's claim, unless the user that won its id holds that address.

        A keyed create racing its own retry claims the address for the same id: the
        claim is the winner's then, and must stay.
        """
        try:
            winner = stored_user((await self.store.get(USERS, bucket(user.id), user.id)).entity)
        except NotFound:
            winner = None
        if winner is None or winner.email_key != user.email_key:
            await self._undo("the claim of a user never made", lambda: self._release(user.email_key, user.id))

    async def _update(self, user_id: str, name: str, email: str) -> User:
        old, etag = await self._read(user_id)
        new = attrs.evolve(old, name=name, email=email)
        if new.email_key == old.email_key:
            await self.store.update(USERS, user_to_entity(new), etag)
        else:
            await self._claim(new.email_key, user_id)
            try:
                new_etag = await self.store.update(USERS, user_to_entity(new), etag)
            except BaseException:
                await self._undo(
                    "a claim for a change that failed", lambda: self._release(new.email_key, user_id)
                )
                raise
            try:
                await self._release(old.email_key, user_id)
            except BaseException:
                await self._undo("a user's new address", lambda: self._restore(old, new_etag, new.email_key))
                raise
        self.index.replace(new)
        self.publisher.publish("users", "update", self.views.user(new), {"entity": user_to_entity(new)})
        return new

    async def _restore(self, old: User, etag: str, new_key: str) -> None:
        await self.store.update(USERS, user_to_entity(old), etag)
        await self._release(new_key, old.id)

    async def _delete(self, user_id: str) -> str:
        user, etag = await self._read(user_id)
        await self.store.delete(USERS, bucket(user_id), user_id, etag=etag)
        try:
            await self._release(user.email_key, user_id)
        except BaseException:
            await self._undo("a user's deletion", lambda: self.store.insert(USERS, user_to_entity(user)))
            raise
        self.index.remove(user_id)
        self.publisher.publish("users", "delete", {"id": user_id})
        try:
            await self._drop_relations(user_id)
        except Exception:
            # The rows are unreachable without their user (a fresh UUID is never reused).
            log.warning("relation rows of deleted user %s remain", user_id, exc_info=True)
        return user_id

    async def _drop_relations(self, user_id: str) -> None:
        rows = [s async for s in iter_entities(self.store, USER_STARS, user_id) if is_relation(s.entity)]
        await delete_rows(self.store, USER_STARS, [(s.partition_key, s.row_key) for s in rows])

    async def _star_ids(self, user_id: str, relation: Relation) -> list[str]:
        await self._read(user_id)  # 404 for an unknown user
        prefix = f"{relation}:"
        rows = [s.entity async for s in iter_entities(self.store, USER_STARS, user_id)]
        chosen = [r for r in rows if is_relation(r) and str(r["RowKey"]).startswith(prefix)]
        chosen.sort(key=lambda r: float(r["at"]), reverse=True)
        return [str(r["star_id"]) for r in chosen]

    def state(self) -> dict[str, Any]:
        return {"users": len(self.index), "foreign_rows": self.census.summary(self.index)}
