"""``create_app(settings)``: the aiohttp application and its resources."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Final

import aiojobs
from aiohttp import web
from prometheus_client.core import Metric

from .actors import Actors
from .actors.popularity import BUCKETS as POPULARITY_BUCKETS
from .backoff import Backoff
from .control import ReloadWatcher, star_partitions
from .errors import StorageUnavailable
from .events import TOPICS, Hub
from .http.malformed import install as install_malformed_request_answers
from .http.middleware import Front
from .http.routes import setup_cors, setup_misses, setup_routes
from .http.streams import Streams
from .http.views import WireViews
from .idempotency import sweep_forever
from .keys import ACTORS, BRIGHTNESS, FRONT, HUB, METRICS, SETTINGS, STREAMS
from .metrics import Metrics, counter, gauge
from .mirror import Mirror
from .redis import RedisLink
from .relay import RedisRelay
from .settings import Settings
from .stars import Brightness, StarPartitions
from .storage import STARS, TABLES, USERS, TableStore, describe_store, open_store
from .storage.instrumented import InstrumentedStore

__all__ = ("MIRROR", "REDIS", "RELAY", "SCHEDULER", "SERVER_ARGS", "STORE", "create_app")

log = logging.getLogger(__name__)

STORAGE_STARTUP_DEADLINE: Final = 30.0
# For aiohttp's request handler: after answering a request whose body never came whole
# (a 408), read what is left for at most this long so the client sees the answer, then
# close (aiohttp's default lingers 10 s). `starmap serve` and the tests' server use it.
SERVER_ARGS: Final[dict[str, Any]] = {"lingering_time": 2.0}
STORAGE_STARTUP: Final = Backoff(base=0.25, cap=5.0)
StoreFactory = Callable[[Settings], TableStore]
# The resources only this module wires; views reach them through the actors facade.
STORE: Final = web.AppKey("store", TableStore)
PARTITIONS: Final = web.AppKey("star_partitions", StarPartitions)  # the store's, recorded in it
SCHEDULER: Final = web.AppKey("scheduler", aiojobs.Scheduler)
REDIS: Final[web.AppKey[RedisLink | None]] = web.AppKey("redis")  # None without REDIS_HOST
MIRROR: Final = web.AppKey("mirror", Mirror)  # only with Redis
RELAY: Final = web.AppKey("relay", RedisRelay)  # only with Redis
STORE_FACTORY: Final[web.AppKey[StoreFactory]] = web.AppKey("store_factory")


async def _redis(app: web.Application) -> AsyncIterator[None]:
    """Redis when ``REDIS_HOST`` is set: pinged with retries; never fatal (degraded instead)."""
    settings = app[SETTINGS].redis
    if settings.host is None:
        app[REDIS] = None
        yield
        return
    link = RedisLink(settings, prefix=settings.key_prefix)
    await link.connect()
    app[REDIS] = link
    yield
    await link.close()


async def _storage(app: web.Application) -> AsyncIterator[None]:
    """Open the table store, create missing tables and read (or record) how stars are
    partitioned; retry a slow store with warnings."""
    settings = app[SETTINGS]
    store = app[STORE_FACTORY](settings)
    deadline = time.monotonic() + STORAGE_STARTUP_DEADLINE
    delays = STORAGE_STARTUP.delays()
    try:
        while True:
            try:
                await store.ensure_tables(TABLES)
                app[PARTITIONS] = await star_partitions(store)
                break
            except StorageUnavailable as exc:
                delay = next(delays)
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("table store not reachable yet (%s); retrying in %.2gs", exc, delay)
                await asyncio.sleep(delay)
    except BaseException:
        await store.close()
        raise
    log.info("table store: %s", describe_store(settings))
    app[STORE] = InstrumentedStore(store, app[METRICS])
    yield
    await store.close()


async def _scheduler(app: web.Application) -> AsyncIterator[None]:
    """Background loops (actor tasks) run here; failures reach one handler, not the void."""

    def on_error(scheduler: aiojobs.Scheduler, context: dict[str, Any]) -> None:
        log.error("background job failed: %s", context.get("message"), exc_info=context.get("exception"))

    # No job limit: every live actor is a job (aiojobs' default of 100 would park
    # the 101st like counter); memory follows the active set through passivation.
    scheduler = aiojobs.Scheduler(limit=None, exception_handler=on_error)
    app[SCHEDULER] = scheduler
    yield
    # The actors have drained by now (their context closes first); what is left are
    # endless loops (relay, mirror, reaper): cancel them rather than wait.
    await scheduler.close()


async def _actors(app: web.Application) -> AsyncIterator[None]:
    """The hub, the actors that publish to it, and with Redis the relay and the mirror.

    The indexes are loaded (and the replay buffers primed) before the app serves.
    """
    settings, link, scheduler = app[SETTINGS], app[REDIS], app[SCHEDULER]
    hub = app[HUB] = Hub.from_settings(settings.sse)
    app[STREAMS] = Streams(
        hub, queue_limit=settings.sse.subscriber_queue, flush_interval=settings.sse.flush_ms / 1000
    )
    app[BRIGHTNESS] = Brightness.from_settings(settings.stars)
    mirror = None
    if link is not None:
        bucket_seconds = settings.redis.popularity_window / POPULARITY_BUCKETS
        mirror = app[MIRROR] = Mirror(link, bucket_seconds=bucket_seconds)
    actors = await Actors.start(
        settings,
        store=app[STORE],
        partitions=app[PARTITIONS],
        publisher=hub,
        scheduler=scheduler,
        views=WireViews(app[BRIGHTNESS]),
        link=link,
        mirror=mirror,
    )
    app[ACTORS] = actors
    app[METRICS].watch(lambda: _live_metrics(app))

    async def reload(reason: str) -> None:  # the tables changed under us (an import)
        await actors.reload_now()
        hub.resync_all()

    watcher = ReloadWatcher(app[STORE], interval=settings.storage.reload_poll, on_reload=reload)
    await watcher.start()
    await scheduler.spawn(watcher.run(), name="reload watcher")
    await scheduler.spawn(app[STREAMS].sweep(), name="stream sweeper")
    records = sweep_forever(app[STORE], (STARS, USERS), ttl=settings.server.idempotency_ttl)
    await scheduler.spawn(records, name="idempotency record sweeper")
    if link is not None and mirror is not None:
        relay = app[RELAY] = RedisRelay(
            link,
            hub,
            maxlen=settings.sse.replay_buffer,
            on_event=actors.apply,
        )
        await relay.prime()
        hub.relay = actors.relay = relay

        def on_link(up: bool) -> None:
            if up:  # what happened while Redis was away did not travel: refetch
                hub.resync_all()
                actors.reload()

        link.on_change(on_link)
        for loop, name in ((relay.read_loop, "relay reader"), (relay.write_loop, "relay writer"),
                           (mirror.run, "mirror writer")):  # fmt: skip
            await scheduler.spawn(loop(), name=name)
    yield
    await actors.stop()
    if link is not None and mirror is not None:  # the last events and mirror writes go out
        await app[RELAY].drain(within=1.0)
        await mirror.drain(within=1.0)


def _live_metrics(app: web.Application) -> Iterator[Metric]:
    """What is true now: live actors and their mailboxes, streams, events, Redis."""
    snapshot = app[ACTORS].system.snapshot()
    kinds = sorted({a["kind"] for a in snapshot})
    yield gauge(
        "starmap_actors_live",
        "Live actors",
        ["kind"],
        {(k,): sum(a["kind"] == k for a in snapshot) for k in kinds},
    )
    yield gauge(
        "starmap_actor_mailbox_depth",
        "Messages waiting, summed per kind",
        ["kind"],
        {(k,): sum(a["mailbox"] for a in snapshot if a["kind"] == k) for k in kinds},
    )
    streams = app[STREAMS]
    yield gauge(
        "starmap_sse_subscribers",
        "Open event streams per topic",
        ["topic"],
        {(t,): streams.subscribers(t) for t in TOPICS},
    )
    yield counter("starmap_events_published", "Events delivered to this replica's hub", app[HUB].published)
    yield counter("starmap_sse_subscribers_dropped", "Streams cut off for falling behind", streams.dropped)
    yield counter(
        "starmap_storage_write_requests",
        "Round trips that carried writes to the store (Azure requests, SQLite commits)",
        app[STORE].write_requests,
    )
    yield gauge("starmap_gc_frozen_objects", "Objects start-up left out of garbage collection", [],
                {(): float(gc.get_freeze_count())})  # fmt: skip
    yield gauge("starmap_gc_enabled", "1 while the cyclic garbage collector runs (off during start-up)",
                [], {(): float(gc.isenabled())})  # fmt: skip
    link = app[REDIS]
    if link is not None:
        yield gauge("starmap_redis_up", "1 while Redis answers", [], {(): 1.0 if link.up else 0.0})


def create_app(settings: Settings, *, store_factory: StoreFactory = open_store) -> web.Application:
    """The whole service; resources open on start-up and close in reverse on clean-up.

    ``store_factory`` lets tests wrap the real store (to inject faults).
    """
    install_malformed_request_answers()  # what aiohttp cannot parse: problem+json too
    metrics = Metrics()
    # No aiohttp middleware: every handler is wrapped in the front instead (see starmap.http.middleware).
    app = web.Application(client_max_size=settings.server.max_body_bytes)
    fronted = app[FRONT] = Front(metrics, verbose_errors=settings.server.debug)
    app[METRICS] = metrics
    app[SETTINGS] = settings
    app[STORE_FACTORY] = store_factory
    # In dependency order; torn down in reverse (actors drain before the store closes).
    app.cleanup_ctx.extend([_redis, _storage, _scheduler, _actors])
    setup_routes(app, fronted)
    setup_cors(app, settings.server.cors_origins, fronted)
    setup_misses(app, fronted)
    return app
