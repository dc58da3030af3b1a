"""The actors: a small runtime and one module per kind of actor.

``Actors`` wires them for the app: the singletons (star registry, popularity
tracker, rate limiter) live as long as the app; like counters are activated per
star on first use and passivated when idle.
"""

from __future__ import annotations

import aiojobs
import attrs

from ..events import Publisher
from ..settings import Settings
from ..stars import Brightness
from ..storage import TableStore
from . import likes, popularity, ratelimit, registry, users
from .messages import Forget
from .runtime import Actor, ActorRef, ActorStopped, ActorSystem

__all__ = ("Actor", "ActorRef", "ActorStopped", "ActorSystem", "Actors")


@attrs.define
class Actors:
    system: ActorSystem
    registry: ActorRef
    popularity: ActorRef
    rate_limiter: ActorRef
    users: ActorRef

    @classmethod
    async def start(
        cls, settings: Settings, *, store: TableStore, publisher: Publisher, scheduler: aiojobs.Scheduler
    ) -> Actors:
        """Register every kind, activate the singletons and wait for the star index to load."""
        tuning = settings.actors
        system = ActorSystem(scheduler, mailbox_size=tuning.mailbox_size, ask_timeout=tuning.ask_timeout)
        model = Brightness.from_settings(settings.stars)
        system.register(
            popularity.KIND,
            lambda key: popularity.PopularityTracker(
                key, window=settings.redis.popularity_window, threshold=settings.redis.popularity_threshold
            ),
        )
        system.register(
            ratelimit.KIND,
            lambda key: ratelimit.RateLimiter(
                key,
                limit=settings.rate_limit.times,
                period=settings.rate_limit.seconds,
                max_clients=tuning.rate_limit_clients,
            ),
        )
        pop = await system.get(popularity.KIND, popularity.KEY)

        def forget(star_id: str) -> None:
            system.stop_actor(likes.KIND, star_id)
            pop.tell(Forget(star_id))

        system.register(
            registry.KIND,
            lambda key: registry.StarRegistry(
                key, store=store, publisher=publisher, brightness=model, on_delete=forget
            ),
        )
        reg = await system.get(registry.KIND, registry.KEY)
        system.register(
            likes.KIND,
            lambda key: likes.LikeCounter(
                key,
                store=store,
                publisher=publisher,
                brightness=model,
                registry=reg,
                popularity=pop,
                write_deadline=tuning.like_write_deadline,
                idle_timeout=tuning.idle_seconds,
            ),
        )
        limiter = await system.get(ratelimit.KIND, ratelimit.KEY)
        system.register(users.KIND, lambda key: users.UserRegistry(key, store=store, publisher=publisher))
        user_registry = await system.get(users.KIND, users.KEY)
        actors = cls(system, reg, pop, limiter, user_registry)
        await reg.ask(registry.Ready())
        await user_registry.ask(users.ListUsers(limit=1))  # its index is loaded too
        return actors

    async def like_counter(self, star_id: str) -> ActorRef:
        return await self.system.get(likes.KIND, star_id)

    async def stop(self) -> None:
        """Drain: like counters finish their batches before the actors they report to stop."""
        await self.system.stop([likes.KIND, registry.KIND, users.KIND, popularity.KIND, ratelimit.KIND])
