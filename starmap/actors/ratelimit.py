"""The rate limiter actor: GCRA per client identity, in this process."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Any, Final

from ..ratelimit import gcra
from .messages import Acquire, RateDecision
from .runtime import Actor

__all__ = ("RateLimiter",)

KIND: Final = "ratelimit"
KEY: Final = "local"


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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(key)
        self.limit = limit
        self.period = period
        self.max_clients = max_clients
        self.clock = clock
        # Least recently allowed first. A client whose TAT has passed needs no state;
        # when the table is full the least recently allowed client is forgotten (it
        # can only gain from that, and only if it comes back within one period).
        self.tats: collections.OrderedDict[str, float] = collections.OrderedDict()

    async def receive(self, message: Any) -> Any:
        match message:
            case Acquire(client):
                return self._acquire(client)
        return await super().receive(message)

    def _acquire(self, client: str) -> RateDecision:
        now = self.clock()
        self._expire(now)
        verdict = gcra(self.tats.get(client, now), now, limit=self.limit, period=self.period)
        if verdict.allowed:
            self.tats[client] = verdict.tat
            self.tats.move_to_end(client)
            while len(self.tats) > self.max_clients:
                self.tats.popitem(last=False)
        return RateDecision(
            verdict.allowed, self.limit, verdict.remaining, verdict.reset, verdict.retry_after
        )

    def _expire(self, now: float) -> None:
        while self.tats:
            client, tat = next(iter(self.tats.items()))
            if tat > now:
                return
            del self.tats[client]

    def state(self) -> dict[str, Any]:
        return {"clients": len(self.tats), "limit": self.limit, "period": self.period}
