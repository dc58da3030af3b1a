"""The actors: a small runtime and one module per kind of actor.

``Actors`` wires them for the app: the singletons (star registry, user registry,
popularity tracker, rate limiter) live as long as the app; like counters are
activated per star on first use and passivated when idle.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any, Final

import aiojobs
import attrs

from ..errors import Overloaded, StorageUnavailable
from ..events import Publisher
from ..idempotency import Recorded
from ..index import StarIndex
from ..mirror import Mirror
from ..redis import REDIS_ERRORS, RedisLink
from ..relay import RedisRelay
from ..settings import Settings
from ..stars import Brightness, Star, StarPartitions, star_from_entity
from ..storage import TABLES, TableStore, describe_store
from ..users import user_from_entity
from . import likes, popularity, ratelimit, registry, users
from .messages import (
    Acquire,
    Forget,
    Like,
    Liked,
    PopularCounts,
    RateDecision,
    Ready,
    Reload,
    StarChanged,
    StarRemoved,
    UserChanged,
    UserRemoved,
)
from .popularity import PopularityTracker
from .registry import StarRegistry
from .runtime import Actor, ActorRef, ActorStopped, ActorSystem
from .users import UserRegistry
from .wire import Views

# How long start-up waits for the registries to load their indexes (a million stars: ~10 s).
LOAD_TIMEOUT: Final = 3600.0

__all__ = ("Actor", "ActorRef", "ActorStopped", "ActorSystem", "Actors")


@attrs.define
class Actors:
    """The actors of one app. Commands go through mailboxes; hot reads use read models.

    The registry's index and the tracker's popular set are only changed inside their
    actors, between awaits, and replaced or updated whole; a view reading them sees the
    state between two messages, without a mailbox round trip or waiting behind a write.
    """

    system: ActorSystem
    registry: ActorRef
    popularity: ActorRef
    rate_limiter: ActorRef
    users: ActorRef
    star_registry: StarRegistry
    user_registry: UserRegistry
    tracker: PopularityTracker
    limiter: ratelimit.RateLimiter
    # The resources behind them, for readiness and debugging (views never touch them).
    store: TableStore
    location: str
    link: RedisLink | None = None
    mirror: Mirror | None = None
    relay: RedisRelay | None = None  # set by the app once the relay runs

    @classmethod
    async def start(
        cls,
        settings: Settings,
        *,
        store: TableStore,
        partitions: StarPartitions,
        publisher: Publisher,
        scheduler: aiojobs.Scheduler,
        views: Views,
        link: RedisLink | None = None,
        mirror: Mirror | None = None,
    ) -> Actors:
        """Register every kind, activate the singletons and wait for their indexes to load."""
        tuning = settings.actors
        system = ActorSystem(scheduler, mailbox_size=tuning.mailbox_size, ask_timeout=tuning.ask_timeout)
        model = Brightness.from_settings(settings.stars)
        tracker = popularity.PopularityTracker(
            popularity.KEY,
            window=settings.redis.popularity_window,
            threshold=settings.redis.popularity_threshold,
            mirror=mirror,
        )
        system.register(popularity.KIND, lambda key: tracker)
        limiter_actor = ratelimit.RateLimiter(
            ratelimit.KEY,
            limit=settings.rate_limit.times,
            period=settings.rate_limit.seconds,
            max_clients=tuning.rate_limit_clients,
            link=link,
        )
        system.register(ratelimit.KIND, lambda key: limiter_actor)
        pop = await system.get(popularity.KIND, popularity.KEY)
        user_registry = UserRegistry(users.KEY, store=store, publisher=publisher, views=views)
        system.register(users.KIND, lambda key: user_registry)
        user_ref = await system.get(users.KIND, users.KEY)

        def forget(star_id: str) -> None:
            """After a star's durable deletion: its counter stops, its popularity goes."""
            system.stop_actor(likes.KIND, star_id)
            # The deletion happened: a busy tracker must not turn it into a 503 (its
            # counts for the star then slide out of the window by themselves).
            with contextlib.suppress(Overloaded, ActorStopped):
                pop.tell(Forget(star_id))

        star_registry = registry.StarRegistry(
            registry.KEY,
            store=store,
            partitions=partitions,
            publisher=publisher,
            brightness=model,
            views=views,
            users=user_ref,
            on_delete=forget,
            mirror=mirror,
        )
        system.register(registry.KIND, lambda key: star_registry)
        reg = await system.get(registry.KIND, registry.KEY)
        star_registry.me = reg
        system.register(
            likes.KIND,
            lambda key: likes.LikeCounter(
                key,
                store=store,
                partitions=partitions,
                publisher=publisher,
                brightness=model,
                views=views,
                star_saved=star_registry.saved,
                count_likes=tracker.count_likes,
                users=user_ref,
                write_deadline=tuning.like_write_deadline,
                idle_timeout=tuning.idle_seconds,
                mirror=mirror,
            ),
        )
        limiter = await system.get(ratelimit.KIND, ratelimit.KEY)
        actors = cls(
            system, reg, pop, limiter, user_ref, star_registry, user_registry, tracker, limiter_actor,
            store=store, location=describe_store(settings), link=link, mirror=mirror,
        )  # fmt: skip
        # Loading a large table takes longer than any ask should: start-up waits for it.
        await reg.ask(Ready(), timeout=LOAD_TIMEOUT)
        await user_ref.ask(Ready(), timeout=LOAD_TIMEOUT)
        return actors

    def decide_here(self, client: str) -> RateDecision | None:
        """A like's rate decision for ``client`` when it is made in this process: without Redis
        the limiter's state lives in this event loop and deciding never waits, so a message
        (a mailbox, a task switch, a future) would buy nothing. None with Redis: ``acquire``."""
        return self.limiter.decide_locally(client) if self.link is None else None

    async def acquire(self, client: str) -> RateDecision:
        """A like's rate decision for ``client``, asked of the limiter: with Redis, the shared
        one (its own local decision while the link is down). Without Redis, ``decide_here``."""
        return await self.rate_limiter.ask(Acquire(client))

    def stars(self) -> StarIndex:
        """The registry's index, to read (never to change) outside the registry."""
        return self.star_registry.index

    def popular_now(self) -> dict[str, int] | None:
        """Popular stars → likes in the window: the tracker's read model while it is current
        (nearly always: a plain read, nothing to await); None when it is stale (``popular``)."""
        return self.tracker.current()

    async def popular(self) -> dict[str, int]:
        """Popular stars → likes in the window: the tracker's read model, or an ask if stale."""
        current = self.popular_now()
        if current is not None:
            return current
        return await self.popularity.ask(PopularCounts())

    def like(self, star_id: str, like: Like) -> Awaitable[Star | Recorded]:
        """Send ``like`` to its star's counter; the answer to await. A live counter (under
        likes, nearly always) is reached without a coroutine of this one's; a passive one
        is activated first."""
        counter = self.system.live(likes.KIND, star_id)
        if counter is not None:
            return counter.ask(like)
        return self._activate_and_like(star_id, like)

    async def _activate_and_like(self, star_id: str, like: Like) -> Star | Recorded:
        return await (await self.system.get(likes.KIND, star_id)).ask(like)

    def apply(self, topic: str, type_: str, data: dict[str, Any], meta: dict[str, Any], remote: bool) -> None:
        """Bring this replica's registries up to an event from the shared stream.

        Every event is applied in stream order, this replica's own too (idempotent),
        so the indexes converge to the stream; likes from other replicas also count
        towards popularity here.
        """
        match topic, type_:
            case "stars", "create" | "update":
                star = star_from_entity(meta["entity"])
                self.registry.tell(StarChanged(star, upsert=True))
                if remote and meta.get("likes_delta"):
                    self.popularity.tell(Liked(star.id, int(meta["likes_delta"]), star.last_liked))
            case "stars", "delete":
                self.registry.tell(StarRemoved(data["id"]))
            case "stars", "clear":
                self.registry.tell(Reload())
                self.popularity.tell(Forget(None))
            case "users", "create" | "update":
                self.users.tell(UserChanged(user_from_entity(meta["entity"])))
            case "users", "delete":
                self.users.tell(UserRemoved(data["id"]))

    def reload(self) -> None:
        """Rebuild both indexes from the table store (after a relay outage)."""
        self.registry.tell(Reload())
        self.users.tell(Reload())

    async def reload_now(self) -> None:
        """Rebuild both indexes from the table store and return once they are loaded."""
        await self.registry.ask(Reload(), timeout=LOAD_TIMEOUT)
        await self.users.ask(Reload(), timeout=LOAD_TIMEOUT)

    def foreign_rows(self) -> dict[str, dict[str, int]]:
        """Rows the registries found at their last load and left alone, per table."""
        stars, people = self.star_registry, self.user_registry
        return {
            stars.census.table: stars.census.summary(stars.index),
            people.census.table: people.census.summary(people.index),
        }

    # -- health and debugging -----------------------------------------------------------

    async def check_store(self, within: float) -> str | None:
        """None when the table store answers within ``within`` seconds; otherwise why not."""
        try:
            async with asyncio.timeout(within):
                await self.store.ping()
        except (TimeoutError, StorageUnavailable) as exc:
            return str(exc) or f"no answer within {within:g}s"
        return None

    async def check_redis(self, within: float) -> str:
        """Redis as readiness reports it ("not configured", "healthy", "degraded: …"), pinged first."""
        if self.link is None:
            return "not configured"
        with contextlib.suppress(TimeoutError, *REDIS_ERRORS):  # a failed ping marks the link degraded
            async with asyncio.timeout(within):
                await self.link.call(self.link.client.ping)
        return self.link.describe()

    async def table_info(self) -> dict[str, Any]:
        """Where the data lives, each table's row count (a full scan each), foreign rows."""
        counts = {table: await self.store.count(table) for table in TABLES}
        return {"backend": self.store.kind, "location": self.location, "tables": counts,
                "foreign_rows": self.foreign_rows()}  # fmt: skip

    def cache_stats(self) -> dict[str, Any]:
        """The Redis mirror and event relay: warm-up hits and misses, writes, state."""
        if self.mirror is None or self.relay is None:
            return {"redis": "not configured"}
        return {**self.mirror.stats(), "events": self.relay.stats()}

    def describe_actor(self, kind: str, key: str) -> dict[str, Any] | None:
        """One live actor's snapshot and state; None if it is not live."""
        return self.system.describe(kind, key)

    async def stop(self) -> None:
        """Drain: like counters finish their batches before the actors they report to stop."""
        await self.system.stop([likes.KIND, registry.KIND, users.KIND, popularity.KIND, ratelimit.KIND])
