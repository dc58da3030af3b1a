"""The rate limiter actor: GCRA per client identity, in this process."""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable
from typing import Any, Final

from ..frozen import new_tuple
from ..ratelimit import gcra
from ..redis import REDIS_ERRORS, RedisLink
from .messages import Acquire, RateDecision
from .runtime import Actor

__all__ = ("RateLimiter",)

KIND: Final = "ratelimit"
# GCRA as in starmap/ratelimit.py, on the Redis server's clock, one key per client:
# the limit holds across every replica. Returns {allowed, remaining, reset, retry_after}.
GCRA_LUA: Final = """
local limit = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = period / limit
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
if new_tat - now > period + 1e-9 then
  return {0, 0, tostring(tat - now), tostring(new_tat - period - now)}
end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.max(1, math.ceil((new_tat - now) * 1000)))
local remaining = math.floor((period - (new_tat - now)) / interval + 1e-9)
return {1, remaining, tostring(new_tat - now), '0'}
"""
KEY: Final = "local"
EXPIRE_EVERY: Final = 1.0  # seconds between passes that forget clients whose quota is back


class RateLimiter(Actor):
    """``limit`` requests per ``period`` seconds per client; remembers at most ``max_clients``."""

    kind = KIND

    def __init__(
        self,
        key: str,
        *,
        limit: int,
        period: float,
        max_clients: int,
        link: RedisLink | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(key)
        self.link = link
        self.script = link.client.register_script(GCRA_LUA) if link is not None else None
        self.global_decisions = 0
        self.local_decisions = 0
        self.limit = limit
        self.period = period
        self.max_clients = max_clients
        self.clock = clock
        # Least recently allowed first. A client whose TAT has passed needs no state;
        # when the table is full the least recently allowed client is forgotten (it
        # can only gain from that, and only if it comes back within one period).
        self.tats: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._next_expiry = -math.inf

    async def receive(self, message: Any) -> Any:
        match message:
            case Acquire(client):
                if self.link is not None and self.script is not None and self.link.up:
                    try:
                        return await self._acquire_global(client)
                    except REDIS_ERRORS:
                        pass  # the link is marked down: the local limiter takes over
                return self.decide_locally(client)
        return await super().receive(message)

    def decide_locally(self, client: str) -> RateDecision:
        """This process's decision (synchronous: the facade calls it directly without Redis)."""
        self.local_decisions += 1
        now = self.clock()
        # Forgetting is for memory only: a TAT that has passed decides as no TAT at all. So a
        # pass a second, not one per decision (every like makes one).
        if now >= self._next_expiry:
            self._expire(now)
            self._next_expiry = now + EXPIRE_EVERY
        tats = self.tats
        verdict = gcra(tats.get(client, now), now, limit=self.limit, period=self.period)
        if verdict.allowed:
            tats[client] = verdict.tat
            tats.move_to_end(client)
            while len(tats) > self.max_clients:
                tats.popitem(last=False)
        # Made as its tuple at once, not through the NamedTuple's Python __new__ (~1,700
        # instructions of its ~3,800): every like is decided here without Redis.
        return new_tuple(
            RateDecision, (verdict.allowed, self.limit, verdict.remaining, verdict.reset, verdict.retry_after)
        )

    async def _acquire_global(self, client: str) -> RateDecision:
        assert self.link is not None and self.script is not None
        script, key = self.script, self.link.key(f"rl:{client}")
        allowed, remaining, reset, retry = await self.link.call(
            lambda: script(keys=[key], args=[self.limit, repr(float(self.period))])
        )
        self.global_decisions += 1
        return RateDecision(bool(allowed), self.limit, int(remaining), float(reset), float(retry))

    def _expire(self, now: float) -> None:
        while self.tats:
            client, tat = next(iter(self.tats.items()))
            if tat > now:
                return
            del self.tats[client]

    def state(self) -> dict[str, Any]:
        return {
            "local_clients": len(self.tats),
            "limit": self.limit,
            "period": self.period,
            "global_decisions": self.global_decisions,
            "local_decisions": self.local_decisions,
        }
