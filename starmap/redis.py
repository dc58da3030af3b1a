"""Redis, optional: the connection, its health and the shared keys.

Without ``REDIS_HOST`` nothing here runs and the service is one replica. With it,
replicas share events (``relay.py``), rate limits and a mirror of the stars
(``mirror.py``). When
Redis is unreachable the service carries on as a single replica would (local
limiter, local hub, no mirror), readiness says ``degraded``, and redis-py
reconnects by itself on the next command.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import AbstractBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .backoff import Backoff
from .settings import RedisSettings

__all__ = ("REDIS_ERRORS", "RedisLink", "drained")

log = logging.getLogger(__name__)

# What a Redis call can raise; only the first group means the server is away (OSError
# covers refused sockets). An error Redis answers with (a script's, a command's) is a
# bug to log, not an outage: it must not flip the service into degraded mode.
REDIS_DOWN: Final = (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError)
REDIS_ERRORS: Final = (RedisError, *REDIS_DOWN)
STARTUP_ATTEMPTS: Final = 5
CONNECT_RETRY: Final = Backoff(base=0.2, cap=2.0)
COMMAND_RETRY: Final = Backoff(base=0.05, cap=0.5)  # redis-py's own retry of a failed command


class _ClientBackoff(AbstractBackoff):
    """The project's retry policy (jittered) for redis-py's own command retries."""

    def __init__(self, policy: Backoff) -> None:
        self.policy = policy

    def compute(self, failures: int) -> float:
        return self.policy.delay(max(0, failures - 1))


async def drained(queue: asyncio.Queue[Any], busy: Callable[[], bool], within: float) -> bool:
    """Wait (polling: shutdown only) for a writer loop to empty its queue and finish its batch."""
    deadline = time.monotonic() + within
    while not queue.empty() or busy():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.01)
    return True


class RedisLink:
    """One Redis client (a bounded pool), its state, and the key prefix."""

    def __init__(self, settings: RedisSettings, *, prefix: str) -> None:
        assert settings.host is not None
        self.settings = settings
        self.prefix = prefix
        self.client = aioredis.Redis(
            host=settings.host,
            port=settings.port,
            password=settings.password,
            ssl=settings.ssl,
            socket_timeout=2.0,
            socket_connect_timeout=2.0,
            health_check_interval=15,
            max_connections=32,
            retry=Retry(_ClientBackoff(COMMAND_RETRY), retries=1),
            client_name="starmap",
        )
        self.error: str | None = "not connected yet"
        self._listeners: list[Callable[[bool], None]] = []

    @property
    def up(self) -> bool:
        return self.error is None

    def describe(self) -> str:
        return "healthy" if self.up else f"degraded: {self.error}"

    def key(self, name: str) -> str:
        return self.prefix + name

    def on_change(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener(up)`` whenever the link goes down or comes back."""
        self._listeners.append(listener)

    def mark_down(self, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}"[:200]
        if self.up:
            log.warning("redis unreachable (%s): running as a single replica until it is back", reason)
            self.error = reason
            for listener in self._listeners:
                listener(False)
        self.error = reason

    def mark_up(self) -> None:
        if not self.up:
            log.info("redis reachable again")
            self.error = None
            for listener in self._listeners:
                listener(True)

    async def call(self, what: Callable[[], Awaitable[Any]]) -> Any:
        """Run one Redis operation, keeping the state: raises what Redis raised."""
        try:
            result = await what()
        except REDIS_DOWN as exc:
            self.mark_down(exc)
            raise
        except RedisError:
            log.exception("redis refused a command")
            raise
        self.mark_up()
        return result

    async def connect(self) -> None:
        """Ping at start-up with a few logged retries; stay degraded (not fail) if it never answers."""
        delays = CONNECT_RETRY.delays()
        for attempt in range(1, STARTUP_ATTEMPTS + 1):
            try:
                await self.client.ping()
                self.error = None
                log.info("redis: connected to %s:%d", self.settings.host, self.settings.port)
                return
            except REDIS_ERRORS as exc:
                self.error = f"{type(exc).__name__}: {exc}"[:200]
                log.warning("redis not reachable (attempt %d/%d): %s", attempt, STARTUP_ATTEMPTS, self.error)
            await asyncio.sleep(next(delays))

    async def close(self) -> None:
        await self.client.aclose()
