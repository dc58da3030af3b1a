"""One retry policy: exponential back-off with jitter.

Every wait before a retry comes from a ``Backoff``: the delay doubles from ``base`` up
to ``cap`` and each one is scaled by a random factor in ``[1 - jitter, 1 + jitter]``,
so replicas (or tools) that lost a dependency at the same moment do not come back to
it in lockstep.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterator
from typing import Final, TypeVar

import attrs

from .errors import StorageUnavailable

__all__ = ("STORAGE_RETRY", "Backoff", "retry")

T = TypeVar("T")


@attrs.frozen
class Backoff:
    base: float
    cap: float
    jitter: float = 0.5

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait before retry number ``attempt`` (0 for the first)."""
        step: float = min(self.cap, self.base * 2.0 ** min(attempt, 62))
        factor: float = (rng or random).uniform(1.0 - self.jitter, 1.0 + self.jitter)
        return step * factor

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """The waits before each retry, without end (stop by count or deadline)."""
        attempt = 0
        while True:
            yield self.delay(attempt, rng)
            attempt += 1


# The command-line tools' storage calls: five tries within a few seconds.
STORAGE_RETRY: Final = Backoff(base=0.5, cap=4.0)
TOOL_ATTEMPTS: Final = 5


async def retry(
    call: Callable[[], Awaitable[T]], *, backoff: Backoff = STORAGE_RETRY, attempts: int = TOOL_ATTEMPTS
) -> T:
    """``call()``, again after each back-off delay while it raises ``StorageUnavailable``."""
    delays = backoff.delays()
    for _ in range(attempts - 1):
        try:
            return await call()
        except StorageUnavailable:
            await asyncio.sleep(next(delays))
    return await call()
